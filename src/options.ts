import { hostname } from 'node:os';
import { randomBytes } from 'node:crypto';
import { ConcordError, invalidArgument } from './errors.js';
import type { AcquireOptions, Capabilities } from './types.js';

/** Options of `connect()`; each can also be given as a URL query parameter (`?sessionTtlMs=5000`). */
export interface ConnectOptions {
  /** Unique member id; default `${hostname}-${pid}-${6 hex}`. */
  readonly member?: string;
  /** A crashed member's memberships and locks are released after at most this long. */
  readonly sessionTtlMs?: number;
  /** Apps sharing one backend under different namespaces never see each other's keys. */
  readonly namespace?: string;
  /** After a lost session is replaced, re-join groups with the last capabilities. */
  readonly rejoin?: boolean;
  /** Bounds the whole of connect(): ERR_CONNECTION naming the host when the backend has not answered by then. */
  readonly connectTimeoutMs?: number;
  /** Abort connecting. */
  readonly signal?: AbortSignal;
}

/** The defaults of every option, and the limits inputs are checked against. Frozen. */
export const DEFAULTS = Object.freeze({
  /** ConnectOptions.sessionTtlMs. */
  sessionTtlMs: 10_000,
  /** ConnectOptions.namespace. */
  namespace: 'concord',
  /** ConnectOptions.rejoin. */
  rejoin: true,
  /** ConnectOptions.connectTimeoutMs. */
  connectTimeoutMs: 10_000,
  /** Shorter sessions cannot be renewed reliably (every ttl/3, declared lost a margin before the TTL). */
  minSessionTtlMs: 100,
  /** Capabilities larger than this, as JSON, are refused. */
  maxCapabilitiesBytes: 64 * 1024,
  /** Names longer than this, as UTF-8, are refused. */
  maxNameBytes: 255,
});

export function defaultMemberId(): string {
  return `${hostname()}-${process.pid}-${randomBytes(3).toString('hex')}`;
}

// C0 and C1 control characters and DEL.
// eslint-disable-next-line no-control-regex
const CONTROL = /[\u0000-\u001f\u007f-\u009f]/;

/**
 * Names of groups, locks, members and namespaces: non-empty, at most 255 bytes, well-formed Unicode (a lone surrogate
 * has no UTF-8 form, and two such names could become one key), no control characters.
 */
export function validateName(value: unknown, argument: string): string {
  if (typeof value !== 'string') throw invalidArgument(argument, `must be a string, got ${describe(value)}`);
  if (value.length === 0) throw invalidArgument(argument, 'must not be empty');
  if (Buffer.byteLength(value, 'utf8') > DEFAULTS.maxNameBytes) {
    throw invalidArgument(argument, `must be at most ${DEFAULTS.maxNameBytes} bytes as UTF-8`);
  }
  if (!value.isWellFormed()) throw invalidArgument(argument, 'must be well-formed Unicode (it has a lone surrogate)');
  if (CONTROL.test(value)) throw invalidArgument(argument, 'must not contain control characters');
  return value;
}

/** A JSON object of at most 64 KiB; returns a deep copy so later mutation by the caller changes nothing. */
export function validateCapabilities(value: unknown, argument = 'capabilities'): Capabilities {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw invalidArgument(argument, `must be a JSON object, got ${describe(value)}`);
  }
  checkJson(value, argument, 0);
  const text = JSON.stringify(value);
  if (Buffer.byteLength(text, 'utf8') > DEFAULTS.maxCapabilitiesBytes) {
    throw invalidArgument(argument, `must be at most ${DEFAULTS.maxCapabilitiesBytes} bytes as JSON`);
  }
  return JSON.parse(text) as Capabilities;
}

function checkJson(value: unknown, path: string, depth: number): void {
  if (depth > 64) throw invalidArgument(path, 'is nested too deeply');
  if (value === null || typeof value === 'string' || typeof value === 'boolean') return;
  if (typeof value === 'number') {
    if (!Number.isFinite(value)) throw invalidArgument(path, 'must hold only finite numbers');
    return;
  }
  if (Array.isArray(value)) {
    value.forEach((item, i) => {
      checkJson(item, `${path}[${i}]`, depth + 1);
    });
    return;
  }
  if (typeof value === 'object') {
    const proto: unknown = Object.getPrototypeOf(value);
    if (proto !== Object.prototype && proto !== null) throw invalidArgument(path, 'must hold only plain JSON values');
    for (const [k, v] of Object.entries(value)) checkJson(v, `${path}.${k}`, depth + 1);
    return;
  }
  throw invalidArgument(path, `must hold only JSON values, got ${describe(value)}`);
}

/** The longest delay a Node timer can wait; longer ones fire at once. */
export const MAX_TIMER_MS = 2 ** 31 - 1;

/** A positive duration in ms that a timer can measure, at least `minimumMs`. */
export function validateTtl(value: unknown, argument = 'sessionTtlMs', minimumMs = 0, why = ''): number {
  if (typeof value !== 'number' || !Number.isFinite(value) || value <= 0) {
    throw invalidArgument(argument, `must be a positive number of milliseconds, got ${describe(value)}`);
  }
  if (value < minimumMs) throw invalidArgument(argument, `must be at least ${minimumMs} ms${why}, got ${describe(value)}`);
  if (value > MAX_TIMER_MS) throw invalidArgument(argument, `must be at most ${MAX_TIMER_MS} ms (about 24.8 days)`);
  return value;
}

export function validateSignal(value: unknown, argument = 'signal'): AbortSignal | undefined {
  if (value === undefined) return undefined;
  if (!(value instanceof AbortSignal)) throw invalidArgument(argument, 'must be an AbortSignal');
  return value;
}

export function validateOptionsObject(value: unknown, argument: string): void {
  if (value !== undefined && (typeof value !== 'object' || value === null)) {
    throw invalidArgument(argument, `must be an object, got ${describe(value)}`);
  }
}

export interface NormalizedAcquire {
  readonly signal: AbortSignal | undefined;
  readonly timeoutMs: number | undefined;
}

export function validateAcquireOptions(options: AcquireOptions | undefined): NormalizedAcquire {
  validateOptionsObject(options, 'options');
  const signal = validateSignal(options?.signal, 'options.signal');
  const timeoutMs = options?.timeoutMs;
  if (timeoutMs !== undefined && (typeof timeoutMs !== 'number' || Number.isNaN(timeoutMs) || timeoutMs < 0)) {
    throw invalidArgument('options.timeoutMs', `must be a number >= 0, got ${describe(timeoutMs)}`);
  }
  if (signal?.aborted) {
    throw new ConcordError('ERR_ABORTED', 'options.signal is already aborted', { cause: signal.reason });
  }
  // A wait longer than a timer can measure is, for every practical purpose, a wait without a timeout.
  return { signal, timeoutMs: timeoutMs !== undefined && timeoutMs > MAX_TIMER_MS ? undefined : timeoutMs };
}

export function describe(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  if (typeof value === 'string') return JSON.stringify(value.length > 40 ? `${value.slice(0, 40)}…` : value);
  if (typeof value === 'number' || typeof value === 'boolean' || typeof value === 'bigint') return String(value);
  return typeof value;
}
