/**
 * The locks this driver's sessions hold, watched while held: a lock key deleted or taken over from outside ends the
 * holder's lock (DriverEvents.lockLost). Two ways of hearing it: a keyspace notification on the key (when the server
 * sends them), within about a round trip of the deletion; and the check every renewal makes (the renewal script
 * reports the locks the session no longer holds), which also runs at once after a flush, a reconnect or a
 * notification (`check`).
 */
import { debug } from '../../src/debug.js';
import { isConcordError } from '../../src/errors.js';
import type { LockKind, Unsubscribe } from '../../src/driver.js';
import type { Subscriber } from './pubsub.js';

/** A lock held this long gets its key watched by keyspace notification (see #armKeyWatches). */
const KEY_WATCH_AFTER_MS = 20;

/** A lock this driver's session holds, as the backend granted it. */
interface Held {
  readonly kind: LockKind;
  readonly name: string;
  readonly sessionId: string;
  readonly token: string;
  /** When it was granted (performance.now()). */
  readonly since: number;
}

/** The keyspace-notification subscription watching one held lock's key. */
interface KeyWatch {
  stop: Unsubscribe | undefined;
  cancelled: boolean;
}

export interface HeldLocksHooks {
  /** Runs the check script for one session: its reply is `[alive, ...lost lock keys]`. */
  check(sessionId: string, pairs: readonly string[]): Promise<unknown>;
  /** The backend no longer knows the session: its locks went with it. */
  sessionGone(sessionId: string): void;
  /** A lock was taken from its holder outside concord. */
  lockLost(kind: LockKind, name: string, token: bigint): void;
}

export class HeldLocks {
  readonly #subscriber: Subscriber;
  /** `__keyspace@<db>__:{namespace}:l:`, followed by a lock key. */
  readonly #keyChannel: string;
  readonly #hooks: HeldLocksHooks;
  /** Locks held by this driver's sessions, by lock key (`<kind>:<name>`), and the watches on their keys. */
  readonly #held = new Map<string, Held>();
  readonly #keyWatches = new Map<string, KeyWatch>();
  #keyWatchTimer: NodeJS.Timeout | undefined;
  #checkQueued = false;
  #closed = false;
  /** The server sends keyspace events for deleted keys, and this user may subscribe to them. */
  watchKeys = false;

  constructor(subscriber: Subscriber, keyChannel: string, hooks: HeldLocksHooks) {
    this.#subscriber = subscriber;
    this.#keyChannel = keyChannel;
    this.#hooks = hooks;
  }

  /** The backend granted kind/name to the session: watch its key until it is released. */
  hold(lockKey: string, kind: LockKind, name: string, sessionId: string, token: string): void {
    this.#held.set(lockKey, { kind, name, sessionId, token, since: performance.now() });
    if (this.watchKeys && !this.#keyWatches.has(lockKey)) this.#armKeyWatches();
  }

  /** Whether the session holds the lock (with this token, when given). */
  holds(lockKey: string, sessionId: string, token?: string): boolean {
    const held = this.#held.get(lockKey);
    return held?.sessionId === sessionId && (token === undefined || held.token === token);
  }

  /** The lock is no longer held by this driver (released, given back, or lost). */
  release(lockKey: string): void {
    this.#held.delete(lockKey);
    const watch = this.#keyWatches.get(lockKey);
    if (!watch) return;
    this.#keyWatches.delete(lockKey);
    watch.cancelled = true;
    watch.stop?.();
  }

  /** The session ended (closed, expired, or replaced): its locks went with it. */
  releaseAll(sessionId: string): void {
    for (const [lockKey, held] of [...this.#held]) if (held.sessionId === sessionId) this.release(lockKey);
  }

  /** Lock key, token for every lock the session holds, as the scripts take them. */
  pairsOf(sessionId: string): string[] {
    const pairs: string[] = [];
    for (const [lockKey, held] of this.#held) if (held.sessionId === sessionId) pairs.push(lockKey, held.token);
    return pairs;
  }

  /** The backend says the session no longer holds these locks (of `pairs`, as sent): each one still held as sent is lost. */
  lost(sessionId: string, pairs: readonly string[], lost: readonly string[]): void {
    for (const lockKey of lost) {
      const at = pairs.indexOf(lockKey);
      const token = at >= 0 && at % 2 === 0 ? pairs[at + 1] : undefined;
      const held = this.#held.get(lockKey);
      // Released, or acquired again since the check was sent: not this loss.
      if (!held || held.sessionId !== sessionId || held.token !== token) continue;
      this.release(lockKey);
      debug('%s %s was taken from session %s outside concord', held.kind, held.name, sessionId);
      this.#hooks.lockLost(held.kind, held.name, BigInt(held.token));
    }
  }

  /** One check for a burst of notifications. */
  checkSoon(): void {
    if (this.#checkQueued || this.#closed) return;
    this.#checkQueued = true;
    queueMicrotask(() => {
      this.#checkQueued = false;
      void this.check([]);
    });
  }

  /** Asks the backend whether the held locks, and the given sessions, still exist. */
  async check(sessionIds: Iterable<string>): Promise<void> {
    if (this.#closed) return;
    const sids = new Set<string>(sessionIds);
    for (const held of this.#held.values()) sids.add(held.sessionId);
    await Promise.all(
      [...sids].map(async (sid) => {
        const pairs = this.pairsOf(sid);
        let reply: unknown;
        try {
          reply = await this.#hooks.check(sid, pairs);
        } catch (error) {
          debug('checking session %s failed: %s', sid, (error as Error).message);
          return;
        }
        const [alive, ...lost] = reply as [number, ...string[]];
        if (alive !== 1) {
          this.#hooks.sessionGone(sid);
          return;
        }
        this.lost(sid, pairs, lost);
      }),
    );
  }

  close(): void {
    this.#closed = true;
    clearTimeout(this.#keyWatchTimer);
  }

  /**
   * Only a lock held a while gets its key watched: a short hold (the common, benchmarked case) costs nothing more, not
   * even a timer of its own or its release's notification, and it ends before an operator could take an interest.
   * One timer for all, while anything is held and not yet watched.
   */
  #armKeyWatches(): void {
    if (this.#keyWatchTimer || this.#closed) return;
    this.#keyWatchTimer = setTimeout(() => {
      this.#keyWatchTimer = undefined;
      const now = performance.now();
      let waiting = false;
      for (const [lockKey, held] of this.#held) {
        if (this.#keyWatches.has(lockKey)) continue;
        if (now - held.since < KEY_WATCH_AFTER_MS) waiting = true;
        else this.#watchKey(lockKey);
      }
      if (waiting) this.#armKeyWatches();
    }, KEY_WATCH_AFTER_MS);
    this.#keyWatchTimer.unref();
  }

  /**
   * Subscribes to the keyspace notifications of a held lock's key, then checks the lock once (a deletion before the
   * subscription was confirmed would go unheard otherwise): the holder hears of a deletion at any time within twice
   * KEY_WATCH_AFTER_MS and a few round trips, and of one after that within a round trip.
   */
  #watchKey(lockKey: string): void {
    if (!this.watchKeys || this.#closed) return;
    const watch: KeyWatch = { stop: undefined, cancelled: false };
    this.#keyWatches.set(lockKey, watch);
    this.#subscriber
      .add(`${this.#keyChannel}${lockKey}`, (event) => {
        // Our own grants write the hash (hset); anything else done to a held lock's key is looked at.
        if (!event.startsWith('h') && this.#held.has(lockKey)) this.checkSoon();
      })
      .then(
        (stop) => {
          if (watch.cancelled) {
            stop();
            return;
          }
          watch.stop = stop;
          this.checkSoon();
        },
        (error: unknown) => {
          if (this.#keyWatches.get(lockKey) === watch) this.#keyWatches.delete(lockKey);
          debug('cannot watch the key of %s: %s', lockKey, (error as Error).message);
          // An ACL without the __keyspace@ channels refuses every one: stop asking (renewals still check).
          if (isConcordError(error, 'ERR_REFUSED')) this.watchKeys = false;
        },
      );
  }
}
