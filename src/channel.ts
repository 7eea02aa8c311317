import { ConcordError } from './errors.js';
import { describe } from './options.js';

type Pending<T> = { resolve: (r: IteratorResult<T>) => void; reject: (e: unknown) => void };

/**
 * A push-to-pull queue: producers push, a consumer iterates with for-await. Unbounded, like an event stream. Calls to
 * next() that overlap are answered in order, as an async generator's are.
 */
export class Channel<T> implements AsyncIterableIterator<T> {
  readonly #buffer: T[] = [];
  readonly #pending: Array<Pending<T>> = [];
  #done = false;
  #error: ConcordError | undefined;
  readonly #onReturn: (() => void) | undefined;

  /** `onReturn` runs once when the consumer stops early (break, return, throw). */
  constructor(onReturn?: () => void) {
    this.#onReturn = onReturn;
  }

  push(value: T): void {
    if (this.#done) return;
    const pending = this.#pending.shift();
    if (pending) pending.resolve({ value, done: false });
    else this.#buffer.push(value);
  }

  /** Ends the stream after what is buffered; with an error, the consumer's next read rejects with it (once). */
  end(error?: unknown): void {
    if (this.#done) return;
    this.#done = true;
    if (error !== undefined) {
      this.#error =
        error instanceof ConcordError
          ? error
          : new ConcordError('ERR_CONNECTION', `the stream failed: ${error instanceof Error ? error.message : describe(error)}`, {
              cause: error,
            });
    }
    // Waiting readers exist only when the buffer is empty.
    for (const pending of this.#pending.splice(0)) {
      const failure = this.#error;
      this.#error = undefined;
      if (failure === undefined) pending.resolve({ value: undefined, done: true });
      else pending.reject(failure);
    }
  }

  next(): Promise<IteratorResult<T>> {
    if (this.#buffer.length > 0) return Promise.resolve({ value: this.#buffer.shift() as T, done: false });
    if (this.#done) {
      const error = this.#error;
      this.#error = undefined;
      return error === undefined ? Promise.resolve({ value: undefined, done: true }) : Promise.reject(error);
    }
    return new Promise((resolve, reject) => {
      this.#pending.push({ resolve, reject });
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
