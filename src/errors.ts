/** Every error concord raises carries one of these codes. */
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

export class ConcordError extends Error {
  readonly code: ErrorCode;

  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    Object.defineProperty(this, brand, { value: true });
  }

  override get name(): string {
    return 'ConcordError';
  }

  static override [Symbol.hasInstance](value: unknown): boolean {
    return typeof value === 'object' && value !== null && (value as Record<symbol, unknown>)[brand] === true;
  }
}

/** Is `value` a ConcordError with `code`? */
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
