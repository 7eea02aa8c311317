/** Event-driven waiting for tests: every wait has a deadline that fails the test with a message, never a fixed sleep. */

export function deadline<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => {
      reject(new Error(`timed out after ${ms} ms waiting for ${what}`));
    }, ms);
  });
  return Promise.race([promise, timeout]).finally(() => {
    clearTimeout(timer);
  });
}

interface Emitter {
  on(event: string | symbol, listener: () => void): unknown;
  off(event: string | symbol, listener: () => void): unknown;
}

export function once(emitter: Emitter, event: string | symbol, ms = 15_000): Promise<void> {
  let listener: () => void = () => undefined;
  const promise = new Promise<void>((resolve) => {
    listener = () => {
      emitter.off(event, listener);
      resolve();
    };
    emitter.on(event, listener);
  });
  return deadline(promise, ms, `event ${String(event)}`).finally(() => {
    emitter.off(event, listener);
  });
}

export function aborted(signal: AbortSignal, ms = 15_000): Promise<unknown> {
  if (signal.aborted) return Promise.resolve(signal.reason);
  return deadline(
    new Promise((resolve) => {
      signal.addEventListener(
        'abort',
        () => {
          resolve(signal.reason);
        },
        { once: true },
      );
    }),
    ms,
    'the signal to abort',
  );
}

/** Re-checks `check` on each turn until it holds; for state that has no event of its own (a backend's view). */
export async function eventually<T>(check: () => Promise<T> | T, accept: (value: T) => boolean, ms: number, what: string): Promise<T> {
  const end = performance.now() + ms;
  let last: T | undefined;
  for (;;) {
    last = await check();
    if (accept(last)) return last;
    if (performance.now() > end)
      throw new Error(
        `timed out after ${ms} ms waiting for ${what}; last value: ${JSON.stringify(last, (_k, v: unknown) => (typeof v === 'bigint' ? v.toString() : v))}`,
      );
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

/** Collects an async iterable's items in the background; `until` resolves once the items satisfy a predicate. */
export class Collector<T> {
  readonly items: T[] = [];
  #waiters: Array<{ accept: (items: T[]) => boolean; resolve: () => void }> = [];
  readonly done: Promise<void>;
  error: unknown;

  constructor(iterable: AsyncIterable<T>) {
    this.done = (async () => {
      try {
        for await (const item of iterable) {
          this.items.push(item);
          this.#check();
        }
      } catch (error) {
        this.error = error;
      }
      this.#check();
    })();
  }

  #check(): void {
    this.#waiters = this.#waiters.filter((w) => {
      if (!w.accept(this.items)) return true;
      w.resolve();
      return false;
    });
  }

  until(accept: (items: T[]) => boolean, what: string, ms = 15_000): Promise<T[]> {
    if (accept(this.items)) return Promise.resolve(this.items);
    const promise = new Promise<void>((resolve) => {
      this.#waiters.push({ accept, resolve });
    });
    return deadline(promise, ms, what).then(() => this.items);
  }
}
