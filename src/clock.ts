import { setTimeout as sleepTimer } from 'node:timers/promises';
import { abortedError } from './errors.js';

/** Monotonic milliseconds. Wall clocks never decide anything here. */
export const now = (): number => performance.now();

/** Resolves after ms, or rejects with the signal's ConcordError reason. The timer never holds the process open. */
export async function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  try {
    await sleepTimer(ms, undefined, { signal, ref: false });
  } catch (error) {
    if (signal?.aborted) throw abortedError(signal);
    throw error;
  }
}

/** Rejects when the signal aborts, with its reason; `dispose` removes the listener. */
export function abortPromise(signal: AbortSignal): { promise: Promise<never>; dispose: () => void } {
  let dispose = (): void => undefined;
  const promise = new Promise<never>((_resolve, reject) => {
    if (signal.aborted) {
      reject(abortedError(signal));
      return;
    }
    const onAbort = (): void => {
      reject(abortedError(signal));
    };
    signal.addEventListener('abort', onAbort, { once: true });
    dispose = () => {
      signal.removeEventListener('abort', onAbort);
    };
  });
  promise.catch(() => undefined);
  return { promise, dispose };
}

/** Waits for `wake`, for `ms`, or for the signal (rejecting), whichever is first; leaves no timer or listener. */
export function waitForWake(wake: Promise<void>, ms: number, signal: AbortSignal): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    if (signal.aborted) {
      reject(abortedError(signal));
      return;
    }
    const done = (): void => {
      clearTimeout(timer);
      signal.removeEventListener('abort', onAbort);
    };
    const onAbort = (): void => {
      done();
      reject(abortedError(signal));
    };
    const timer = setTimeout(() => {
      done();
      resolve();
    }, ms);
    timer.unref();
    signal.addEventListener('abort', onAbort, { once: true });
    void wake.then(() => {
      done();
      resolve();
    });
  });
}
