/**
 * Shared holds of a lock and semaphore permits, in the same line as the exclusive requests of queue.ts (one key per
 * request under the lock's prefix, on the session's lease, ordered by create revision; token = that revision), in the
 * shape of etcd's recipes:
 *
 * - A shared hold holds once no exclusive request is ahead of it, and waits on the deletion of the last exclusive
 *   request before it (etcd's recipe/rwmutex.go): the shared waiters behind one writer are all woken by its release,
 *   and nobody else is. Uncontended, acquire + release is two writes, like an exclusive lock: a put guarded by "no
 *   exclusive request in line", and a delete guarded by the create revision.
 * - A permit holds once fewer than `limit` requests are ahead of it. Any of the holders ahead may leave first, so a
 *   waiter watches the deletions in its line (with the deleted key's create revision, to tell those ahead of it) and
 *   counts them against what was ahead when it read: no read per deletion, only its own grant makes it act. The limit
 *   is part of the key, so "nobody uses another limit" is a comparison in the same transaction as the put.
 */
import type { IRequestOp, ITxnResponse } from 'etcd3';
import type { LockKind, LockMode } from '../../src/driver.js';
import { abortedError } from '../../src/errors.js';
import { Wakeup, limitMismatch } from '../../src/kit/index.js';
import type { HeldLocks } from './held.js';
import { contenderValue, exclusiveRange, leaseHex, modeOf, prefixEnd, prefixRange, type KeyRange, type Keys } from './keys.js';
import { createdOf, type Checked, type Entered, type LockQueue } from './queue.js';
import type { Rpc } from './rpc.js';
import { absent, b, count, countOf, emptyPrefix, emptyRange, get, keysIn, kvsOf, lowest, unchangedSince } from './txn.js';
import type { WatchHub } from './watch.js';

/** What is ahead of a permit request as of one read: how many requests, and the revision of the read. */
interface Ahead {
  readonly count: number;
  readonly at: bigint;
}

export class SharedLine {
  readonly #rpc: Rpc;
  readonly #hub: WatchHub;
  readonly #keys: Keys;
  readonly #held: HeldLocks;
  readonly #queue: LockQueue;

  constructor(rpc: Rpc, hub: WatchHub, keys: Keys, held: HeldLocks, queue: LockQueue) {
    this.#rpc = rpc;
    this.#hub = hub;
    this.#keys = keys;
    this.#held = held;
    this.#queue = queue;
  }

  /** One attempt: the token when this request now holds, undefined when it would have to wait (nothing left behind). */
  tryLock(kind: LockKind, name: string, sessionId: string, member: string, mode: LockMode): Promise<bigint | undefined> {
    return kind === 'semaphore' ? this.#tryPermit(name, sessionId, member, mode) : this.#tryShared(kind, name, sessionId, member, mode);
  }

  /** Enters the line and waits until held; leaves it when `signal` aborts or the wait fails. */
  acquire(
    kind: LockKind,
    name: string,
    sessionId: string,
    member: string,
    signal: AbortSignal,
    queued: () => void,
    mode: LockMode,
  ): Promise<bigint> {
    const own = this.#keys.request(kind, name, BigInt(sessionId), mode);
    const enter =
      kind === 'semaphore'
        ? this.#enterForPermit(name, own, sessionId, member, mode)
        : this.#enterShared(kind, name, own, sessionId, member);
    return this.#queue.line({ kind, name, own, sessionId }, enter, signal, queued);
  }

  /** Releases the hold in `slot` only if its key still has this create revision. */
  async unlock(kind: LockKind, name: string, sessionId: string, token: bigint, slot: number): Promise<void> {
    const lease = BigInt(sessionId);
    const own =
      this.#held.find(kind, name, token) ??
      (kind === 'semaphore'
        ? await this.#findPermit(name, lease, slot, token)
        : this.#keys.request(kind, name, lease, { slot, shared: true, limit: 0 }));
    if (own !== undefined) await this.#queue.release(own, token);
  }

  /** Ends whatever this session still has for kind/name in `slot`: its place in line, or the hold granted meanwhile. */
  async cancel(kind: LockKind, name: string, sessionId: string, slot: number): Promise<void> {
    const lease = BigInt(sessionId);
    if (kind !== 'semaphore')
      return this.#queue.cancelKey(this.#keys.request(kind, name, lease, { slot, shared: true, limit: 0 }), sessionId);
    // A permit's key names its limit, which a cancel is not told: look for the slot's keys (and any owed a deletion).
    const prefix = this.#keys.locks(kind, name);
    const tail = `/${leaseHex(lease)}/${String(slot)}`;
    const ours = (key: string): boolean => key.startsWith(prefix) && key.endsWith(tail);
    const listed = await this.#rpc.txn('cancel permit', 'always', { success: [keysIn(prefixRange(prefix))] });
    const keys = new Set([...kvsOf(listed, 0).map((kv) => kv.key.toString()), ...this.#queue.pendingWhere(ours)].filter(ours));
    await Promise.all([...keys].map((key) => this.#queue.cancelKey(key, sessionId)));
  }

  // ---- shared holds of a lock

  async #tryShared(kind: LockKind, name: string, sessionId: string, member: string, mode: LockMode): Promise<bigint | undefined> {
    const prefix = this.#keys.locks(kind, name);
    const own = this.#keys.request(kind, name, BigInt(sessionId), mode);
    if (this.#queue.pending(own)) await this.#queue.adopt(own);
    const writers = exclusiveRange(prefix);
    // Our key only when no exclusive request is in line: shared holds never wait behind shared ones. The failure branch
    // reads our own key (put by an earlier attempt whose answer was lost) and the oldest exclusive request.
    const response = await this.#rpc.txn('try shared lock', 'always', {
      compare: [absent(own), emptyRange(writers)],
      success: [put(own, member, sessionId)],
      failure: [get(own), lowest(writers.start, 'Ascend', 1, undefined, writers.end)],
    });
    if (response.succeeded) return this.#held.hold(kind, name, own, BigInt(response.header.revision), response, sessionId);
    const mine = kvsOf(response, 0)[0];
    if (!mine) return undefined;
    const created = BigInt(mine.create_revision);
    const writer = kvsOf(response, 1)[0];
    // Ours from an earlier attempt whose answer was lost: held unless an exclusive request is ahead of it.
    if (writer === undefined || BigInt(writer.create_revision) > created)
      return this.#held.hold(kind, name, own, created, response, sessionId);
    // Ours is in line behind a writer: a plain attempt leaves nothing behind.
    const error = await this.#queue.drop(own, created);
    if (error !== undefined) throw error;
    return undefined;
  }

  /** Puts our key and reads the last exclusive request (one round trip): none ahead means held. */
  #enterShared(kind: LockKind, name: string, own: string, sessionId: string, member: string): () => Promise<Entered> {
    const writers = exclusiveRange(this.#keys.locks(kind, name));
    const lastWriter = lowest(writers.start, 'Descend', 1, undefined, writers.end);
    // Our key, and the last exclusive request ahead of it: none means held.
    const check = async (mine: bigint): Promise<Checked> => {
      const response = await this.#rpc.txn('shared lock check', 'always', {
        success: [get(own), lowest(writers.start, 'Descend', 1, mine - 1n, writers.end)],
      });
      if (kvsOf(response, 0)[0]?.create_revision !== mine.toString()) return { state: 'gone' };
      const ahead = kvsOf(response, 1)[0];
      const revision = BigInt(response.header.revision);
      return ahead === undefined ? { state: 'holds', revision } : { state: 'waits', ahead, revision };
    };
    return async () => {
      const entry = await this.#rpc.txn('shared lock', 'always', {
        compare: [absent(own)],
        success: [put(own, member, sessionId, Date.now()), get(own), lastWriter],
        failure: [get(own), lastWriter],
      });
      const mine = createdOf(entry, entry.succeeded ? 1 : 0);
      const revision = BigInt(entry.header.revision);
      // Just put, ours is the newest: the newest writer is ahead of it. (An earlier attempt's key: the wait checks first.)
      const writer = entry.succeeded ? kvsOf(entry, 2)[0] : undefined;
      if (entry.succeeded && writer === undefined) return { mine, at: entry };
      return { mine, at: entry, wait: (signal) => this.#queue.waitBehind(own, mine, revision, writer, signal, () => check(mine)) };
    };
  }

  // ---- semaphore permits

  async #tryPermit(name: string, sessionId: string, member: string, mode: LockMode): Promise<bigint | undefined> {
    const kind = 'semaphore';
    const prefix = this.#keys.locks(kind, name);
    const own = this.#keys.request(kind, name, BigInt(sessionId), mode);
    const others = this.#otherLimits(name, mode.limit);
    if (this.#queue.pending(own)) await this.#queue.adopt(own);
    for (;;) {
      // Nobody in line: ours at once. Else the count, our own key (an earlier attempt's) and any key of another limit.
      const response = await this.#rpc.txn('try permit', 'always', {
        compare: [emptyPrefix(prefix)],
        success: [put(own, member, sessionId)],
        failure: [get(own), count(prefix), keysIn(others[0], undefined, 1), keysIn(others[1], undefined, 1)],
      });
      if (response.succeeded) return this.#held.hold(kind, name, own, BigInt(response.header.revision), response, sessionId);
      this.#assertLimit(name, mode.limit, response, 2);
      const mine = kvsOf(response, 0)[0];
      if (mine) {
        const created = BigInt(mine.create_revision);
        const ahead = await this.#ahead(prefix, own, created);
        if (ahead === undefined) return undefined;
        if (ahead.count < mode.limit) return this.#held.hold(kind, name, own, created, ahead.at, sessionId);
        const error = await this.#queue.drop(own, created);
        if (error !== undefined) throw error;
        return undefined;
      }
      if (countOf(response, 1) >= mode.limit) return undefined;
      // Fewer than `limit` in line at that revision: ours, unless someone entered the line since (then look again).
      const entry = await this.#rpc.txn('try permit', 'always', {
        compare: [unchangedSince(prefix, BigInt(response.header.revision))],
        success: [put(own, member, sessionId)],
      });
      if (entry.succeeded) return this.#held.hold(kind, name, own, BigInt(entry.header.revision), entry, sessionId);
    }
  }

  /** Puts our key unless another limit is in use, and counts the line (one round trip): fewer than `limit` ahead is held. */
  #enterForPermit(name: string, own: string, sessionId: string, member: string, mode: LockMode): () => Promise<Entered> {
    const prefix = this.#keys.locks('semaphore', name);
    const others = this.#otherLimits(name, mode.limit);
    return async () => {
      const entry = await this.#rpc.txn('permit', 'always', {
        compare: [absent(own), emptyRange(others[0]), emptyRange(others[1])],
        success: [put(own, member, sessionId, Date.now()), get(own), count(prefix)],
        failure: [get(own), keysIn(others[0], undefined, 1), keysIn(others[1], undefined, 1)],
      });
      if (!entry.succeeded) this.#assertLimit(name, mode.limit, entry, 1);
      const mine = createdOf(entry, entry.succeeded ? 1 : 0);
      const revision = BigInt(entry.header.revision);
      // Just put, ours is the newest: every other key is ahead. (An earlier attempt's key: the wait counts first.)
      const ahead = entry.succeeded ? { count: countOf(entry, 2) - 1, at: revision } : undefined;
      if (ahead !== undefined && ahead.count < mode.limit) return { mine, at: entry };
      return { mine, at: entry, wait: (signal) => this.#waitForPermit(prefix, own, mine, ahead, mode.limit, signal) };
    };
  }

  /**
   * Waits until fewer than `limit` requests are ahead of ours: one watch of the line's deletions from the revision
   * `ahead` was counted at, each deletion of a key created before ours counted off (by its create revision, so a
   * deletion seen twice counts once). Reads again only when the count is unknown: at first after an earlier attempt's
   * key, when the watch lost track (compaction), and at the fallback period should a notification be lost. Resolves
   * with the revision at which ours holds, or undefined when our key went meanwhile.
   */
  async #waitForPermit(
    prefix: string,
    own: string,
    mine: bigint,
    ahead: Ahead | undefined,
    limit: number,
    signal: AbortSignal,
  ): Promise<bigint | undefined> {
    const wakeup = new Wakeup();
    let known: Ahead | undefined = ahead ?? (await this.#ahead(prefix, own, mine));
    if (known === undefined) return undefined;
    /** Deletions of keys ahead of ours seen by the watch: create revision -> the revision of the deletion. */
    const gone = new Map<bigint, bigint>();
    let ownGone = false;
    /** Bumped whenever the watch lost track: a read that started before it may have missed deletions. */
    let losses = 0;
    let notices = 0;
    const unwatch = await this.#hub.watch({
      key: b(prefix),
      rangeEnd: prefixEnd(prefix),
      startRevision: known.at + 1n,
      eager: true,
      deletesOnly: true,
      prevKv: true,
      reopen: true,
      events: (events) => {
        for (const event of events) {
          const created = event.prev_kv ? BigInt(event.prev_kv.create_revision) : undefined;
          if (event.kv.key.toString() === own) {
            if (created === undefined || created === mine) ownGone = true;
          } else if (created === undefined) {
            losses++;
            known = undefined;
          } else if (created < mine) {
            gone.set(created, BigInt(event.kv.mod_revision));
          }
        }
        notices++;
        wakeup.wake();
      },
      reset: () => {
        losses++;
        known = undefined;
        notices++;
        wakeup.wake();
      },
    });
    try {
      for (;;) {
        if (signal.aborted) throw abortedError(signal);
        if (ownGone) return undefined;
        if (known === undefined) {
          const before = losses;
          const read = await this.#ahead(prefix, own, mine);
          if (read === undefined) return undefined;
          for (const [created, at] of gone) if (at <= read.at) gone.delete(created);
          if (losses !== before) continue;
          known = read;
        }
        let left = known.count;
        let since = known.at;
        for (const at of gone.values()) {
          if (at <= known.at) continue;
          left--;
          if (at > since) since = at;
        }
        if (left < limit) return since;
        const seen = notices;
        await wakeup.wait(this.#queue.recheckMs, signal);
        // Woken by nothing: count again, should a notification have been lost.
        if (notices === seen) known = undefined;
      }
    } finally {
      unwatch();
    }
  }

  /** How many requests are ahead of our key (created at `mine`), or undefined when it is gone. */
  async #ahead(prefix: string, own: string, mine: bigint): Promise<Ahead | undefined> {
    const response = await this.#rpc.txn('permit check', 'always', { success: [get(own), keysIn(prefixRange(prefix), mine - 1n)] });
    if (kvsOf(response, 0)[0]?.create_revision !== mine.toString()) return undefined;
    return { count: kvsOf(response, 1).length, at: BigInt(response.header.revision) };
  }

  /** The semaphore's keys of every other limit: the two ranges around the keys of `limit`. */
  #otherLimits(name: string, limit: number): [KeyRange, KeyRange] {
    const prefix = this.#keys.locks('semaphore', name);
    const permits = this.#keys.permits(name, limit);
    return [
      { start: prefix, end: b(permits) },
      { start: prefixEnd(permits).toString(), end: prefixEnd(prefix) },
    ];
  }

  /** Throws limitMismatch when the `index`th or the next read of `response` found a key of another limit. */
  #assertLimit(name: string, limit: number, response: ITxnResponse, index: number): void {
    const other = kvsOf(response, index)[0] ?? kvsOf(response, index + 1)[0];
    if (other === undefined) return;
    const prefix = this.#keys.locks('semaphore', name);
    throw limitMismatch(name, limit, modeOf('semaphore', prefix, other.key.toString()).limit);
  }

  /** Finds our permit key with this create revision (its limit is not known here), if it is still there. */
  async #findPermit(name: string, lease: bigint, slot: number, token: bigint): Promise<string | undefined> {
    const prefix = this.#keys.locks('semaphore', name);
    const tail = `/${leaseHex(lease)}/${String(slot)}`;
    const response = await this.#rpc.txn('find permit', 'always', { success: [keysIn(prefixRange(prefix))] });
    const kv = kvsOf(response, 0).find((x) => x.create_revision === token.toString() && x.key.toString().endsWith(tail));
    return kv?.key.toString();
  }
}

/** Puts a request key on the session's lease; its value is the member id, and when it entered the line to wait (keys.ts). */
function put(key: string, member: string, sessionId: string, enteredMs?: number): IRequestOp {
  return { request_put: { key: b(key), value: b(contenderValue(member, enteredMs)), lease: sessionId } };
}
