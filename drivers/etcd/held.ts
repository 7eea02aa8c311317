/**
 * Locks this driver's sessions hold, each contender key watched for deletes while held: one deleted from outside (an
 * operator, a revoked lease) reaches the core as lockLost within a watch notification, about when a waiter is told it
 * may take the lock.
 */
import type { ITxnResponse } from 'etcd3';
import { debug } from '../../src/debug.js';
import type { DriverEvents, LockKind, Unsubscribe } from '../../src/driver.js';
import type { Rpc } from './rpc.js';
import { b, get, kvsOf } from './txn.js';
import type { WatchHub } from './watch.js';

/** A lock this driver's session holds; its key is watched for deletes. */
interface Held {
  readonly kind: LockKind;
  readonly name: string;
  readonly token: bigint;
  readonly lease: string;
  /** The revision at which our key was seen holding: a delete after it is the loss of this hold. */
  readonly since: bigint;
}

/** The watch of one contender key of ours. */
interface KeyWatch {
  /** The session (lease id) whose key it is. */
  readonly lease: string;
  unwatch: Unsubscribe | undefined;
  /** Ends the watch once the name has not been held for a while. */
  idle: NodeJS.Timeout | undefined;
  ended: boolean;
}

/** How long a contender key's watch outlives its last hold. */
const KEY_WATCH_IDLE_MS = 10_000;

export class HeldLocks {
  readonly #rpc: Rpc;
  readonly #hub: WatchHub;
  readonly #events: DriverEvents;
  /** Locks held (contender key -> what). */
  readonly #held = new Map<string, Held>();
  /** Watches of our contender keys (held, or held a moment ago). */
  readonly #keyWatches = new Map<string, KeyWatch>();

  constructor(rpc: Rpc, hub: WatchHub, events: DriverEvents) {
    this.#rpc = rpc;
    this.#hub = hub;
    this.#events = events;
  }

  /** The token `own` is held with, if it is. */
  token(own: string): bigint | undefined {
    return this.#held.get(own)?.token;
  }

  /** The key this session holds kind/name with `token` by, if it does. */
  find(kind: LockKind, name: string, token: bigint): string | undefined {
    for (const [key, held] of this.#held) if (held.token === token && held.name === name && held.kind === kind) return key;
    return undefined;
  }

  /**
   * This session now holds kind/name with `token`, as of the revision of `at` (a response that saw our key first).
   * Its key is watched for deletes from then on. Returns the token.
   */
  hold(kind: LockKind, name: string, own: string, token: bigint, at: bigint | ITxnResponse, lease: string): bigint {
    const since = typeof at === 'bigint' ? at : BigInt(at.header.revision);
    this.#held.set(own, { kind, name, token, lease, since });
    this.#watchKey(own, since, lease);
    return token;
  }

  /** No longer held (released, cancelled, lost): the key's watch ends unless the name is held again soon. */
  unhold(own: string): void {
    if (!this.#held.delete(own)) return;
    const watch = this.#keyWatches.get(own);
    if (!watch) return;
    clearTimeout(watch.idle);
    watch.idle = setTimeout(() => {
      if (!this.#held.has(own)) this.#unwatchKey(own);
    }, KEY_WATCH_IDLE_MS);
    watch.idle.unref();
  }

  /** A session ended: nothing of it is held, and its keys' watches end now. */
  endSession(lease: string): void {
    for (const [key, held] of [...this.#held]) if (held.lease === lease) this.unhold(key);
    for (const [key, watch] of [...this.#keyWatches]) if (watch.lease === lease) this.#unwatchKey(key);
  }

  /** The driver is closed: forgets everything (the watch hub has closed every watch). */
  clear(): void {
    this.#held.clear();
    for (const watch of this.#keyWatches.values()) clearTimeout(watch.idle);
    this.#keyWatches.clear();
  }

  /**
   * Watches our contender key for deletes from `since` on (eager: no round trip is waited for, and no delete after it
   * is missed). The watch outlives a release for a while, so acquiring the same name again sets nothing up (creating
   * and cancelling a watch per hold cost a third of an uncontended acquire + release); our own release's delete then
   * arrives with nothing held, or older than the hold, and is ignored.
   */
  #watchKey(own: string, since: bigint, lease: string): void {
    const existing = this.#keyWatches.get(own);
    if (existing) {
      clearTimeout(existing.idle);
      existing.idle = undefined;
      return;
    }
    const watch: KeyWatch = { lease, unwatch: undefined, idle: undefined, ended: false };
    this.#keyWatches.set(own, watch);
    this.#hub
      .watch({
        key: b(own),
        startRevision: since + 1n,
        eager: true,
        deletesOnly: true,
        reopen: true,
        events: (events) => {
          const held = this.#held.get(own);
          if (held && events.some((event) => BigInt(event.kv.mod_revision) > held.since)) this.#lost(own, held);
        },
        // The watch lost track (compaction): is the key still ours?
        reset: () => void this.#verify(own),
      })
      .then(
        (unwatch) => {
          if (watch.ended) unwatch();
          else watch.unwatch = unwatch;
        },
        () => undefined,
      );
  }

  #unwatchKey(own: string): void {
    const watch = this.#keyWatches.get(own);
    if (!watch) return;
    this.#keyWatches.delete(own);
    clearTimeout(watch.idle);
    watch.ended = true;
    watch.unwatch?.();
  }

  #lost(own: string, held: Held): void {
    if (this.#held.get(own) !== held) return;
    this.unhold(own);
    debug('etcd: %s "%s" (token %s) was deleted from outside', held.kind, held.name, held.token.toString());
    this.#events.lockLost(held.kind, held.name, held.token);
  }

  async #verify(own: string): Promise<void> {
    const held = this.#held.get(own);
    if (!held) return;
    try {
      const response = await this.#rpc.txn('lock check', 'always', { success: [get(own)] });
      if (kvsOf(response, 0)[0]?.create_revision !== held.token.toString()) this.#lost(own, held);
    } catch (error) {
      // Unreachable: the session's renewals decide.
      debug('etcd: checking %s failed: %s', own, (error as Error).message);
    }
  }
}
