/**
 * The etcd driver's implementation: sessions on leases, groups as single transactions, locks through the contender
 * queue, every watch on one stream, and the order of snapshot reads against later writes.
 */
import { randomBytes } from 'node:crypto';
import type { Etcd3, IKeyValue, IOptions, IRequestOp, ITxnResponse } from 'etcd3';
import { importClient } from '../../src/client.js';
import { debug } from '../../src/debug.js';
import { ConcordError, abortedError } from '../../src/errors.js';
import {
  holdsAt,
  type Driver,
  type DriverContext,
  type DriverEvents,
  type DriverGroupEvent,
  type GroupSnapshot,
  type LockHolder,
  type LockKind,
  type LockListing,
  type LockMode,
  type LockWaiter,
  type Revision,
  type Unsubscribe,
  type WatchSink,
} from '../../src/driver.js';
import {
  compareIds,
  groupExists,
  groupNotEmpty,
  groupNotFound,
  memberExists,
  memberNotJoined,
  parseCapabilities,
} from '../../src/kit/index.js';
import type { Capabilities, Member } from '../../src/types.js';
import { etcdConfig } from './config.js';
import { HeldLocks } from './held.js';
import { MIN_TTL_MS, features } from './index.js';
import { Keys, modeOf, parseContender, prefixEnd } from './keys.js';
import { LockQueue } from './queue.js';
import { SharedLine } from './shared.js';
import { Deadlines, Rpc, hostFailover, type CallOptions, type Etcd3Module } from './rpc.js';
import { absent, b, countOf, exists, emptyPrefix, get, kvsOf, lowest } from './txn.js';
import { WatchHub } from './watch.js';

/**
 * etcd3's close() gives a channel that is still connecting one more second (a referenced timer) before it closes it,
 * which kept a process that failed to connect alive that long: close every channel now. Its fields are private, so
 * their shape is checked at run time; with another shape, close() works as it always did.
 */
function closeNow(client: Etcd3): void {
  const hosts = (client as unknown as { pool?: { hosts?: unknown } }).pool?.hosts;
  if (Array.isArray(hosts)) {
    for (const host of hosts as Array<{ cachedServices?: Record<string, { close?: () => void } | undefined> }>) {
      if (typeof host.cachedServices !== 'object') continue;
      for (const service of Object.values(host.cachedServices)) service?.close?.();
      host.cachedServices = {};
    }
  }
  client.close();
}

class EtcdDriver implements Driver {
  readonly features = features;
  readonly #client: Etcd3;
  readonly #rpc: Rpc;
  readonly #keys: Keys;
  readonly #hub: WatchHub;
  readonly #held: HeldLocks;
  readonly #queue: LockQueue;
  readonly #shared: SharedLine;
  readonly #events: DriverEvents;
  readonly #member: string;
  readonly #namespace: string;
  /** The hosts as the user gave them, for messages. */
  readonly #hosts: string;
  /** Each open session's watch of its session key. */
  readonly #sessions = new Map<string, Unsubscribe | undefined>();
  /** Streams of keepalive exchanges in flight, cancelled on close. */
  readonly #streams = new Set<{ cancel(): void }>();

  constructor(context: DriverContext, client: Etcd3, rpc: Rpc, hosts: readonly string[], callTimeoutMs: number) {
    this.#client = client;
    this.#rpc = rpc;
    this.#keys = new Keys(context.namespace);
    this.#events = context.events;
    this.#member = context.member;
    this.#namespace = context.namespace;
    this.#hosts = hosts.map((host) => host.replace(/^https?:\/\//, '')).join(',');
    this.#hub = new WatchHub(() => this.#client.watchClient.watch(), callTimeoutMs);
    this.#held = new HeldLocks(rpc, this.#hub, context.events);
    this.#queue = new LockQueue(rpc, this.#hub, this.#keys, this.#held, context.sessionTtlMs);
    this.#shared = new SharedLine(rpc, this.#hub, this.#keys, this.#held, this.#queue);
  }

  // ---- the order of snapshot reads and later writes

  /**
   * Added to a read, makes it a (no-op) write: etcd then orders it in its log with the writes, in the order they
   * arrive, instead of serving it after a read-index round that a write sent a moment later can overtake. So a
   * watch's snapshot or a holder() taken before a change (in program order) does not already show that change.
   * Deleting a key that never exists changes nothing: no revision, no event.
   */
  get #inOrder(): IRequestOp {
    return { request_delete_range: { key: b(`${this.#keys.root}.none`) } };
  }

  /**
   * Reads of a snapshot (members, lock holder) in flight. A write this driver is asked for meanwhile waits for them:
   * etcd serves concurrent requests in no particular order, and a snapshot taken before a change in program order
   * must not already contain it (a watch started, then a join, must report the join as an event).
   */
  readonly #snapshots = new Set<Promise<unknown>>();

  #snapshot<T>(read: Promise<T>): Promise<T> {
    const settled = read.then(
      () => undefined,
      () => undefined,
    );
    this.#snapshots.add(settled);
    void settled.then(() => this.#snapshots.delete(settled));
    return read;
  }

  async #afterSnapshots(): Promise<void> {
    await Promise.all([...this.#snapshots]);
  }

  // ---- sessions

  async openSession(ttlMs: number): Promise<string> {
    const ttlSeconds = Math.ceil(Math.max(ttlMs, MIN_TTL_MS) / 1000);
    const connecting = this.#rpc.connecting;
    try {
      // A retried grant may leave an unused lease behind; it expires by itself.
      const response = await this.#rpc.call('a lease grant', 'always', (options) =>
        this.#client.leaseClient.leaseGrant({ TTL: ttlSeconds }, options),
      );
      const id = response.ID;
      try {
        await this.#register(id);
      } catch (error) {
        // The lease of a session that never started must not linger: revoke it, or it expires by itself.
        await this.#rpc
          .call('lease revoke', 'always', (options) => this.#client.leaseClient.leaseRevoke({ ID: id }, options))
          .catch(() => undefined);
        throw error;
      }
      this.#rpc.connected();
      return id;
    } catch (error) {
      if (connecting && !connecting.aborted && error instanceof ConcordError && error.code === 'ERR_CONNECTION' && !this.#rpc.closed) {
        throw new ConcordError('ERR_CONNECTION', `could not connect to etcd at ${this.#hosts}: ${error.message}`, { cause: error });
      }
      throw error;
    }
  }

  /**
   * Puts the session key on the new lease and watches it. The same transaction proves that this user may read and write
   * the whole namespace: etcd checks the permissions of both branches, and the failure branch (never taken: with no
   * compares the success branch always runs) deletes the namespace's whole range.
   */
  async #register(id: string): Promise<void> {
    const key = this.#keys.session(BigInt(id));
    const root = this.#keys.root;
    let response: ITxnResponse;
    try {
      response = await this.#rpc.txn('the session key', 'always', {
        success: [
          { request_put: { key: b(key), value: b(this.#member), lease: id } },
          { request_range: { key: b(root), range_end: prefixEnd(root), limit: 1, keys_only: true } },
        ],
        failure: [{ request_delete_range: { key: b(root), range_end: prefixEnd(root) } }],
      });
    } catch (error) {
      if (!(error instanceof ConcordError && error.code === 'ERR_REFUSED') || !this.#rpc.isPermissionDenied(error.cause)) throw error;
      throw new ConcordError(
        'ERR_REFUSED',
        `etcd refused access to namespace "${this.#namespace}": ${this.#rpc.who} needs read and write permission on every key with ` +
          `prefix "${root}" (etcdctl role grant-permission ROLE readwrite --prefix=true '${root}')`,
        { cause: error.cause },
      );
    }
    this.#sessions.set(id, undefined);
    const gone = (): void => void this.#checkSession(id);
    const unwatch = await this.#hub.watch({
      key: b(key),
      startRevision: BigInt(response.header.revision) + 1n,
      eager: true,
      deletesOnly: true,
      reopen: true,
      events: gone,
      reset: gone,
    });
    if (this.#sessions.has(id)) this.#sessions.set(id, unwatch);
    else unwatch();
  }

  /** The session key went (or its watch lost track): is the lease gone? Then the whole session is. */
  async #checkSession(id: string): Promise<void> {
    if (!this.#sessions.has(id)) return;
    let ttl: number;
    try {
      const response = await this.#rpc.call('lease check', 'always', (options) =>
        this.#client.leaseClient.leaseTimeToLive({ ID: id }, options),
      );
      ttl = Number(response.TTL);
    } catch (error) {
      // Unreachable or already known to be gone: renewals decide.
      debug('etcd: checking session %s failed: %s', id, (error as Error).message);
      return;
    }
    if (!this.#sessions.has(id)) return;
    if (ttl < 0) {
      debug('etcd: the lease of session %s is gone', id);
      this.#endSession(id);
      this.#events.sessionExpired(id);
      return;
    }
    // Deleted by someone else while the lease lives: put it back, it is how we hear of the lease.
    const key = this.#keys.session(BigInt(id));
    await this.#rpc
      .txn('the session key', 'always', {
        compare: [absent(key)],
        success: [{ request_put: { key: b(key), value: b(this.#member), lease: id } }],
      })
      .catch((error: unknown) => {
        debug('etcd: restoring the session key of %s failed: %s', id, (error as Error).message);
      });
  }

  /** Forgets a session's watches: it was closed, or it is gone. */
  #endSession(id: string): void {
    const unwatch = this.#sessions.get(id);
    this.#sessions.delete(id);
    unwatch?.();
    this.#held.endSession(id);
  }

  async renewSession(sessionId: string): Promise<boolean> {
    const alive = await this.#rpc.call('lease keepalive', 'always', (options) => this.#keepAliveOnce(sessionId, options));
    if (alive && this.#queue.hasOrphans) this.#queue.retryOrphans();
    if (!alive) this.#endSession(sessionId);
    return alive;
  }

  /**
   * One LeaseKeepAlive exchange: the stream is opened, used once and half-closed, so etcd ends it cleanly. (Cancelling
   * it instead would look like a failure to the etcd3 package, which then tears down every client of that host,
   * watch streams included.) TTL 0 = the lease is gone.
   */
  async #keepAliveOnce(sessionId: string, options: CallOptions): Promise<boolean> {
    const stream = await this.#client.leaseClient.leaseKeepAlive(options);
    this.#streams.add(stream);
    let answered = false;
    try {
      return await new Promise<boolean>((resolve, reject) => {
        stream.on('data', (response: { TTL: string }) => {
          answered = true;
          resolve(Number(response.TTL) > 0);
        });
        stream.on('error', reject);
        stream.on('end', () => {
          reject(new Error('the keepalive stream ended without an answer'));
        });
        stream.write({ ID: sessionId });
      });
    } finally {
      this.#streams.delete(stream);
      stream.on('error', () => undefined);
      if (answered) stream.end();
      else stream.cancel();
    }
  }

  async closeSession(sessionId: string): Promise<void> {
    this.#endSession(sessionId);
    // Revoking the lease deletes its keys: orphans on it need no more attempts.
    this.#queue.forgetLease(BigInt(sessionId));
    try {
      await this.#rpc.call('lease revoke', 'always', (options) => this.#client.leaseClient.leaseRevoke({ ID: sessionId }, options));
    } catch (error) {
      // Already expired: nothing left to end.
      if (!(error instanceof ConcordError && error.code === 'ERR_SESSION_LOST')) throw error;
    }
  }

  close(): Promise<void> {
    this.destroy();
    return Promise.resolve();
  }

  destroy(): void {
    if (this.#rpc.closed) return;
    this.#rpc.close();
    this.#hub.close();
    for (const stream of this.#streams) stream.cancel();
    this.#streams.clear();
    this.#queue.clear();
    this.#held.clear();
    this.#sessions.clear();
    closeNow(this.#client);
  }

  // ---- groups

  async createGroup(group: string): Promise<void> {
    if (this.#snapshots.size > 0) await this.#afterSnapshots();
    const key = this.#keys.group(group);
    // The marker holds a nonce, so a retried create that had in fact succeeded recognises its own marker.
    const nonce = randomBytes(8).toString('hex');
    const response = await this.#rpc.txn('create group', 'always', {
      compare: [absent(key)],
      success: [{ request_put: { key: b(key), value: b(nonce) } }],
      failure: [get(key)],
    });
    if (response.succeeded || kvsOf(response, 0)[0]?.value.toString() === nonce) return;
    throw groupExists(group);
  }

  async deleteGroup(group: string): Promise<void> {
    if (this.#snapshots.size > 0) await this.#afterSnapshots();
    const key = this.#keys.group(group);
    const response = await this.#rpc.txn('delete group', 'unsent', {
      compare: [exists(key), emptyPrefix(this.#keys.members(group))],
      success: [{ request_delete_range: { key: b(key) } }],
      failure: [get(key, true)],
    });
    if (response.succeeded) return;
    if (countOf(response, 0) === 0) throw groupNotFound(group);
    throw groupNotEmpty(group);
  }

  async listGroups(): Promise<string[]> {
    const prefix = this.#keys.groups;
    const response = await this.#rpc.call('list groups', 'always', (options) =>
      this.#client.kv.range({ key: b(prefix), range_end: prefixEnd(prefix), keys_only: true }, options),
    );
    return response.kvs.map((kv) => this.#keys.groupName(kv.key.toString())).sort(compareIds);
  }

  async joinGroup(group: string, member: string, sessionId: string, capabilities: Capabilities, create: boolean): Promise<void> {
    if (this.#snapshots.size > 0) await this.#afterSnapshots();
    const groupKey = this.#keys.group(group);
    const memberKey = this.#keys.member(group, member);
    const put: IRequestOp = { request_put: { key: b(memberKey), value: b(JSON.stringify(capabilities)), lease: sessionId } };
    const response = await this.#rpc.txn('join group', 'unsent', {
      compare: create ? [absent(memberKey)] : [exists(groupKey), absent(memberKey)],
      success: create
        ? [
            put,
            { request_txn: { compare: [absent(groupKey)], success: [{ request_put: { key: b(groupKey), value: b('') } }], failure: [] } },
          ]
        : [put],
      failure: [get(groupKey, true)],
    });
    if (response.succeeded) return;
    if (!create && countOf(response, 0) === 0) throw groupNotFound(group);
    throw memberExists(group, member);
  }

  async leaveGroup(group: string, member: string): Promise<void> {
    if (this.#snapshots.size > 0) await this.#afterSnapshots();
    const groupKey = this.#keys.group(group);
    const memberKey = this.#keys.member(group, member);
    const response = await this.#rpc.txn('leave group', 'unsent', {
      compare: [exists(groupKey), exists(memberKey)],
      success: [{ request_delete_range: { key: b(memberKey) } }],
      failure: [get(groupKey, true)],
    });
    if (response.succeeded) return;
    if (countOf(response, 0) === 0) throw groupNotFound(group);
    throw memberNotJoined(group, member);
  }

  async updateMember(group: string, member: string, capabilities: Capabilities): Promise<void> {
    if (this.#snapshots.size > 0) await this.#afterSnapshots();
    const groupKey = this.#keys.group(group);
    const memberKey = this.#keys.member(group, member);
    const response = await this.#rpc.txn('update member', 'unsent', {
      compare: [exists(groupKey), exists(memberKey)],
      // ignore_lease keeps the membership on the lease it joined with.
      success: [{ request_put: { key: b(memberKey), value: b(JSON.stringify(capabilities)), ignore_lease: true } }],
      failure: [get(groupKey, true)],
    });
    if (response.succeeded) return;
    if (countOf(response, 0) === 0) throw groupNotFound(group);
    throw memberNotJoined(group, member);
  }

  async getMembers(group: string): Promise<GroupSnapshot> {
    const prefix = this.#keys.members(group);
    // One transaction: the members and the marker at the same revision.
    const response = await this.#snapshot(
      this.#rpc.txn('read members', 'always', {
        success: [{ request_range: { key: b(prefix), range_end: prefixEnd(prefix) } }, get(this.#keys.group(group), true), this.#inOrder],
      }),
    );
    const members: Member[] = kvsOf(response, 0)
      .map((kv) => ({ id: this.#keys.memberName(group, kv.key.toString()), capabilities: parseCapabilities(kv.value.toString()) }))
      .sort((x, y) => compareIds(x.id, y.id));
    return { exists: countOf(response, 1) > 0, members, revision: BigInt(response.header.revision) };
  }

  watchGroup(group: string, fromRevision: Revision, sink: WatchSink): Promise<Unsubscribe> {
    const prefix = this.#keys.members(group);
    return this.#hub.watch({
      key: b(prefix),
      rangeEnd: prefixEnd(prefix),
      startRevision: BigInt(fromRevision) + 1n,
      events: (events) => {
        for (const event of events) {
          const member = this.#keys.memberName(group, event.kv.key.toString());
          let change: DriverGroupEvent;
          if (event.type === 'Delete') change = { type: 'leave', member };
          else if (event.kv.version === '1') change = { type: 'join', member, capabilities: parseCapabilities(event.kv.value.toString()) };
          else change = { type: 'update', member, capabilities: parseCapabilities(event.kv.value.toString()) };
          sink.event(change);
        }
      },
      reset: () => {
        sink.resync();
      },
    });
  }

  // ---- locks: the contender queue (queue.ts), shared holds and permits in the same line (shared.ts), held locks
  // watched (held.ts). Exclusive requests (no mode; slot 0 of a lock) take the queue's paths as they always did.

  // Not async: one promise layer, as when this was one function (the uncontended path is two round trips).
  tryLock(kind: LockKind, name: string, sessionId: string, member: string, mode?: LockMode): Promise<bigint | undefined> {
    const attempt =
      mode?.shared === true
        ? (): Promise<bigint | undefined> => this.#shared.tryLock(kind, name, sessionId, member, mode)
        : (): Promise<bigint | undefined> => this.#queue.tryLock(kind, name, sessionId, member);
    return this.#snapshots.size > 0 ? this.#afterSnapshots().then(attempt) : attempt();
  }

  acquireLock(
    kind: LockKind,
    name: string,
    sessionId: string,
    member: string,
    signal: AbortSignal,
    queued: () => void,
    mode?: LockMode,
  ): Promise<bigint> {
    if (signal.aborted) return Promise.reject(abortedError(signal));
    const acquire =
      mode?.shared === true
        ? (): Promise<bigint> => this.#shared.acquire(kind, name, sessionId, member, signal, queued, mode)
        : (): Promise<bigint> => this.#queue.acquire(kind, name, sessionId, member, signal, queued);
    return this.#snapshots.size > 0 ? this.#afterSnapshots().then(acquire) : acquire();
  }

  unlock(kind: LockKind, name: string, sessionId: string, token: bigint, slot = 0): Promise<void> {
    const release = isShared(kind, slot)
      ? (): Promise<void> => this.#shared.unlock(kind, name, sessionId, token, slot)
      : (): Promise<void> => this.#queue.unlock(kind, name, sessionId, token);
    return this.#snapshots.size > 0 ? this.#afterSnapshots().then(release) : release();
  }

  cancelLock(kind: LockKind, name: string, sessionId: string, slot = 0): Promise<void> {
    const cancel = isShared(kind, slot)
      ? (): Promise<void> => this.#shared.cancel(kind, name, sessionId, slot)
      : (): Promise<void> => this.#queue.cancel(kind, name, sessionId);
    return this.#snapshots.size > 0 ? this.#afterSnapshots().then(cancel) : cancel();
  }

  async lockHolder(kind: LockKind, name: string): Promise<LockHolder | undefined> {
    const prefix = this.#keys.locks(kind, name);
    const response = await this.#snapshot(
      this.#rpc.txn('lock holder', 'always', { success: [lowest(prefix, 'Ascend', 1), this.#inOrder] }),
    );
    // The first in line always holds, and has the smallest token of the holders.
    const first = kvsOf(response, 0)[0];
    if (!first) return undefined;
    const holder = { member: parseContender(first.value.toString()).member, token: BigInt(first.create_revision) };
    return modeOf(kind, prefix, first.key.toString()).shared ? { ...holder, shared: true } : holder;
  }

  async lockHolders(kind: LockKind, name: string): Promise<LockHolder[]> {
    const prefix = this.#keys.locks(kind, name);
    const line = { key: b(prefix), range_end: prefixEnd(prefix), sort_target: 'Create' as const, sort_order: 'Ascend' as const };
    const response = await this.#snapshot(this.#rpc.txn('lock holders', 'always', { success: [{ request_range: line }, this.#inOrder] }));
    return holdersOf(kind, prefix, kvsOf(response, 0)).holders;
  }

  async listLocks(kind: LockKind | undefined, prefix: string): Promise<LockListing[]> {
    // Names are percent-encoded character by character, so a name prefix is a key prefix once encoded.
    const start = kind === undefined ? this.#keys.allLocks : `${this.#keys.allLocks}${kind}/${encodeURIComponent(prefix)}`;
    const response = await this.#rpc.call('list locks', 'always', (options) =>
      this.#client.kv.range({ key: b(start), range_end: prefixEnd(start), sort_target: 'Create', sort_order: 'Ascend' }, options),
    );
    // Requests in create order, one line per lock: the grant rule tells its holders from its waiters.
    const byLock = new Map<string, { kind: LockKind; name: string; requests: IKeyValue[] }>();
    for (const kv of response.kvs) {
      const [lockKind, name] = this.#keys.lockOf(kv.key.toString());
      if (!name.startsWith(prefix)) continue;
      const id = `${lockKind}/${name}`;
      const entry = byLock.get(id);
      if (entry) entry.requests.push(kv);
      else byLock.set(id, { kind: lockKind, name, requests: [kv] });
    }
    const now = Date.now();
    return [...byLock.values()].map(({ kind: lockKind, name, requests }) => {
      const { holders, limit } = holdersOf(lockKind, this.#keys.locks(lockKind, name), requests);
      const listing: LockListing = { kind: lockKind, name, holders, waiting: requests.length - holders.length };
      // The first behind the holders; its wait by the time its host wrote into its key, against this host's clock.
      const first = requests[holders.length];
      const oldestWaiter = first && waiterOf(first.value.toString(), now);
      return {
        ...listing,
        ...(lockKind === 'semaphore' ? { limit } : {}),
        ...(oldestWaiter ? { oldestWaiter } : {}),
      };
    });
  }

  watchLock(kind: LockKind, name: string, listener: () => void): Promise<Unsubscribe> {
    const prefix = this.#keys.locks(kind, name);
    // From the newest revision we know of (never later than now): no change after this call can be missed, an
    // older one merely wakes the listener once more. So there is no need to wait for etcd to confirm the watch.
    const known = this.#rpc.revision;
    return this.#hub.watch({
      key: b(prefix),
      rangeEnd: prefixEnd(prefix),
      startRevision: known > 0n ? known + 1n : undefined,
      eager: known > 0n,
      // Cancelled for compaction (also when resuming after a restart): created again, then the listener re-reads.
      reopen: true,
      events: listener,
      reset: listener,
    });
  }
}

/** Whether an unlock or a cancel is of a shared hold or a permit (slot 0 of a lock or leadership is exclusive). */
function isShared(kind: LockKind, slot: number): boolean {
  return slot !== 0 || kind === 'semaphore';
}

/** The holders among a lock's requests (its keys in create order), by the grant rule; and a semaphore's limit. */
function holdersOf(kind: LockKind, prefix: string, requests: readonly IKeyValue[]): { holders: LockHolder[]; limit: number } {
  const modes = requests.map((kv) => modeOf(kind, prefix, kv.key.toString()));
  const holders = requests.slice(0, holdsAt(modes)).map((kv, i): LockHolder => {
    const holder = { member: parseContender(kv.value.toString()).member, token: BigInt(kv.create_revision) };
    return modes[i]?.shared ? { ...holder, shared: true } : holder;
  });
  return { holders, limit: modes[0]?.limit ?? 0 };
}

/** A waiting request from its key's value; no wait when the value has no time (an older release's). */
function waiterOf(value: string, now: number): LockWaiter {
  const { member, enteredMs } = parseContender(value);
  return enteredMs === undefined ? { member } : { member, waitedMs: now - enteredMs };
}

export async function createDriver(context: DriverContext): Promise<Driver> {
  // Checked before anything is loaded or dialled: etcd would silently round a shorter lease up to its minimum.
  if (context.sessionTtlMs < MIN_TTL_MS) {
    throw new ConcordError(
      'ERR_INVALID_ARGUMENT',
      `sessionTtlMs must be at least ${MIN_TTL_MS} for etcd, got ${context.sessionTtlMs}: etcd's minimum lease TTL is 2 s`,
    );
  }
  const config = etcdConfig(context);
  const deadlines = new Deadlines(context);
  const scheme = context.url.protocol.slice(0, -1).toLowerCase();
  const loaded = await importClient<Etcd3Module & { default?: Etcd3Module }>('etcd3', scheme);
  const mod: Etcd3Module = typeof loaded.Etcd3 === 'function' ? loaded : (loaded.default ?? loaded);
  const options: IOptions = {
    hosts: config.hosts,
    credentials: config.credentials,
    auth: config.auth
      ? {
          username: config.auth.username,
          password: config.auth.password,
          // Without a deadline, authenticating with a server that accepts and never answers would wait forever.
          callOptions: () => ({ deadline: deadlines.next() }),
        }
      : undefined,
    faultHandling: hostFailover(mod, config.hosts.length),
    grpcOptions: {
      'grpc.initial_reconnect_backoff_ms': 100,
      'grpc.min_reconnect_backoff_ms': 100,
      'grpc.max_reconnect_backoff_ms': 1000,
    },
  };
  const client = new mod.Etcd3(options);
  const rpc = new Rpc(mod, client, config.hosts.length, config.auth?.username, deadlines, context.signal);
  return new EtcdDriver(context, client, rpc, config.hosts, deadlines.callTimeoutMs);
}
