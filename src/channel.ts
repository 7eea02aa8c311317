/** A push-to-pull queue: producers push, one consumer iterates with for-await. Unbounded, like an event stream. */
export class Channel<T> implements AsyncIterableIterator<T> {
  readonly #buffer: T[] = [];
  #pending: { resolve: (r: IteratorResult<T>) => void; reject: (e: unknown) => void } | undefined;
  #done = false;
  #error: Error | undefined;
  readonly #onReturn: (() => void) | undefined;

  /** `onReturn` runs once when the consumer stops early (break, return, throw). */
  constructor(onReturn?: () => void) {
    this.#onReturn = onReturn;
  }

  push(value: T): void {
    if (this.#done) return;
    const pending = this.#pending;
    if (pending) {
      this.#pending = undefined;
      pending.resolve({ value, done: false });
    } else {
      this.#buffer.push(value);
    }
  }

  /** Ends the stream after what is buffered; with an error, the consumer's next() rejects with it. */
  end(error?: unknown): void {
    if (this.#done) return;
    this.#done = true;
    this.#error = error === undefined || error instanceof Error ? error : new Error('stream failed', { cause: error });
    const pending = this.#pending;
    this.#pending = undefined;
    if (pending) {
      if (this.#error === undefined) pending.resolve({ value: undefined, done: true });
      else pending.reject(this.#error);
      this.#error = undefined;
    }
  }

  next(): Promise<IteratorResult<T>> {
    const value = this.#buffer.shift();
    if (value !== undefined || this.#buffer.length > 0) return Promise.resolve({ value: value as T, done: false });
    if (this.#done) {
      const error = this.#error;
      this.#error = undefined;
      return error === undefined ? Promise.resolve({ value: undefined, done: true }) : Promise.reject(error);
    }
    if (this.#pending) return Promise.reject(new Error('only one next() may wait at a time'));
    return new Promise((resolve, reject) => {
      this.#pending = { resolve, reject };
    });
  }

  return(): Promise<IteratorResult<T>> {
    const wasOpen = !this.#done;
    this.#buffer.length = 0;
    this.end();
    if (wasOpen) this.#onReturn?.();
    return Promise.resolve({ value: undefined, done: true });
  }

  [Symbol.asyncIterator](): this {
    return this;
  }
}
