import { acquireChannel, traced, type AcquireContext } from '../diagnostics.js';
import { ConcordError, isConcordError } from '../errors.js';
import type { LockKind } from '../driver.js';
import { validateAcquireOptions, validateName } from '../options.js';
import type { AcquireOptions, HeldLock, Lock } from '../types.js';
import { Acquisition } from './acquisition.js';
import type { HeldLockImpl } from './held.js';
import type { LockHost } from './host.js';

/**
 * Acquires kind/name for the host's session. `timeoutMs` 0 makes one attempt. Rejects with ERR_LOCK_TIMEOUT,
 * ERR_ABORTED, ERR_SESSION_LOST or ERR_CLOSED, leaving nothing behind. Bad options and a closed coordinator are
 * refused before any I/O.
 */
export function acquire(host: LockHost, kind: LockKind, name: string, options: AcquireOptions | undefined): Promise<HeldLockImpl> {
  let acquisition: Acquisition;
  try {
    const normalized = validateAcquireOptions(options);
    host.assertOpen();
    acquisition = new Acquisition(host, kind, name, normalized);
  } catch (error) {
    return Promise.reject(error instanceof ConcordError ? error : new ConcordError('ERR_INVALID_ARGUMENT', String(error)));
  }
  if (!acquireChannel.hasSubscribers) return acquisition.run();
  const started = performance.now();
  const context: AcquireContext = { coordinator: host.member, kind, name };
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

  async tryAcquire(): Promise<HeldLock | undefined> {
    try {
      return await acquire(this.#host, 'lock', this.name, { timeoutMs: 0 });
    } catch (error) {
      if (isConcordError(error, 'ERR_LOCK_TIMEOUT')) return undefined;
      throw error;
    }
  }

  async holder(): Promise<string | undefined> {
    this.#host.assertOpen();
    return (await this.#host.guard(this.#host.driver.lockHolder('lock', this.name)))?.member;
  }
}
