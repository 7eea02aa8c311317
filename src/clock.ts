import { setTimeout as sleepTimer } from 'node:timers/promises';
import { ConcordError, abortedError } from './errors.js';

/** Monotonic milliseconds. Wall clocks never decide anything here. */
export const now = (): number => performance.now();

/**
 * Resolves after ms, or rejects with the signal's ConcordError reason. The timer holds the process open only when
 * `hold` is set: for a pause inside a call someone awaits, where an idle process would otherwise exit mid-call.
 */
export async function sleep(ms: number, signal?: AbortSignal, hold = false): Promise<void> {
  try {
    await sleepTimer(ms, undefined, { signal, ref: hold });
  } catch (error) {
    if (signal?.aborted) throw abortedError(signal);
    throw error;
  }
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

/** Rejects with ERR_CONNECTION when `promise` has not settled within ms. */
export function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => {
      reject(new ConcordError('ERR_CONNECTION', `no answer within ${Math.round(ms)} ms`));
    }, ms);
    timer.unref();
  });
  return Promise.race([promise, timeout]).finally(() => {
    clearTimeout(timer);
  });
}

/**
 * `promise`, or ERR_ABORTED (naming `what`) as soon as the signal aborts. The promise itself runs on: callers use this
 * where its outcome may be dropped (a read, or a call the client ends when it closes).
 */
export function unlessAborted<T>(promise: Promise<T>, signal: AbortSignal | undefined, what?: string): Promise<T> {
  if (!signal) return promise;
  return new Promise<T>((resolve, reject) => {
    const onAbort = (): void => {
      reject(abortedError(signal, what));
    };
    if (signal.aborted) {
      promise.catch(() => undefined);
      onAbort();
      return;
    }
    signal.addEventListener('abort', onAbort, { once: true });
    promise.then(
      (value) => {
        signal.removeEventListener('abort', onAbort);
        resolve(value);
      },
      (error: unknown) => {
        signal.removeEventListener('abort', onAbort);
        reject(error instanceof Error ? error : new Error(String(error)));
      },
    );
  });
}
