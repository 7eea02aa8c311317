/**
 * Locks: the in-process waiter queue (one remote contender per process per name), the remote wait, fencing tokens
 * and lost signals. Leadership (election.ts) is the same machinery on the 'leader' key space.
 */
import { ConcordError, abortedError, isConcordError } from './errors.js';
import { sleep, waitForWake, withTimeout } from './clock.js';
import { debug } from './debug.js';
import type { Driver, LockKind } from './driver.js';
import { validateAcquireOptions, validateName } from './options.js';
import type { AcquireOptions, HeldLock, Lock } from './types.js';

/** What the lock machinery needs from its coordinator. */
export interface LockHost {
  readonly driver: Driver;
  readonly member: string;
  readonly sessionTtlMs: number;
  /** Throws ERR_CLOSED / ERR_SESSION_LOST when no lock can be taken now; returns the live session id. */
  usableSession(): string;
  /** Throws ERR_CLOSED after close(). */
  assertOpen(): void;
  /** This coordinator's wait for kind/name is registered with the backend. */
  queued(kind: LockKind, name: string): void;
  /** Declares the session lost if its time ran out (a paused process learns it before touching anything). */
  checkSession(): void;
  readonly locks: LockRegistry;
}

/** A process-local FIFO: only its head contends with other processes. */
class LocalQueue {
  busy = false;
  readonly waiters: Array<() => void> = [];

  /** Resolves when it is this caller's turn; with `immediate`, fails at once if it is not. */
  enter(signal: AbortSignal, immediate: boolean): Promise<void> {
    if (!this.busy) {
      this.busy = true;
      return Promise.resolve();
    }
    if (immediate) return Promise.reject(timeoutError());
    return new Promise<void>((resolve, reject) => {
      const turn = (): void => {
        signal.removeEventListener('abort', onAbort);
        resolve();
      };
      const onAbort = (): void => {
        const i = this.waiters.indexOf(turn);
        if (i >= 0) this.waiters.splice(i, 1);
        reject(abortedError(signal));
      };
      this.waiters.push(turn);
      signal.addEventListener('abort', onAbort, { once: true });
    });
  }

  /** Hands the turn to the next local waiter, or frees the queue. */
  leave(): void {
    const next = this.waiters.shift();
    if (next) next();
    else this.busy = false;
  }

  get idle(): boolean {
    return !this.busy && this.waiters.length === 0;
  }
}

/**
 * A lock this coordinator queued for this recently is likely still contended: with a driver that queues on the
 * backend, its next acquisition goes straight to the queued wait, which grants at once when the lock is free; a plain
 * attempt first would only add a round trip before it.
 */
const CONTENDED_MS = 1000;

function timeoutError(): ConcordError {
  return new ConcordError('ERR_LOCK_TIMEOUT', 'the lock was not acquired in time');
}

/** Per-coordinator bookkeeping: local queues, held locks and pending acquisitions. */
export class LockRegistry {
  readonly #queues = new Map<string, LocalQueue>();
  readonly held = new Set<HeldLockImpl>();
  readonly pending = new Set<AbortController>();
  /** Releases that failed on a broken connection, retried when it comes back. */
  readonly unreleased = new Set<() => Promise<void>>();
  /** kind/name -> session whose leftovers there could not be cancelled yet (retried on reconnect and next use). */
  readonly uncancelled = new Map<string, { kind: LockKind; name: string; session: string }>();
  /** When this coordinator last had to queue for kind/name (performance.now()). */
  readonly #contended = new Map<string, number>();

  /** This coordinator had to queue for kind/name. */
  markContended(kind: LockKind, name: string): void {
    if (this.#contended.size >= 1024) this.#contended.clear();
    this.#contended.set(`${kind}\u0000${name}`, performance.now());
  }

  /** True when this coordinator queued for kind/name within the last CONTENDED_MS. */
  recentlyContended(kind: LockKind, name: string): boolean {
    if (this.#contended.size === 0) return false;
    const key = `${kind}\u0000${name}`;
    const at = this.#contended.get(key);
    if (at === undefined) return false;
    if (performance.now() - at < CONTENDED_MS) return true;
    this.#contended.delete(key);
    return false;
  }

  queue(kind: LockKind, name: string): LocalQueue {
    const key = `${kind}\u0000${name}`;
    let queue = this.#queues.get(key);
    if (!queue) {
      queue = new LocalQueue();
      this.#queues.set(key, queue);
    }
    return queue;
  }

  leave(kind: LockKind, name: string): void {
    const key = `${kind}\u0000${name}`;
    const queue = this.#queues.get(key);
    if (!queue) return;
    queue.leave();
    if (queue.idle) this.#queues.delete(key);
  }

  /** Cancels leftovers whose cancel failed, for names nobody in this process is acquiring or holding now. */
  async retryCancels(host: LockHost): Promise<void> {
    for (const entry of [...this.uncancelled.values()]) {
      const queue = this.queue(entry.kind, entry.name);
      // Taking the local turn guarantees no acquisition of this name runs meanwhile.
      if (queue.busy) continue;
      queue.busy = true;
      await cancelLeftovers(host, entry.kind, entry.name, entry.session, undefined);
    }
  }

  /** The session is gone: every held lock is lost and every wait fails, synchronously. */
  loseAll(): void {
    for (const held of [...this.held]) held.lose();
    for (const pending of [...this.pending]) {
      pending.abort(new ConcordError('ERR_SESSION_LOST', 'the session was lost while waiting'));
    }
    this.unreleased.clear();
    // The backend ends everything the lost session had, leftovers included.
    this.uncancelled.clear();
  }

  async retryReleases(): Promise<void> {
    for (const release of [...this.unreleased]) {
      this.unreleased.delete(release);
      await release();
    }
  }
}

export class HeldLockImpl implements HeldLock {
  readonly name: string;
  readonly token: bigint;
  readonly kind: LockKind;
  readonly #host: LockHost;
  readonly #sessionId: string;
  // Created on first use of `signal`: most holders never look, and a controller plus its abort is a large share of
  // an uncontended acquire and release.
  #controller: AbortController | undefined;
  #reason: (() => ConcordError) | undefined;
  #released: Promise<void> | undefined;

  constructor(host: LockHost, kind: LockKind, name: string, sessionId: string, token: bigint) {
    this.#host = host;
    this.kind = kind;
    this.name = name;
    this.#sessionId = sessionId;
    this.token = token;
    host.locks.held.add(this);
  }

  get signal(): AbortSignal {
    this.#host.checkSession();
    if (!this.#controller) {
      this.#controller = new AbortController();
      if (this.#reason) this.#controller.abort(this.#reason());
    }
    return this.#controller.signal;
  }

  /** Aborts the signal with ERR_LOCK_LOST / ERR_LEADERSHIP_LOST; the backend has freed, or will free, the lock. */
  lose(): void {
    if (this.#released) return;
    this.#released = Promise.resolve();
    this.#finish(() =>
      this.kind === 'leader'
        ? new ConcordError('ERR_LEADERSHIP_LOST', `leadership of group "${this.name}" was lost`)
        : new ConcordError('ERR_LOCK_LOST', `lock "${this.name}" was lost`),
    );
  }

  /** The coordinator is closing and ends the session, which frees the lock on the backend. */
  drop(): void {
    if (this.#released) return;
    this.#released = Promise.resolve();
    this.#finish(() => new ConcordError('ERR_CLOSED', 'the coordinator was closed'));
  }

  release(): Promise<void> {
    this.#released ??= this.#release();
    return this.#released;
  }

  async #release(): Promise<void> {
    this.#finish(
      () =>
        new ConcordError(
          'ERR_ABORTED',
          this.kind === 'leader' ? `leadership of group "${this.name}" was resigned` : `lock "${this.name}" was released`,
        ),
    );
    const unlock = async (): Promise<void> => {
      try {
        await this.#host.driver.unlock(this.kind, this.name, this.#sessionId, this.token);
      } catch (error) {
        // A lock whose release did not reach the backend would block others until our session ends: retry later.
        if (isConcordError(error, 'ERR_CONNECTION')) this.#host.locks.unreleased.add(unlock);
        debug('release of %s "%s" failed: %s', this.kind, this.name, (error as Error).message);
      }
    };
    await unlock();
  }

  #finish(reason: () => ConcordError): void {
    this.#host.locks.held.delete(this);
    this.#reason = reason;
    if (this.#controller && !this.#controller.signal.aborted) this.#controller.abort(reason());
    this.#host.locks.leave(this.kind, this.name);
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.release();
  }
}

/**
 * Acquires kind/name for the host's session. `timeoutMs` 0 makes one attempt. Rejects with ERR_LOCK_TIMEOUT,
 * ERR_ABORTED, ERR_SESSION_LOST or ERR_CLOSED, leaving nothing behind.
 */
export async function acquire(host: LockHost, kind: LockKind, name: string, options: AcquireOptions | undefined): Promise<HeldLockImpl> {
  const { signal, timeoutMs } = validateAcquireOptions(options);
  const sessionId = host.usableSession();
  const queue = host.locks.queue(kind, name);
  if (queue.busy) return wait(host, kind, name, sessionId, signal, timeoutMs, performance.now(), false);
  const startedAt = performance.now();
  queue.busy = true;
  if (host.locks.uncancelled.size > 0) await cancelPending(host, kind, name);
  if (timeoutMs !== 0 && host.driver.acquireLock && host.locks.recentlyContended(kind, name)) {
    return wait(host, kind, name, sessionId, signal, timeoutMs, startedAt, true);
  }
  // Nobody in this process holds or awaits it: one plain attempt first, without the machinery of waiting.
  let token: bigint | undefined;
  const attempt = host.driver.tryLock(kind, name, sessionId, host.member);
  try {
    token =
      signal === undefined && !timeoutMs ? await attempt : await bounded(attempt, signal, timeoutMs ? startedAt + timeoutMs : undefined);
  } catch (error) {
    // close() ran while the attempt was in flight (ending the session under it): that is what the caller hears of.
    const closing = closingError(host);
    if (closing !== undefined || timeoutMs === 0 || !isConcordError(error, 'ERR_CONNECTION')) {
      // The attempt may have reached the backend (or still may): clean up after it before the next local turn.
      void cancelLeftovers(host, kind, name, sessionId, attempt);
      if (closing) throw closing;
      throw error;
    }
  }
  if (token !== undefined) {
    // While the attempt was in flight the session may have been lost, the coordinator closed or the caller given up.
    let problem: Error | undefined;
    try {
      if (host.usableSession() !== sessionId) problem = new ConcordError('ERR_SESSION_LOST', 'the session was lost while acquiring');
      else if (signal?.aborted) problem = abortedError(signal);
    } catch (error) {
      problem = error as Error;
    }
    if (problem === undefined) return new HeldLockImpl(host, kind, name, sessionId, token);
    await host.driver.unlock(kind, name, sessionId, token).catch(() => undefined);
    host.locks.leave(kind, name);
    throw problem;
  }
  if (timeoutMs === 0) {
    host.locks.leave(kind, name);
    throw timeoutError();
  }
  return wait(host, kind, name, sessionId, signal, timeoutMs, startedAt, true);
}

/** ERR_CLOSED when the host's coordinator is closing, else undefined. */
function closingError(host: LockHost): ConcordError | undefined {
  try {
    host.assertOpen();
    return undefined;
  } catch (error) {
    return error instanceof ConcordError ? error : undefined;
  }
}

/**
 * After an acquisition that asked the driver ended without a HeldLock: once the abandoned request has settled, tell the
 * driver to end whatever this session still has for the name (a queue entry, a contender key, a late grant), then pass
 * the local turn on. The caller's promise has already settled; only the next local waiter waits for this.
 */
async function cancelLeftovers(
  host: LockHost,
  kind: LockKind,
  name: string,
  sessionId: string,
  inFlight: Promise<unknown> | undefined,
): Promise<void> {
  const key = `${kind}\u0000${name}`;
  const limitMs = host.sessionTtlMs;
  try {
    if (inFlight) await withTimeout(inFlight, limitMs).catch(() => undefined);
    await withTimeout(host.driver.cancelLock(kind, name, sessionId), limitMs);
    host.locks.uncancelled.delete(key);
  } catch (error) {
    debug('cancelling %s "%s" failed: %s', kind, name, (error as Error).message);
    host.locks.uncancelled.set(key, { kind, name, session: sessionId });
  } finally {
    host.locks.leave(kind, name);
  }
}

/** Runs a cancel left over from an earlier acquisition of this name before a new one starts (we hold the turn). */
async function cancelPending(host: LockHost, kind: LockKind, name: string): Promise<void> {
  const entry = host.locks.uncancelled.get(`${kind}\u0000${name}`);
  if (!entry) return;
  try {
    await withTimeout(host.driver.cancelLock(kind, name, entry.session), host.sessionTtlMs);
    host.locks.uncancelled.delete(`${kind}\u0000${name}`);
  } catch (error) {
    debug('cancelling %s "%s" failed again: %s', kind, name, (error as Error).message);
  }
}

/** The waiting path: local turn, then the remote wait, bounded by the timeout, the signal and the session. */
async function wait(
  host: LockHost,
  kind: LockKind,
  name: string,
  sessionId: string,
  signal: AbortSignal | undefined,
  timeoutMs: number | undefined,
  startedAt: number,
  entered: boolean,
): Promise<HeldLockImpl> {
  const op = new AbortController();
  const onAbort = (): void => {
    op.abort(abortedError(signal, `acquiring ${kind === 'leader' ? 'leadership of' : 'lock'} "${name}"`));
  };
  signal?.addEventListener('abort', onAbort, { once: true });
  if (signal?.aborted) onAbort();
  let timer: NodeJS.Timeout | undefined;
  if (timeoutMs !== undefined && timeoutMs > 0) {
    timer = setTimeout(
      () => {
        op.abort(timeoutError());
      },
      Math.max(0, startedAt + timeoutMs - performance.now()),
    );
  }
  host.locks.pending.add(op);
  const track: Contention = { asked: false, inFlight: undefined };
  try {
    if (!entered) {
      await host.locks.queue(kind, name).enter(op.signal, timeoutMs === 0);
      entered = true;
      if (host.locks.uncancelled.size > 0) await cancelPending(host, kind, name);
    }
    const token = await contend(host, kind, name, sessionId, op.signal, timeoutMs === 0, track);
    if (op.signal.aborted) {
      // Granted at the moment the wait ended: give it straight back.
      await host.driver.unlock(kind, name, sessionId, token).catch(() => undefined);
      throw reasonOf(op.signal);
    }
    return new HeldLockImpl(host, kind, name, sessionId, token);
  } catch (error) {
    if (entered) {
      // A wait the backend knew of may have left a queue entry or a late grant behind: end it before the next turn.
      if (track.asked) void cancelLeftovers(host, kind, name, sessionId, track.inFlight);
      else host.locks.leave(kind, name);
    }
    throw op.signal.aborted ? reasonOf(op.signal) : error;
  } finally {
    clearTimeout(timer);
    signal?.removeEventListener('abort', onAbort);
    host.locks.pending.delete(op);
  }
}

/** `attempt`, unless the signal aborts or the deadline (monotonic ms) passes first. */
function bounded<T>(attempt: Promise<T>, signal: AbortSignal | undefined, deadline: number | undefined): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const done = (): void => {
      clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
    };
    const onAbort = (): void => {
      done();
      reject(abortedError(signal));
    };
    const timer =
      deadline === undefined
        ? undefined
        : setTimeout(
            () => {
              done();
              reject(timeoutError());
            },
            Math.max(0, deadline - performance.now()),
          );
    signal?.addEventListener('abort', onAbort, { once: true });
    attempt.then(
      (value) => {
        done();
        resolve(value);
      },
      (error: unknown) => {
        done();
        reject(error instanceof Error ? error : new Error(String(error)));
      },
    );
  });
}

function reasonOf(signal: AbortSignal): ConcordError {
  return abortedError(signal);
}

/** What the remote part asked of the driver, so an abandoned wait can be cleaned up after. */
interface Contention {
  asked: boolean;
  inFlight: Promise<unknown> | undefined;
}

/** The remote part: one attempt, the driver's fair queue, or a notified retry loop. */
async function contend(
  host: LockHost,
  kind: LockKind,
  name: string,
  sessionId: string,
  signal: AbortSignal,
  once: boolean,
  track: Contention,
): Promise<bigint> {
  const { driver } = host;
  track.asked = true;
  if (once) {
    const attempt = driver.tryLock(kind, name, sessionId, host.member);
    track.inFlight = attempt;
    const token = await attempt;
    if (token === undefined) throw timeoutError();
    return token;
  }
  const pollMs = driver.pollIntervalMs ?? host.sessionTtlMs / 3;
  const queued = (): void => {
    host.locks.markContended(kind, name);
    host.queued(kind, name);
  };
  if (driver.acquireLock) {
    for (;;) {
      if (signal.aborted) throw reasonOf(signal);
      const attempt = driver.acquireLock(kind, name, sessionId, host.member, signal, queued);
      track.inFlight = attempt;
      try {
        // Bounded here too: a request that hangs must not hold the caller past its timeout or abort.
        return await bounded(attempt, signal, undefined);
      } catch (error) {
        // A dropped connection is not the end of the wait: the session machine decides when it is lost.
        if (signal.aborted || !isConcordError(error, 'ERR_CONNECTION')) throw error;
        await sleep(pollMs, signal);
      }
    }
  }
  if (signal.aborted) throw reasonOf(signal);
  let wake: (() => void) | undefined;
  const unsubscribe = await driver.watchLock(kind, name, () => wake?.());
  try {
    for (;;) {
      // Armed before the attempt, so a release between the attempt and the wait still wakes us.
      const woken = new Promise<void>((resolve) => {
        wake = resolve;
      });
      let token: bigint | undefined;
      try {
        const attempt = driver.tryLock(kind, name, sessionId, host.member);
        track.inFlight = attempt;
        token = await attempt;
      } catch (error) {
        if (!isConcordError(error, 'ERR_CONNECTION')) throw error;
      }
      if (token !== undefined) return token;
      queued();
      await waitForWake(woken, pollMs, signal);
    }
  } finally {
    unsubscribe();
  }
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
    return (await this.#host.driver.lockHolder('lock', this.name))?.member;
  }
}
