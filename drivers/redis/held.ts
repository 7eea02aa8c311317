/**
 * The locks this driver's sessions hold, watched while held: a lock key deleted or taken over from outside ends the
 * holder's lock (DriverEvents.lockLost). Two ways of hearing it: a keyspace notification on the key (when the server
 * sends them), within about a round trip of the deletion; and the check renewals make (the renewal script reports the
 * locks the session no longer holds) of the holds no notification covers, which also runs at once for every hold
 * after a flush or a reconnect, and for one hold after a notification about its key (`check`, `checkSoon`). A session
 * holding 10,000 watched locks renews with a script that names none of them, as a session holding none does.
 */
import { debug } from '../../src/debug.js';
import { isConcordError } from '../../src/errors.js';
import type { LockKind, Unsubscribe } from '../../src/driver.js';
import type { Subscriber } from './pubsub.js';

/** A lock held this long gets its key watched by keyspace notification (see #armKeyWatches). */
const KEY_WATCH_AFTER_MS = 20;

/** A lock this driver's session holds, as the backend granted it. */
interface Held {
  /** The key of the lock (`<kind>:<name>`), whose keyspace notifications tell of its deletion. */
  readonly lockKey: string;
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
  /** Runs the check script for one session: its reply is `[alive, ...lost hold keys]`. */
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
  /**
   * Holds of this driver's sessions, by hold key (scripts.ts: the lock key for an exclusive hold, `<slot>/<lock key>`
   * for a shared one, of which a session may have several of one lock), and the watches on their lock keys.
   */
  readonly #held = new Map<string, Held>();
  readonly #keyWatches = new Map<string, KeyWatch>();
  #keyWatchTimer: NodeJS.Timeout | undefined;
  #checkQueued = false;
  /** What the queued check looks at: every hold, or these hold keys. */
  #checkEvery = false;
  readonly #checkKeys = new Set<string>();
  #closed = false;
  /** The server sends keyspace events for deleted keys, and this user may subscribe to them. */
  watchKeys = false;

  constructor(subscriber: Subscriber, keyChannel: string, hooks: HeldLocksHooks) {
    this.#subscriber = subscriber;
    this.#keyChannel = keyChannel;
    this.#hooks = hooks;
  }

  /** The backend granted kind/name to the session (under `holdKey`): watch its key until it is released. */
  hold(holdKey: string, lockKey: string, kind: LockKind, name: string, sessionId: string, token: string): void {
    this.#held.set(holdKey, { lockKey, kind, name, sessionId, token, since: performance.now() });
    if (this.watchKeys && !this.#keyWatches.has(holdKey)) this.#armKeyWatches();
  }

  /** Whether the session has the hold (with this token, when given). */
  holds(holdKey: string, sessionId: string, token?: string): boolean {
    const held = this.#held.get(holdKey);
    return held?.sessionId === sessionId && (token === undefined || held.token === token);
  }

  /** The hold is no longer had by this driver (released, given back, or lost). */
  release(holdKey: string): void {
    this.#held.delete(holdKey);
    const watch = this.#keyWatches.get(holdKey);
    if (!watch) return;
    this.#keyWatches.delete(holdKey);
    watch.cancelled = true;
    watch.stop?.();
  }

  /** The session ended (closed, expired, or replaced): its locks went with it. */
  releaseAll(sessionId: string): void {
    for (const [holdKey, held] of [...this.#held]) if (held.sessionId === sessionId) this.release(holdKey);
  }

  /** Hold key, token for every hold the session has (of `only`, when given), as the scripts take them. */
  pairsOf(sessionId: string, only?: ReadonlySet<string>): string[] {
    const pairs: string[] = [];
    for (const [holdKey, held] of this.#held) {
      if (held.sessionId === sessionId && (only === undefined || only.has(holdKey))) pairs.push(holdKey, held.token);
    }
    return pairs;
  }

  /**
   * The pairs a renewal checks: the session's holds whose deletion no notification would tell of (not yet watched, or
   * the subscriber is down: its reconnection checks every hold anyway).
   */
  unwatchedPairsOf(sessionId: string): string[] {
    const up = this.#subscriber.up;
    const pairs: string[] = [];
    for (const [holdKey, held] of this.#held) {
      if (held.sessionId !== sessionId) continue;
      if (up && this.#keyWatches.get(holdKey)?.stop !== undefined) continue;
      pairs.push(holdKey, held.token);
    }
    return pairs;
  }

  /** The backend says the session no longer has these holds (of `pairs`, as sent): each one still had as sent is lost. */
  lost(sessionId: string, pairs: readonly string[], lost: readonly string[]): void {
    for (const holdKey of lost) {
      const at = pairs.indexOf(holdKey);
      const token = at >= 0 && at % 2 === 0 ? pairs[at + 1] : undefined;
      const held = this.#held.get(holdKey);
      // Released, or acquired again since the check was sent: not this loss.
      if (!held || held.sessionId !== sessionId || held.token !== token) continue;
      this.release(holdKey);
      debug('%s %s was taken from session %s outside concord', held.kind, held.name, sessionId);
      this.#hooks.lockLost(held.kind, held.name, BigInt(held.token));
    }
  }

  /**
   * One check for a burst of notifications: of every hold, or only of `holdKey` (and the others named in the burst),
   * so that watching 10,000 new holds costs 10,000 hold checks, not one check of everything held per watch.
   */
  checkSoon(holdKey?: string): void {
    if (this.#closed) return;
    if (holdKey === undefined) this.#checkEvery = true;
    else this.#checkKeys.add(holdKey);
    if (this.#checkQueued) return;
    this.#checkQueued = true;
    queueMicrotask(() => {
      this.#checkQueued = false;
      const only = this.#checkEvery ? undefined : new Set(this.#checkKeys);
      this.#checkEvery = false;
      this.#checkKeys.clear();
      void this.#check([], only);
    });
  }

  /** Asks the backend whether the held locks, and the given sessions, still exist. */
  check(sessionIds: Iterable<string>): Promise<void> {
    return this.#check(sessionIds, undefined);
  }

  async #check(sessionIds: Iterable<string>, only: ReadonlySet<string> | undefined): Promise<void> {
    if (this.#closed) return;
    const sids = new Set<string>(sessionIds);
    for (const [holdKey, held] of this.#held) if (only === undefined || only.has(holdKey)) sids.add(held.sessionId);
    await Promise.all(
      [...sids].map(async (sid) => {
        const pairs = this.pairsOf(sid, only);
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
      for (const [holdKey, held] of this.#held) {
        if (this.#keyWatches.has(holdKey)) continue;
        if (now - held.since < KEY_WATCH_AFTER_MS) waiting = true;
        else this.#watchKey(holdKey, held.lockKey);
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
  #watchKey(holdKey: string, lockKey: string): void {
    if (!this.watchKeys || this.#closed) return;
    const watch: KeyWatch = { stop: undefined, cancelled: false };
    this.#keyWatches.set(holdKey, watch);
    this.#subscriber
      .add(`${this.#keyChannel}${lockKey}`, (event) => {
        // Grants and shared holds coming and going write the hash (hset, hdel); anything else done to a held lock's
        // key is looked at.
        if (!event.startsWith('h') && this.#held.has(holdKey)) this.checkSoon(holdKey);
      })
      .then(
        (stop) => {
          if (watch.cancelled) {
            stop();
            return;
          }
          watch.stop = stop;
          this.checkSoon(holdKey);
        },
        (error: unknown) => {
          if (this.#keyWatches.get(holdKey) === watch) this.#keyWatches.delete(holdKey);
          debug('cannot watch the key of %s: %s', holdKey, (error as Error).message);
          // An ACL without the __keyspace@ channels refuses every one: stop asking (renewals still check).
          if (isConcordError(error, 'ERR_REFUSED')) this.watchKeys = false;
        },
      );
  }
}
