/**
 * Locks and leadership as etcd's concurrency package does them: one key per contender under the lock's prefix, on the
 * session's lease; the lowest create revision holds, and each waiter watches only the key just ahead of it (fair, no
 * herd); token = the key's create revision. A waiter whose own key disappears queues again at the back (putting it
 * again fails with ERR_SESSION_LOST only when the lease is gone). Uncontended, acquire + release is two writes: a put
 * guarded by "nobody under this prefix", and a delete guarded by the create revision.
 *
 * Shared holds and permits (shared.ts) wait in the same line, through line() and waitBehind(). Holders are always a
 * prefix of the line, so tokens (create revisions) grow in the order etcd grants: shared requests granted together
 * by one departure have their tokens in line order, whichever hears of it first.
 *
 * A contender key that could not be deleted (etcd unreachable) is an orphan: deleted before its name is used again,
 * since reusing it would hand out its old token a second time, and retried after the next successful renewal.
 */
import type { IKeyValue, IRequestOp, ITxnResponse } from 'etcd3';
import { sleep } from '../../src/clock.js';
import { debug } from '../../src/debug.js';
import type { LockKind } from '../../src/driver.js';
import { ConcordError, abortedError } from '../../src/errors.js';
import { Wakeup } from '../../src/kit/index.js';
import type { HeldLocks } from './held.js';
import { contenderValue, leaseHex, type Keys } from './keys.js';
import type { Rpc } from './rpc.js';
import { absent, b, createdAt, del, emptyPrefix, get, kvsOf, lowest, onLease, type TxnRequest } from './txn.js';
import type { WatchHub } from './watch.js';

/** One request waiting in a line: whose and which key. */
export interface LineRequest {
  readonly kind: LockKind;
  readonly name: string;
  readonly own: string;
  readonly sessionId: string;
}

/** A request after entering the line: held at once (no `wait`), or how it waits. */
export interface Entered {
  /** Our key's create revision: the token. */
  readonly mine: bigint;
  /** The answer that put (or found) our key. */
  readonly at: ITxnResponse;
  /** Waits until held: the revision at which ours was seen holding, or undefined when our key went meanwhile. */
  readonly wait?: (signal: AbortSignal) => Promise<bigint | undefined>;
}

/** What a waiter's check found: its key gone, a request it must wait for, or that it holds (as of `revision`). */
export type Checked =
  | { readonly state: 'gone' }
  | { readonly state: 'waits'; readonly ahead: IKeyValue; readonly revision: bigint }
  | { readonly state: 'holds'; readonly revision: bigint };

/** The create revision of our key, read by the `index`th request of a transaction that put or found it. */
export function createdOf(response: ITxnResponse, index: number): bigint {
  const existing = kvsOf(response, index)[0];
  if (!existing) throw new ConcordError('ERR_CONNECTION', 'etcd lock: the contender key vanished during the transaction');
  return BigInt(existing.create_revision);
}

export class LockQueue {
  readonly #rpc: Rpc;
  readonly #hub: WatchHub;
  readonly #keys: Keys;
  readonly #held: HeldLocks;
  /** The fallback re-check period of a waiter, should a notification be lost. */
  readonly #recheckMs: number;
  /** Contender keys whose deletion failed (key -> create revision). */
  readonly #orphans = new Map<string, bigint>();
  /** Deletions of contender keys in flight. */
  readonly #deleting = new Map<string, Promise<void>>();
  /**
   * Contender keys of ours that may exist: put (or about to be), or left by a call whose answer was lost. A key not
   * in it surely does not exist (only this driver writes its sessions' keys), so tryLock need not look for it.
   */
  readonly #mayExist = new Set<string>();

  constructor(rpc: Rpc, hub: WatchHub, keys: Keys, held: HeldLocks, sessionTtlMs: number) {
    this.#rpc = rpc;
    this.#hub = hub;
    this.#keys = keys;
    this.#held = held;
    this.#recheckMs = sessionTtlMs / 3;
  }

  /** One attempt: the token when this session now holds the lock, undefined when someone else does. */
  async tryLock(kind: LockKind, name: string, sessionId: string, member: string): Promise<bigint | undefined> {
    const prefix = this.#keys.locks(kind, name);
    const own = this.#keys.contender(kind, name, BigInt(sessionId));
    if (this.#deleting.has(own) || this.#orphans.has(own)) await this.adopt(own);
    // Put our key only when nobody contends: a refused attempt writes nothing. When a key of ours may be there (held,
    // in line, or put by a call whose answer was lost, this call's first attempt included), the failure branch reads
    // it and the lowest key: ours, and we hold the lock. Sent only then: in every request, those two reads cost 7% of
    // an uncontended acquire + release in client CPU, encoded and decoded for nothing.
    const request: TxnRequest = {
      compare: [emptyPrefix(prefix)],
      success: [{ request_put: { key: b(own), value: b(member), lease: sessionId } }],
    };
    const careful: TxnRequest = { ...request, failure: [get(own), lowest(prefix, 'Ascend', 1)] };
    const looked = this.#mayExist.has(own);
    this.#mayExist.add(own);
    const response = await this.#rpc.txn('try lock', 'always', looked ? careful : request, careful);
    if (response.succeeded) return this.#held.hold(kind, name, own, BigInt(response.header.revision), response, sessionId);
    const first = kvsOf(response, 1)[0];
    // Ours, first in line: put when nobody contended (a queued one is cancelled before a new attempt), it has held since.
    if (first?.key.toString() === own) return this.#held.hold(kind, name, own, BigInt(first.create_revision), response, sessionId);
    // A key of ours in line: a plain attempt leaves nothing behind.
    const mine = kvsOf(response, 0)[0];
    if (mine) {
      const error = await this.drop(own, BigInt(mine.create_revision));
      if (error !== undefined) throw error;
    } else {
      // Refused: nothing of ours there (looked for, or known absent before a request that wrote nothing).
      this.#mayExist.delete(own);
    }
    return undefined;
  }

  /** Enters the line and waits until held; leaves it when `signal` aborts or the wait fails. */
  acquire(kind: LockKind, name: string, sessionId: string, member: string, signal: AbortSignal, queued: () => void): Promise<bigint> {
    const prefix = this.#keys.locks(kind, name);
    const own = this.#keys.contender(kind, name, BigInt(sessionId));
    // Our key, and the one just ahead of it: none means held.
    const check = async (mine: bigint): Promise<Checked> => {
      const response = await this.#rpc.txn('lock check', 'always', { success: [get(own), lowest(prefix, 'Descend', 1, mine - 1n)] });
      if (kvsOf(response, 0)[0]?.create_revision !== mine.toString()) return { state: 'gone' };
      const ahead = kvsOf(response, 1)[0];
      const revision = BigInt(response.header.revision);
      return ahead === undefined ? { state: 'holds', revision } : { state: 'waits', ahead, revision };
    };
    // One round trip: enter the line (a put unless our key is there already, from an attempt whose answer was lost),
    // and read our key and the two newest keys: when ours is the newest, the second is the one just ahead of it.
    // (The core makes a plain tryLock attempt first when nobody in this process contends, so this is the queued path.)
    // With the lease gone the put fails: ERR_SESSION_LOST.
    const enter = async (): Promise<Entered> => {
      // The value records when we entered the line, for locks() (a key of ours already there keeps its own).
      const put: IRequestOp = { request_put: { key: b(own), value: b(contenderValue(member, Date.now())), lease: sessionId } };
      this.#mayExist.add(own);
      const entry = await this.#rpc.txn('lock', 'always', {
        compare: [absent(own)],
        success: [put, get(own), lowest(prefix, 'Descend', 2)],
        failure: [get(own), lowest(prefix, 'Descend', 2)],
      });
      const at = entry.succeeded ? 1 : 0;
      const mine = createdOf(entry, at);
      const newest = kvsOf(entry, at + 1);
      // Known only when ours is the newest key; else (an older key of ours) the wait starts with a read.
      const known = newest[0]?.key.toString() === own;
      const ahead = known ? newest[1] : undefined;
      if (known && ahead === undefined) return { mine, at: entry };
      const revision = BigInt(entry.header.revision);
      return { mine, at: entry, wait: (signal) => this.waitBehind(own, mine, revision, ahead, signal, () => check(mine)) };
    };
    return this.line({ kind, name, own, sessionId }, enter, signal, queued);
  }

  /**
   * Takes a place in kind/name's line with `enter` and waits until held (`wait`); leaves the line when `signal` aborts
   * or the wait fails, and queues again at the back when our key went while we waited (not with our lease: an
   * operator deleted it).
   */
  async line(request: LineRequest, enter: () => Promise<Entered>, signal: AbortSignal, queued: () => void): Promise<bigint> {
    const { kind, name, own, sessionId } = request;
    if (this.#deleting.has(own) || this.#orphans.has(own)) await this.adopt(own);
    let announced = false;
    for (;;) {
      const entered = await enter();
      const { mine, wait } = entered;
      if (wait === undefined) return this.#held.hold(kind, name, own, mine, entered.at, sessionId);
      // Given up on: leave the line at once, not after the round trip the wait may be in (the caller has already been
      // told, and what it does next must not find our key). A grant that races with this is dropped with it.
      let withdrawn: Promise<ConcordError | undefined> | undefined;
      const withdraw = (): Promise<ConcordError | undefined> => (withdrawn ??= this.drop(own, mine));
      const onAbort = (): void => void withdraw();
      signal.addEventListener('abort', onAbort, { once: true });
      try {
        if (signal.aborted) throw abortedError(signal);
        if (!announced) {
          announced = true;
          queued();
        }
        const first = await wait(signal);
        if (first !== undefined) return this.#held.hold(kind, name, own, mine, first, sessionId);
      } catch (error) {
        await withdraw();
        throw signal.aborted ? abortedError(signal) : error;
      } finally {
        signal.removeEventListener('abort', onAbort);
      }
      // Our key went while we waited, and not with our lease (an operator deleted it): queue again, at the back.
      debug('etcd: the contender key %s was deleted while waiting; queueing again', own);
    }
  }

  /**
   * Waits in line behind `ahead` (read at `revision`): watches only that key, checks again when it goes, holds when
   * `check` says so. For an exclusive request what it waits for is the key just ahead; for a shared hold, the last
   * exclusive request ahead. Resolves with the revision at which ours was found holding, or undefined when our key
   * went meanwhile (the caller queues again; if the lease went with it, that fails with ERR_SESSION_LOST).
   */
  async waitBehind(
    own: string,
    mine: bigint,
    revision: bigint,
    ahead: IKeyValue | undefined,
    signal: AbortSignal,
    check: () => Promise<Checked>,
  ): Promise<bigint | undefined> {
    const wakeup = new Wakeup();
    let ownGone = false;
    /** The own-key watch lost track (compaction): read again before waiting. */
    let recheck = false;
    let failures = 0;
    // Our own key going away means we are no longer in line: waiting on would be waiting forever (etcd's own mutex
    // does). Eager, from the revision of our read: nothing after it is missed, and it needs no round trip.
    const unwatchOwn = await this.#hub.watch({
      key: b(own),
      startRevision: revision + 1n,
      eager: true,
      deletesOnly: true,
      reopen: true,
      events: () => {
        ownGone = true;
        wakeup.wake();
      },
      reset: () => {
        recheck = true;
        wakeup.wake();
      },
    });
    try {
      for (;;) {
        if (signal.aborted) throw abortedError(signal);
        if (ownGone) return undefined;
        if (recheck) {
          recheck = false;
          ahead = undefined;
        }
        if (ahead === undefined) {
          const checked = await check();
          if (checked.state === 'gone') return undefined;
          if (checked.state === 'holds') return checked.revision;
          ahead = checked.ahead;
          revision = checked.revision;
        }
        // Armed before the watch of the key ahead: what woke us earlier is carried by the flags checked above.
        wakeup.take();
        // Watched from now, not from our read's revision: etcd serves a watch that starts in the past from a loop
        // that runs every 100 ms, so a release right after our read would reach us up to 100 ms late.
        let unwatch: () => void;
        let createdAtRevision = 0n;
        try {
          unwatch = await this.#hub.watch({
            key: ahead.key,
            deletesOnly: true,
            events: () => {
              wakeup.wake();
            },
            reset: () => {
              wakeup.wake();
            },
            created: (at) => {
              createdAtRevision = at;
            },
          });
          failures = 0;
        } catch (error) {
          // A watch stream that broke is reopened by the hub: keep our place in line through a short outage.
          if (!(error instanceof ConcordError && error.code === 'ERR_CONNECTION') || ++failures > 3) throw error;
          await sleep(100 * failures, signal);
          ahead = undefined;
          continue;
        }
        if (createdAtRevision > revision) {
          // Something changed between our read and the watch: the key ahead may be gone already; look again.
          const still = await this.#rpc.txn('lock check', 'always', { success: [get(ahead.key.toString())] }).catch((error: unknown) => {
            unwatch();
            throw error;
          });
          if (kvsOf(still, 0)[0]?.create_revision !== ahead.create_revision) {
            unwatch();
            ahead = undefined;
            continue;
          }
        }
        try {
          // The watch is the wake-up; the period only bounds the delay should a notification be lost.
          if (!ownGone && !recheck) await wakeup.wait(this.#recheckMs, signal);
        } finally {
          unwatch();
        }
        ahead = undefined;
      }
    } finally {
      unwatchOwn();
    }
  }

  /** Releases the lock only if this session's key still has this create revision. */
  unlock(kind: LockKind, name: string, sessionId: string, token: bigint): Promise<void> {
    return this.release(this.#keys.contender(kind, name, BigInt(sessionId)), token);
  }

  /** Deletes our key `own` only if it still has this create revision (the token). */
  async release(own: string, token: bigint): Promise<void> {
    // Our own delete is not a loss: stop watching first.
    if (this.#held.token(own) === token) this.#held.unhold(own);
    // Only the key with this create revision: a later key of ours (or anyone's) is never touched. The next local
    // contender may start before this lands (the core hands over at once), so it waits for it in adopt().
    const error = await this.drop(own, token);
    if (error !== undefined) throw error;
  }

  /** Ends whatever this session still has for kind/name: its place in line, or the lock granted meanwhile. */
  cancel(kind: LockKind, name: string, sessionId: string): Promise<void> {
    return this.cancelKey(this.#keys.contender(kind, name, BigInt(sessionId)), sessionId);
  }

  /** Ends one request key of this session, whatever its create revision (waiting, or granted meanwhile). */
  async cancelKey(own: string, sessionId: string): Promise<void> {
    this.#held.unhold(own);
    const deleting = this.#deleting.get(own);
    if (deleting) await deleting;
    // Whatever its create revision (waiting, or granted meanwhile): the core holds no lock on it. Guarded by the lease
    // so that only this session's key is ever deleted. Deleting a missing key changes nothing, so a retry is harmless.
    await this.#rpc.txn('cancel lock', 'always', { compare: [onLease(own, sessionId)], success: [del(own)] });
    this.#orphans.delete(own);
    this.#mayExist.delete(own);
  }

  // ---- contender keys that must go

  /** Whether some contender key is waiting to be deleted again. */
  get hasOrphans(): boolean {
    return this.#orphans.size > 0;
  }

  /** Deletes the orphans again (after a successful renewal: etcd answers again). */
  retryOrphans(): void {
    for (const [key, revision] of [...this.#orphans]) {
      if (this.#deleting.has(key)) continue;
      this.#orphans.delete(key);
      void this.drop(key, revision);
    }
  }

  /** A session's lease is revoked, and its keys with it: its orphans need no more attempts. */
  forgetLease(lease: bigint): void {
    const hex = leaseHex(lease);
    for (const key of [...this.#orphans.keys()]) if (this.#keys.leaseOf(key) === hex) this.#orphans.delete(key);
    for (const key of [...this.#mayExist]) if (this.#keys.leaseOf(key) === hex) this.#mayExist.delete(key);
  }

  /** The fallback re-check period of a waiter. */
  get recheckMs(): number {
    return this.#recheckMs;
  }

  /** Whether a deletion of `key` is in flight or owed: adopt() it before using the key again. */
  pending(key: string): boolean {
    return this.#deleting.has(key) || this.#orphans.has(key);
  }

  /** Keys of ours whose deletion is in flight or owed, of those `match` accepts. */
  pendingWhere(match: (key: string) => boolean): string[] {
    return [...new Set([...this.#deleting.keys(), ...this.#orphans.keys()])].filter(match);
  }

  /** The driver is closed: no more attempts. */
  clear(): void {
    this.#orphans.clear();
  }

  /**
   * Deletes our contender key if it still has this create revision. On failure the key is kept as an orphan: deleted
   * before this key name is used again, and retried after the next successful renewal. Resolves with the error.
   */
  drop(key: string, revision: bigint): Promise<ConcordError | undefined> {
    const deleting = this.#rpc.txn('withdraw', 'always', { compare: [createdAt(key, revision)], success: [del(key)] }).then(
      (response) => {
        if (this.#orphans.get(key) === revision) this.#orphans.delete(key);
        // Deleted: gone (a key of another create revision, not deleted, may still be there).
        if (response.succeeded) this.#mayExist.delete(key);
        return undefined;
      },
      (error: unknown) => {
        debug('etcd: withdrawing %s failed, retrying later: %s', key, (error as Error).message);
        if (!this.#rpc.closed) this.#orphans.set(key, revision);
        return error instanceof ConcordError ? error : new ConcordError('ERR_CONNECTION', 'etcd withdraw failed', { cause: error });
      },
    );
    const settled = deleting.then(() => undefined);
    this.#deleting.set(key, settled);
    void settled.then(() => {
      if (this.#deleting.get(key) === settled) this.#deleting.delete(key);
    });
    return deleting;
  }

  /**
   * About to contend with this key name. A deletion in flight must land first, and an earlier key of ours that could
   * not be deleted must go now: reusing it would hand out its old token a second time.
   */
  async adopt(key: string): Promise<void> {
    const deleting = this.#deleting.get(key);
    if (deleting) await deleting;
    const orphan = this.#orphans.get(key);
    if (orphan === undefined) return;
    const error = await this.drop(key, orphan);
    if (error !== undefined) throw error;
  }
}
