import { acquireChannel, traced, type AcquireContext } from '../diagnostics.js';
import { ConcordError, invalidArgument, isConcordError } from '../errors.js';
import type { LockHolder, LockKind } from '../driver.js';
import { describe, validateAcquireOptions, validateName, validateOptionsObject } from '../options.js';
import type { AcquireOptions, HeldLock, Holder, Lock, Semaphore, SemaphoreOptions } from '../types.js';
import { Acquisition, type Want } from './acquisition.js';
import type { HeldLockImpl } from './held.js';
import type { LockHost } from './host.js';

/** The largest semaphore limit: far beyond any fleet, small enough for every backend to count exactly. */
export const MAX_LIMIT = 1_000_000;

/**
 * Acquires kind/name for the host's session. `timeoutMs` 0 makes one attempt. Rejects with ERR_LOCK_TIMEOUT,
 * ERR_ABORTED, ERR_SESSION_LOST or ERR_CLOSED, leaving nothing behind. Bad options and a closed coordinator are
 * refused before any I/O.
 */
export function acquire(
  host: LockHost,
  kind: LockKind,
  name: string,
  options: AcquireOptions | undefined,
  want?: Want,
): Promise<HeldLockImpl> {
  let acquisition: Acquisition;
  try {
    const normalized = validateAcquireOptions(options);
    const shared = options?.shared;
    if (shared !== undefined && typeof shared !== 'boolean') {
      throw invalidArgument('options.shared', `must be a boolean, got ${describe(shared)}`);
    }
    if (shared && kind !== 'lock') {
      throw invalidArgument('options.shared', kind === 'leader' ? 'leadership is never shared' : 'a semaphore permit is shared already');
    }
    host.assertOpen();
    if (shared || want) assertShared(host);
    acquisition = new Acquisition(host, kind, name, normalized, want ?? (shared ? { shared: true, limit: 0 } : undefined));
  } catch (error) {
    return Promise.reject(error instanceof ConcordError ? error : new ConcordError('ERR_INVALID_ARGUMENT', String(error)));
  }
  if (!acquireChannel.hasSubscribers) return acquisition.run();
  const started = performance.now();
  const context: AcquireContext = { coordinator: host.member, kind, name, shared: options?.shared === true || want !== undefined };
  return traced(
    acquireChannel,
    context,
    () => acquisition.run(),
    (settled, held) => {
      settled.waitedMs = performance.now() - started;
      if (held) settled.token = held.token;
    },
  );
}

function assertShared(host: LockHost): void {
  if (!host.driver.features.sharedLocks) {
    throw new ConcordError('ERR_NOT_SUPPORTED', 'this driver has no shared locks or semaphores');
  }
}

/** acquire() with timeoutMs 0: the held lock, or undefined when it would have to wait. */
async function attempt(host: LockHost, kind: LockKind, name: string, shared: boolean, want?: Want): Promise<HeldLockImpl | undefined> {
  try {
    return await acquire(host, kind, name, shared ? { timeoutMs: 0, shared } : { timeoutMs: 0 }, want);
  } catch (error) {
    if (isConcordError(error, 'ERR_LOCK_TIMEOUT')) return undefined;
    throw error;
  }
}

/** Every holder of kind/name, sorted by token, through the driver's list (or its one holder on a driver without). */
export async function holdersOf(host: LockHost, kind: LockKind, name: string): Promise<Holder[]> {
  host.assertOpen();
  const { driver } = host;
  let listed: LockHolder[];
  if (driver.lockHolders) {
    listed = await host.guard(driver.lockHolders(kind, name));
  } else {
    const holder = await host.guard(driver.lockHolder(kind, name));
    listed = holder ? [holder] : [];
  }
  return listed
    .map(({ member, token, shared }) => ({ member, token, shared: shared === true }))
    .sort((a, b) => (a.token < b.token ? -1 : a.token > b.token ? 1 : 0));
}

export class LockHandle implements Lock {
  readonly name: string;
  readonly #host: LockHost;

  constructor(host: LockHost, name: string) {
    this.name = validateName(name, 'name');
    this.#host = host;
  }

  acquire(options?: AcquireOptions): Promise<HeldLock> {
    return acquire(this.#host, 'lock', this.name, options);
  }

  async tryAcquire(options?: { readonly shared?: boolean }): Promise<HeldLock | undefined> {
    validateOptionsObject(options, 'options');
    const shared = options?.shared;
    if (shared !== undefined && typeof shared !== 'boolean') {
      throw invalidArgument('options.shared', `must be a boolean, got ${describe(shared)}`);
    }
    return attempt(this.#host, 'lock', this.name, shared === true);
  }

  async holder(): Promise<string | undefined> {
    this.#host.assertOpen();
    return (await this.#host.guard(this.#host.driver.lockHolder('lock', this.name)))?.member;
  }

  holders(): Promise<Holder[]> {
    return holdersOf(this.#host, 'lock', this.name);
  }
}

export class SemaphoreHandle implements Semaphore {
  readonly name: string;
  readonly limit: number;
  readonly #host: LockHost;
  readonly #want: Want;

  constructor(host: LockHost, name: string, options: SemaphoreOptions | undefined) {
    this.name = validateName(name, 'name');
    if (options === null || typeof options !== 'object') {
      throw invalidArgument('options', `must be an object with a limit, got ${describe(options)}`);
    }
    const { limit } = options;
    if (typeof limit !== 'number' || !Number.isInteger(limit) || limit < 1 || limit > MAX_LIMIT) {
      throw invalidArgument('options.limit', `must be an integer from 1 to ${String(MAX_LIMIT)}, got ${describe(limit)}`);
    }
    host.assertOpen();
    assertShared(host);
    this.limit = limit;
    this.#host = host;
    this.#want = { shared: true, limit };
  }

  acquire(options?: { readonly signal?: AbortSignal; readonly timeoutMs?: number }): Promise<HeldLock> {
    return acquire(this.#host, 'semaphore', this.name, options, this.#want);
  }

  tryAcquire(): Promise<HeldLock | undefined> {
    return attempt(this.#host, 'semaphore', this.name, false, this.#want);
  }

  holders(): Promise<Holder[]> {
    return holdersOf(this.#host, 'semaphore', this.name);
  }
}
