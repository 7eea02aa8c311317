/**
 * Per-coordinator lock bookkeeping: the process-local FIFO of each kind/name/slot (only the acquisition holding its
 * turn talks to the backend; exclusive holds use slot 0, shared holds and permits any free other), the locks held, the acquisitions under way, and the releases and clean-ups that failed on a
 * broken connection and are retried when it comes back.
 */
import { ConcordError, abortedError } from '../errors.js';
import { withTimeout } from '../clock.js';
import { debug } from '../debug.js';
import type { LockKind } from '../driver.js';
import type { HeldLockImpl } from './held.js';
import type { LockHost } from './host.js';

/** The one key of a kind/name pair. */
export function lockKey(kind: LockKind, name: string): string {
  return `${kind}\u0000${name}`;
}

/** The key of one slot of a kind/name pair (slot 0 is the pair's own key), for the turns and leftovers. */
export function slotKey(kind: LockKind, name: string, slot: number): string {
  return slot === 0 ? `${kind}\u0000${name}` : `${kind}\u0000${name}\u0000${String(slot)}`;
}

/** What an abandoned acquisition may have left on the backend. */
export interface Leftover {
  readonly kind: LockKind;
  readonly name: string;
  readonly session: string;
  readonly slot: number;
}

/** An acquisition under way, as the registry sees it. */
export interface ActiveAcquisition {
  /** The session it runs in was lost. */
  sessionLost(sessionId: string): void;
  /** The coordinator is closing (or the caller gave up): end now with `reason`. */
  end(reason: ConcordError): void;
}

/** A process-local FIFO: only the holder of its turn contends with other processes. */
export class LocalQueue {
  #busy = false;
  /** True while the turn is held by the clean-up after an abandoned acquisition, not by a holder or a waiter. */
  cleaning = false;
  readonly #waiters: Array<() => void> = [];

  /** Takes the turn if it is free. */
  tryEnter(): boolean {
    if (this.#busy) return false;
    this.#busy = true;
    return true;
  }

  /** Nothing but a clean-up of our own stands between a caller and the turn: no local holder, nobody waiting. */
  get onlyCleaning(): boolean {
    return this.cleaning && this.#waiters.length === 0;
  }

  /** Resolves when it is this caller's turn; rejects with the signal's reason when it aborts first. */
  enter(signal: AbortSignal): Promise<void> {
    if (this.tryEnter()) return Promise.resolve();
    if (signal.aborted) return Promise.reject(abortedError(signal));
    return new Promise<void>((resolve, reject) => {
      const turn = (): void => {
        signal.removeEventListener('abort', onAbort);
        resolve();
      };
      const onAbort = (): void => {
        const i = this.#waiters.indexOf(turn);
        if (i >= 0) this.#waiters.splice(i, 1);
        reject(abortedError(signal));
      };
      this.#waiters.push(turn);
      signal.addEventListener('abort', onAbort, { once: true });
    });
  }

  /** Hands the turn to the next local waiter, or frees it. */
  leave(): void {
    this.cleaning = false;
    const next = this.#waiters.shift();
    if (next) next();
    else this.#busy = false;
  }

  get idle(): boolean {
    return !this.#busy && this.#waiters.length === 0;
  }
}

/**
 * A lock this coordinator queued for recently is likely still contended: with a driver that queues on the backend,
 * its next acquisition goes straight to the queued wait, which grants at once when the lock is free; a plain attempt
 * first would only add a round trip before it.
 */
const CONTENDED_MS = 1000;

/**
 * Idle local queues are kept (for this many names at most) rather than made again on the next acquisition: an
 * uncontended acquire and release of a name then neither allocates one nor adds and deletes a map entry.
 */
const IDLE_QUEUES_KEPT = 64;

export class LockRegistry {
  readonly #queues = new Map<string, LocalQueue>();
  readonly held = new Set<HeldLockImpl>();
  readonly active = new Set<ActiveAcquisition>();
  /** Releases that failed on a broken connection, retried when it comes back, each with how to free its slot then. */
  readonly unreleased = new Map<() => Promise<void>, () => void>();
  /** lockKey -> leftovers that could not be cancelled yet (retried on reconnect, after renewals and on next use). */
  readonly uncancelled = new Map<string, Leftover>();
  /** When this coordinator last had to queue for a lockKey (performance.now()). */
  readonly #contended = new Map<string, number>();

  markContended(key: string): void {
    if (this.#contended.size >= 1024) this.#contended.clear();
    this.#contended.set(key, performance.now());
  }

  /** True when this coordinator queued for the lock within the last CONTENDED_MS. */
  recentlyContended(key: string): boolean {
    if (this.#contended.size === 0) return false;
    const at = this.#contended.get(key);
    if (at === undefined) return false;
    if (performance.now() - at < CONTENDED_MS) return true;
    this.#contended.delete(key);
    return false;
  }

  queue(key: string): LocalQueue {
    let queue = this.#queues.get(key);
    if (!queue) {
      queue = new LocalQueue();
      this.#queues.set(key, queue);
    }
    return queue;
  }

  /**
   * Takes the turn of the first free slot of kind/name from `first` on, for a shared hold or a permit: these never
   * wait locally, since several of one process may hold at once. A slot still cleaning up after an abandoned request
   * is busy, so the new request gets a clean slot.
   */
  enterFreeSlot(kind: LockKind, name: string, first: number): number {
    for (let slot = first; ; slot++) {
      if (this.queue(slotKey(kind, name, slot)).tryEnter()) return slot;
    }
  }

  /** Passes the local turn of `key` on. */
  leave(key: string): void {
    const queue = this.#queues.get(key);
    if (!queue) return;
    queue.leave();
    if (queue.idle && this.#queues.size > IDLE_QUEUES_KEPT) this.#queues.delete(key);
  }

  /**
   * After an acquisition that asked the driver ended without a HeldLock (it holds the local turn): once the abandoned
   * request has settled, tell the driver to end whatever the session still has for the name (a queue entry, a
   * contender key, a late grant), then pass the turn on. The caller's promise has already settled; only the next local
   * acquisition of the name waits for this.
   */
  async cleanUp(host: LockHost, leftover: Leftover, inFlight: Promise<unknown> | undefined): Promise<void> {
    const key = slotKey(leftover.kind, leftover.name, leftover.slot);
    this.queue(key).cleaning = true;
    const limitMs = host.sessionTtlMs;
    try {
      if (inFlight) await withTimeout(inFlight, limitMs).catch(() => undefined);
      await withTimeout(host.driver.cancelLock(leftover.kind, leftover.name, leftover.session, leftover.slot), limitMs);
      this.uncancelled.delete(key);
    } catch (error) {
      debug('cancelling %s "%s" failed: %s', leftover.kind, leftover.name, (error as Error).message);
      this.uncancelled.set(key, leftover);
    } finally {
      this.leave(key);
    }
  }

  /** Runs a clean-up left over from an earlier acquisition before a new one of the same name (which holds the turn). */
  async cancelPending(host: LockHost, key: string): Promise<void> {
    const leftover = this.uncancelled.get(key);
    if (!leftover) return;
    try {
      await withTimeout(host.driver.cancelLock(leftover.kind, leftover.name, leftover.session, leftover.slot), host.sessionTtlMs);
      this.uncancelled.delete(key);
    } catch (error) {
      debug('cancelling %s "%s" failed again: %s', leftover.kind, leftover.name, (error as Error).message);
    }
  }

  /** Cancels leftovers whose cancel failed, for names nobody in this process is acquiring or holding now. */
  async retryCancels(host: LockHost): Promise<void> {
    for (const [key, leftover] of [...this.uncancelled]) {
      // Taking the local turn guarantees no acquisition of this name runs meanwhile.
      if (!this.queue(key).tryEnter()) continue;
      await this.cleanUp(host, leftover, undefined);
    }
  }

  async retryReleases(): Promise<void> {
    for (const release of [...this.unreleased.keys()]) {
      this.unreleased.delete(release);
      await release();
    }
  }

  /** The session is gone: every held lock is lost, synchronously, and acquisitions are told. */
  loseAll(sessionId: string): void {
    for (const held of [...this.held]) held.lose();
    for (const acquisition of [...this.active]) acquisition.sessionLost(sessionId);
    // Their holds ended with the session: their slots are free again.
    for (const leave of this.unreleased.values()) leave();
    this.unreleased.clear();
    // The backend ends everything the lost session had, leftovers included.
    this.uncancelled.clear();
  }

  /** The coordinator is closing: every acquisition under way ends with `reason`, every held lock is dropped. */
  closeAll(reason: ConcordError): void {
    for (const acquisition of [...this.active]) acquisition.end(reason);
    for (const held of [...this.held]) held.drop();
  }
}
