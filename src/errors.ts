/**
 * Every error concord raises carries one of these codes:
 *
 * - `ERR_INVALID_ARGUMENT`: a bad argument, refused before any I/O; the message names it.
 * - `ERR_INVALID_URL`: a malformed URL or URL parameter.
 * - `ERR_UNKNOWN_DRIVER`: no driver for the URL's scheme.
 * - `ERR_DRIVER_UNAVAILABLE`: the driver's client package is not installed (the message says which).
 * - `ERR_CONNECTION`: the backend is unreachable or did not answer in time; the session may still be alive.
 * - `ERR_REFUSED`: the backend refused a request for a reason retrying will not fix (out of memory, a read-only
 *   replica, a missing permission); the server's message is in the error.
 * - `ERR_ABORTED`: the caller's signal aborted the call (its reason is the `cause`).
 * - `ERR_CLOSED`: the coordinator (or the handle) was closed.
 * - `ERR_SESSION_LOST`: the session expired while the call needed it (a lock waiter queued in it, a request in flight).
 * - `ERR_NOT_SUPPORTED`: the driver cannot do this.
 * - `ERR_GROUP_NOT_FOUND`, `ERR_GROUP_EXISTS`, `ERR_GROUP_NOT_EMPTY`, `ERR_MEMBER_EXISTS`, `ERR_MEMBER_NOT_JOINED`:
 *   group operations refused by the group's state.
 * - `ERR_LOCK_TIMEOUT`: the lock or leadership was not acquired within `timeoutMs`.
 * - `ERR_LOCK_LOST`, `ERR_LEADERSHIP_LOST`: the reason a held lock's or leadership's signal aborted.
 */
export type ErrorCode =
  | 'ERR_INVALID_ARGUMENT'
  | 'ERR_INVALID_URL'
  | 'ERR_UNKNOWN_DRIVER'
  | 'ERR_DRIVER_UNAVAILABLE'
  | 'ERR_CONNECTION'
  | 'ERR_REFUSED'
  | 'ERR_ABORTED'
  | 'ERR_CLOSED'
  | 'ERR_SESSION_LOST'
  | 'ERR_NOT_SUPPORTED'
  | 'ERR_GROUP_NOT_FOUND'
  | 'ERR_GROUP_EXISTS'
  | 'ERR_GROUP_NOT_EMPTY'
  | 'ERR_MEMBER_EXISTS'
  | 'ERR_MEMBER_NOT_JOINED'
  | 'ERR_LOCK_TIMEOUT'
  | 'ERR_LOCK_LOST'
  | 'ERR_LEADERSHIP_LOST';

// A registered symbol brands instances, so `instanceof` holds across two copies of the package.
const brand = Symbol.for('concord.ConcordError');

/**
 * The one error type of concord: a string `code` (see {@link ErrorCode}), a message that names the argument or the
 * backend's own words (never a password), and the original error as `cause`. `instanceof` works across copies of the
 * package.
 *
 * @example
 * ```ts
 * try {
 *   await lock.acquire({ timeoutMs: 1000 });
 * } catch (error) {
 *   if (error instanceof ConcordError && error.code === 'ERR_LOCK_TIMEOUT') return;
 *   throw error;
 * }
 * ```
 */
export class ConcordError extends Error {
  /** What went wrong, as a stable string to branch on. */
  readonly code: ErrorCode;

  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    Object.defineProperty(this, brand, { value: true });
  }

  /** 'ConcordError'. */
  override get name(): string {
    return 'ConcordError';
  }

  /** True for a ConcordError from any copy of the package. */
  static override [Symbol.hasInstance](value: unknown): boolean {
    return typeof value === 'object' && value !== null && (value as Record<symbol, unknown>)[brand] === true;
  }
}

/** Is `value` a ConcordError (with `code`, when given)? A type guard. */
export function isConcordError(value: unknown, code?: ErrorCode): value is ConcordError {
  return value instanceof ConcordError && (code === undefined || value.code === code);
}

export function invalidArgument(name: string, problem: string): ConcordError {
  return new ConcordError('ERR_INVALID_ARGUMENT', `${name} ${problem}`);
}

export function closedError(): ConcordError {
  return new ConcordError('ERR_CLOSED', 'the coordinator is closed');
}

/** The reason to reject with when `signal` aborted: a ConcordError ERR_ABORTED wrapping the signal's reason. */
export function abortedError(signal?: AbortSignal, what = 'the operation'): ConcordError {
  const reason: unknown = signal?.reason;
  if (reason instanceof ConcordError) return reason;
  return new ConcordError('ERR_ABORTED', `${what} was aborted`, { cause: reason });
}

/**
 * The backend refused a request for a reason retrying will not fix (out of memory, a read-only replica, a missing
 * permission, a key of the wrong type): ERR_REFUSED carrying the server's own message. Never retried by the core.
 */
export function refusedError(message: string, cause: unknown): ConcordError {
  if (cause instanceof ConcordError) return cause;
  return new ConcordError('ERR_REFUSED', message, { cause });
}

/** Wraps a backend failure as ERR_CONNECTION, keeping ConcordErrors as they are. */
export function connectionError(message: string, cause: unknown): ConcordError {
  if (cause instanceof ConcordError) return cause;
  return new ConcordError('ERR_CONNECTION', message, { cause });
}
