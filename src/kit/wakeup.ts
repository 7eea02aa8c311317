import { abortedError } from '../errors.js';

/**
 * A re-arming wake-up for "try, then wait to be told to try again" loops. A wake() that arrives while nobody waits is
 * remembered, so the next wait() returns at once: a notification that lands between an attempt and the wait after it
 * is never lost (at worst one attempt too many).
 *
 * ```ts
 * const wakeup = new Wakeup();
 * const stop = await watch(() => wakeup.wake());
 * while (!(await attempt())) await wakeup.wait(pollMs, signal);
 * ```
 */
export class Wakeup {
  #woken = false;
  #resolve: (() => void) | undefined;

  /** Wakes the waiter, or the next one to wait. */
  wake(): void {
    this.#woken = true;
    const resolve = this.#resolve;
    this.#resolve = undefined;
    resolve?.();
  }

  /** True when a wake is pending; consumes it. */
  take(): boolean {
    const woken = this.#woken;
    this.#woken = false;
    return woken;
  }

  /**
   * Resolves at the first wake since the previous wait (at once if one is pending) or after `ms` (the fallback
   * re-check); rejects with ERR_ABORTED when `signal` aborts. Leaves no timer or listener behind.
   */
  wait(ms: number, signal?: AbortSignal): Promise<void> {
    if (signal?.aborted) return Promise.reject(abortedError(signal));
    if (this.take()) return Promise.resolve();
    return new Promise<void>((resolve, reject) => {
      const done = (): void => {
        clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
        if (this.#resolve === woken) this.#resolve = undefined;
      };
      const woken = (): void => {
        done();
        this.#woken = false;
        resolve();
      };
      const onAbort = (): void => {
        done();
        reject(abortedError(signal));
      };
      const timer = setTimeout(woken, ms);
      timer.unref();
      this.#resolve = woken;
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  }
}
