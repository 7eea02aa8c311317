/**
 * etcd://h:p[,h:p...] and etcds:// — etcd v3 (3.4+) through the etcd3 package's gRPC clients (KV, Lease, Watch), with
 * the recipes written here rather than taken from the package: its Lock never waits and its Lease helper keeps
 * heartbeating after close().
 *
 *   etcds://user:password@h1:2379,h2:2379?ca=/path/ca.pem&cert=/path/client.pem&key=/path/client-key.pem
 *
 * - Session = one lease (TTL = ceil(sessionTtlMs / 1000) s; sessionTtlMs under 2000 is refused, as etcd would round
 *   it up). The core renews it with one LeaseKeepAlive exchange per heartbeat; close revokes it, and every membership
 *   and lock key hangs off it. close() ends every stream and the client: a process that only closes exits.
 * - Opening a session also puts a session key on the lease, in a transaction whose untaken branch deletes the whole
 *   namespace: etcd checks both branches' permissions, so a user who may not read and write every key of the namespace
 *   is refused at connect (ERR_REFUSED, naming the range), not at first use. The session key is watched: its delete
 *   (the lease revoked or expired) declares the session lost at once, not at the next renewal.
 * - While connecting (until the first session is open) every call gives up when the core's connect signal aborts.
 * - A held lock's key is watched for deletes while held: deleted from outside (an operator, a revoked lease), the core
 *   hears lockLost within a round trip, about when a waiter is told it may take the lock.
 * - Groups are single transactions: create (marker absent), delete (marker present and no member key: a range
 *   compare), join (group present, member absent), update and leave (both present).
 * - Watches: the snapshot is one read at revision R, the watch starts at R + 1; one gRPC stream carries every watch
 *   and, when it breaks, the watches resume where they were on a new one. A compacted revision means a resync: a
 *   group watch is re-subscribed by the core from a fresh snapshot; lock watches are re-created from the present and
 *   then call their listener, which re-reads.
 * - Locks and leadership follow etcd's concurrency package: one key per contender, the lowest create revision holds,
 *   each waiter watches only the key just ahead of it (fair, no herd), token = the key's create revision. A waiter
 *   whose own key disappears queues again at the back (putting it again fails with ERR_SESSION_LOST only when the lease
 *   is gone). Uncontended, acquire + release is two writes: a put guarded by "nobody under this prefix", and a delete
 *   guarded by the create revision.
 * - Order: a snapshot read (members, holder) that was called before a write of the same coordinator is served before
 *   it (etcd serves concurrent requests in any order, so such writes wait for it).
 * - Several hosts: a host that just failed is skipped for a second; reads and idempotent writes are retried on
 *   another host, other writes only when they surely never left this process.
 *
 * Crash detection: etcd deletes a dead session's keys when its lease expires, at most ceil(ttl) s after the last
 * renewal plus etcd's expiry check period (500 ms); the deletions reach watchers as ordinary events. A leader change
 * in the etcd cluster extends every lease, so a crash during one is noticed later.
 */
import { randomBytes } from 'node:crypto';
import type { Etcd3, ICompare, IKeyValue, IOptions, IRequestOp, ITxnRequest, ITxnResponse } from 'etcd3';
import { ConsecutiveBreaker, circuitBreaker, handleWhen, noop } from 'cockatiel';
import { importClient } from '../../src/client.js';
import { sleep, waitForWake } from '../../src/clock.js';
import { debug } from '../../src/debug.js';
import { ConcordError, abortedError } from '../../src/errors.js';
import type {
  Driver,
  DriverContext,
  DriverEvents,
  DriverGroupEvent,
  GroupSnapshot,
  LockHolder,
  LockKind,
  Revision,
  Unsubscribe,
  WatchSink,
} from '../../src/driver.js';
import type { Capabilities, Features, Member } from '../../src/types.js';
import { MIN_TTL_MS, etcdConfig, type EtcdConfig } from './config.js';
import { Keys, leaseHex, prefixEnd } from './keys.js';
import { WatchHub } from './watch.js';

type Etcd3Module = typeof import('etcd3');
type CallOptions = NonNullable<Parameters<Etcd3['kv']['range']>[1]>;
/** etcd 3.3+ compares a whole key range; the package's typings predate the field. */
type Compare = ICompare & { range_end?: Buffer };
/** How far a failed call may be retried: reads and idempotent writes always; others only when nothing was sent. */
type Retry = 'always' | 'unsent';

/** What this driver does, as the capability matrix shows it. */
export const features: Features = Object.freeze({
  scope: 'cluster',
  groups: true,
  election: true,
  fencing: true,
  watch: 'push',
  fairLocks: true,
});

const b = (key: string): Buffer => Buffer.from(key);
const exists = (key: string): Compare => ({ key: b(key), target: 'Version', result: 'Greater', version: 0 });
const absent = (key: string): Compare => ({ key: b(key), target: 'Create', result: 'Equal', create_revision: 0 });
const createdAt = (key: string, revision: bigint): Compare => ({
  key: b(key),
  target: 'Create',
  result: 'Equal',
  create_revision: revision.toString(),
});
const onLease = (key: string, lease: string): Compare => ({ key: b(key), target: 'Lease', result: 'Equal', lease });
/** True when no key starts with `prefix` (an empty range compares like a missing key: version 0). */
const emptyPrefix = (prefix: string): Compare => ({
  key: b(prefix),
  range_end: prefixEnd(prefix),
  target: 'Version',
  result: 'Equal',
  version: 0,
});
const get = (key: string, countOnly = false): IRequestOp => ({ request_range: { key: b(key), count_only: countOnly } });
const lowest = (prefix: string, order: 'Ascend' | 'Descend', limit: number, maxCreate?: bigint): IRequestOp => ({
  request_range: {
    key: b(prefix),
    range_end: prefixEnd(prefix),
    sort_target: 'Create',
    sort_order: order,
    limit,
    max_create_revision: maxCreate?.toString(),
  },
});

function kvsOf(response: ITxnResponse, index: number): IKeyValue[] {
  return response.responses[index]?.response_range.kvs ?? [];
}

function countOf(response: ITxnResponse, index: number): number {
  return Number(response.responses[index]?.response_range.count ?? '0');
}

function parseCapabilities(value: Buffer): Capabilities {
  try {
    const parsed: unknown = JSON.parse(value.toString());
    if (typeof parsed === 'object' && parsed !== null && !Array.isArray(parsed)) return parsed as Capabilities;
  } catch {
    // written by something else: show it as having none
  }
  return {};
}

function compareIds(x: string, y: string): number {
  return x < y ? -1 : x > y ? 1 : 0;
}

/** `promise`, or the signal's reason as soon as it aborts (the call itself ends when the client is closed). */
function unlessAborted<T>(promise: Promise<T>, signal: AbortSignal | undefined): Promise<T> {
  if (!signal) return promise;
  return new Promise<T>((resolve, reject) => {
    const onAbort = (): void => {
      reject(abortedError(signal, 'connecting'));
    };
    if (signal.aborted) {
      promise.catch(() => undefined);
      onAbort();
      return;
    }
    signal.addEventListener('abort', onAbort, { once: true });
    promise.then(
      (value) => {
        signal.removeEventListener('abort', onAbort);
        resolve(value);
      },
      (error: unknown) => {
        signal.removeEventListener('abort', onAbort);
        reject(error instanceof Error ? error : new Error(String(error)));
      },
    );
  });
}

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
  unwatch: Unsubscribe | undefined;
  /** Ends the watch once the name has not been held for a while. */
  idle: NodeJS.Timeout | undefined;
  ended: boolean;
}

/** How long a contender key's watch outlives its last hold. */
const KEY_WATCH_IDLE_MS = 10_000;

class EtcdDriver implements Driver {
  readonly features = features;
  readonly #mod: Etcd3Module;
  readonly #client: Etcd3;
  readonly #keys: Keys;
  readonly #ttlMs: number;
  readonly #callTimeoutMs: number;
  readonly #deadlines: Deadlines;
  readonly #attempts: number;
  readonly #hub: WatchHub;
  readonly #events: DriverEvents;
  readonly #member: string;
  readonly #namespace: string;
  readonly #hosts: string;
  /** Who we are to etcd, for refusals: never the password. */
  readonly #user: string | undefined;
  /** The core's connect signal, until the first session is open: calls give up when it aborts. */
  #connecting: AbortSignal | undefined;
  /** Locks held (contender key -> what). */
  readonly #held = new Map<string, Held>();
  /** Watches of our contender keys (held, or held a moment ago). */
  readonly #keyWatches = new Map<string, KeyWatch>();
  /** Each open session's watch of its session key. */
  readonly #sessions = new Map<string, Unsubscribe | undefined>();
  /** Streams of keepalive exchanges in flight, cancelled on close. */
  readonly #streams = new Set<{ cancel(): void }>();
  /** Contender keys whose deletion failed (key -> create revision), retried after the next successful renewal. */
  readonly #orphans = new Map<string, bigint>();
  readonly #deleting = new Map<string, Promise<void>>();
  /** The newest etcd revision seen in any answer. */
  #revision = 0n;
  #closed = false;

  constructor(context: DriverContext, mod: Etcd3Module, client: Etcd3, config: EtcdConfig, deadlines: Deadlines) {
    this.#mod = mod;
    this.#client = client;
    this.#keys = new Keys(context.namespace);
    this.#ttlMs = context.sessionTtlMs;
    this.#deadlines = deadlines;
    this.#callTimeoutMs = deadlines.callTimeoutMs;
    this.#attempts = config.hosts.length + 1;
    this.#events = context.events;
    this.#member = context.member;
    this.#namespace = context.namespace;
    this.#hosts = config.hosts.map((host) => host.replace(/^https?:\/\//, '')).join(',');
    this.#user = config.auth?.username;
    this.#connecting = context.signal;
    this.#hub = new WatchHub(() => this.#client.watchClient.watch(), this.#callTimeoutMs);
  }

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

  // ---- calls

  /**
   * One RPC with a deadline, retried on another host when that is safe; failures become ConcordErrors. While
   * connecting, it gives up as soon as the connect signal aborts.
   */
  async #rpc<T>(what: string, retry: Retry, call: (options: CallOptions, attempt: number) => Promise<T>): Promise<T> {
    const signal = this.#connecting;
    for (let attempt = 1; ; attempt++) {
      if (this.#closed) throw new ConcordError('ERR_CONNECTION', 'the etcd connection is closed');
      if (signal?.aborted) throw abortedError(signal, 'connecting');
      try {
        const response = await unlessAborted(call({ deadline: this.#deadlines.next() }, attempt), signal);
        this.#observe(response);
        return response;
      } catch (error) {
        if (error instanceof ConcordError) throw error;
        if (error instanceof this.#mod.EtcdLeaseInvalidError) {
          throw new ConcordError('ERR_SESSION_LOST', `etcd ${what}: the session's lease has expired`, { cause: error });
        }
        const refused = this.#refusal(what, error);
        if (refused) throw refused;
        const message = error instanceof Error ? error.message : String(error);
        const again = attempt < this.#attempts && !this.#closed && (retry === 'always' ? this.#transient(error) : this.#unsent(error));
        debug('etcd %s failed (attempt %d%s): %s', what, attempt, again ? ', retrying' : '', message);
        if (!again) throw new ConcordError('ERR_CONNECTION', `etcd ${what} failed: ${message}`, { cause: error });
        await sleep(25 * attempt, signal);
      }
    }
  }

  /** ERR_REFUSED for what etcd will refuse again however often it is asked: credentials and permissions. */
  #refusal(what: string, error: unknown): ConcordError | undefined {
    const mod = this.#mod;
    const message = error instanceof Error ? error.message : String(error);
    const user = this.#user === undefined ? 'anonymous access' : `user "${this.#user}"`;
    if (error instanceof mod.EtcdPermissionDeniedError) {
      return new ConcordError('ERR_REFUSED', `etcd refused ${what}: ${user} lacks the permission (${message})`, { cause: error });
    }
    if (error instanceof mod.EtcdAuthenticationFailedError) {
      return new ConcordError('ERR_REFUSED', `etcd refused the user name or password of user "${this.#user ?? ''}" (${message})`, {
        cause: error,
      });
    }
    if (/user name is empty/.test(message)) {
      return new ConcordError('ERR_REFUSED', `etcd refused ${what}: authentication is enabled and the URL names no user (${message})`, {
        cause: error,
      });
    }
    return undefined;
  }

  /** Remembers the newest revision any answer carried: a lower bound of etcd's current revision. */
  #observe(response: unknown): void {
    const header = (response as { header?: { revision?: unknown } } | undefined)?.header;
    if (typeof header?.revision === 'string') {
      const revision = BigInt(header.revision);
      if (revision > this.#revision) this.#revision = revision;
    }
  }

  #transient(error: unknown): boolean {
    const mod = this.#mod;
    return !(
      error instanceof mod.EtcdAuthenticationFailedError ||
      error instanceof mod.EtcdPermissionDeniedError ||
      error instanceof mod.GRPCInvalidArgumentError ||
      error instanceof mod.ClientClosedError
    );
  }

  /** The request never left this process (no connection to that host): trying another host cannot apply it twice. */
  #unsent(error: unknown): boolean {
    return (
      this.#transient(error) && error instanceof Error && /No connection established|ECONNREFUSED|failed to connect/i.test(error.message)
    );
  }

  #txn(
    what: string,
    retry: Retry,
    request: { compare?: Compare[]; success?: IRequestOp[]; failure?: IRequestOp[] },
  ): Promise<ITxnResponse> {
    const txn: ITxnRequest = request;
    return this.#rpc(what, retry, (options) => this.#client.kv.txn(txn, options));
  }

  // ---- sessions

  async openSession(ttlMs: number): Promise<string> {
    const ttlSeconds = Math.ceil(Math.max(ttlMs, MIN_TTL_MS) / 1000);
    const connecting = this.#connecting;
    try {
      // A retried grant may leave an unused lease behind; it expires by itself.
      const response = await this.#rpc('a lease grant', 'always', (options) =>
        this.#client.leaseClient.leaseGrant({ TTL: ttlSeconds }, options),
      );
      const id = response.ID;
      try {
        await this.#register(id);
      } catch (error) {
        // The lease of a session that never started must not linger: revoke it, or it expires by itself.
        await this.#rpc('lease revoke', 'always', (options) => this.#client.leaseClient.leaseRevoke({ ID: id }, options)).catch(
          () => undefined,
        );
        throw error;
      }
      this.#connecting = undefined;
      this.#deadlines.connectBy = undefined;
      return id;
    } catch (error) {
      if (connecting && !connecting.aborted && error instanceof ConcordError && error.code === 'ERR_CONNECTION' && !this.#closed) {
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
      response = await this.#txn('the session key', 'always', {
        success: [
          { request_put: { key: b(key), value: b(this.#member), lease: id } },
          { request_range: { key: b(root), range_end: prefixEnd(root), limit: 1, keys_only: true } },
        ],
        failure: [{ request_delete_range: { key: b(root), range_end: prefixEnd(root) } }],
      });
    } catch (error) {
      if (
        !(error instanceof ConcordError && error.code === 'ERR_REFUSED') ||
        !(error.cause instanceof this.#mod.EtcdPermissionDeniedError)
      ) {
        throw error;
      }
      const user = this.#user === undefined ? 'anonymous access' : `user "${this.#user}"`;
      throw new ConcordError(
        'ERR_REFUSED',
        `etcd refused access to namespace "${this.#namespace}": ${user} needs read and write permission on every key with ` +
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
      const response = await this.#rpc('lease check', 'always', (options) => this.#client.leaseClient.leaseTimeToLive({ ID: id }, options));
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
    await this.#txn('the session key', 'always', {
      compare: [absent(key)],
      success: [{ request_put: { key: b(key), value: b(this.#member), lease: id } }],
    }).catch((error: unknown) => {
      debug('etcd: restoring the session key of %s failed: %s', id, (error as Error).message);
    });
  }

  /** Forgets a session's watches: it was closed, or it is gone. */
  #endSession(id: string): void {
    const unwatch = this.#sessions.get(id);
    this.#sessions.delete(id);
    unwatch?.();
    for (const [key, held] of [...this.#held]) if (held.lease === id) this.#unhold(key);
    const suffix = `/${leaseHex(BigInt(id))}`;
    for (const key of [...this.#keyWatches.keys()]) if (key.endsWith(suffix)) this.#unwatchKey(key);
  }

  async renewSession(sessionId: string): Promise<boolean> {
    const alive = await this.#rpc('lease keepalive', 'always', (options) => this.#keepAliveOnce(sessionId, options));
    if (alive && this.#orphans.size > 0) this.#retryOrphans();
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
    const lease = BigInt(sessionId);
    // Revoking the lease deletes its keys: orphans on it need no more attempts.
    for (const key of [...this.#orphans.keys()]) if (key.endsWith(`/${leaseHex(lease)}`)) this.#orphans.delete(key);
    try {
      await this.#rpc('lease revoke', 'always', (options) => this.#client.leaseClient.leaseRevoke({ ID: sessionId }, options));
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
    if (this.#closed) return;
    this.#closed = true;
    this.#hub.close();
    for (const stream of this.#streams) stream.cancel();
    this.#streams.clear();
    this.#orphans.clear();
    this.#held.clear();
    for (const watch of this.#keyWatches.values()) clearTimeout(watch.idle);
    this.#keyWatches.clear();
    this.#sessions.clear();
    closeNow(this.#client);
  }

  // ---- groups

  async createGroup(group: string): Promise<void> {
    if (this.#snapshots.size > 0) await this.#afterSnapshots();
    const key = this.#keys.group(group);
    // The marker holds a nonce, so a retried create that had in fact succeeded recognises its own marker.
    const nonce = randomBytes(8).toString('hex');
    const response = await this.#txn('create group', 'always', {
      compare: [absent(key)],
      success: [{ request_put: { key: b(key), value: b(nonce) } }],
      failure: [get(key)],
    });
    if (response.succeeded || kvsOf(response, 0)[0]?.value.toString() === nonce) return;
    throw new ConcordError('ERR_GROUP_EXISTS', `group "${group}" already exists`);
  }

  async deleteGroup(group: string): Promise<void> {
    if (this.#snapshots.size > 0) await this.#afterSnapshots();
    const key = this.#keys.group(group);
    const response = await this.#txn('delete group', 'unsent', {
      compare: [exists(key), emptyPrefix(this.#keys.members(group))],
      success: [{ request_delete_range: { key: b(key) } }],
      failure: [get(key, true)],
    });
    if (response.succeeded) return;
    if (countOf(response, 0) === 0) throw notFound(group);
    throw new ConcordError('ERR_GROUP_NOT_EMPTY', `group "${group}" still has members`);
  }

  async listGroups(): Promise<string[]> {
    const prefix = this.#keys.groups;
    const response = await this.#rpc('list groups', 'always', (options) =>
      this.#client.kv.range({ key: b(prefix), range_end: prefixEnd(prefix), keys_only: true }, options),
    );
    return response.kvs.map((kv) => this.#keys.groupName(kv.key.toString())).sort(compareIds);
  }

  async joinGroup(group: string, member: string, sessionId: string, capabilities: Capabilities, create: boolean): Promise<void> {
    if (this.#snapshots.size > 0) await this.#afterSnapshots();
    const groupKey = this.#keys.group(group);
    const memberKey = this.#keys.member(group, member);
    const put: IRequestOp = { request_put: { key: b(memberKey), value: b(JSON.stringify(capabilities)), lease: sessionId } };
    const response = await this.#txn('join group', 'unsent', {
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
    if (!create && countOf(response, 0) === 0) throw notFound(group);
    throw new ConcordError('ERR_MEMBER_EXISTS', `member "${member}" is already in group "${group}"`);
  }

  async leaveGroup(group: string, member: string): Promise<void> {
    if (this.#snapshots.size > 0) await this.#afterSnapshots();
    const groupKey = this.#keys.group(group);
    const memberKey = this.#keys.member(group, member);
    const response = await this.#txn('leave group', 'unsent', {
      compare: [exists(groupKey), exists(memberKey)],
      success: [{ request_delete_range: { key: b(memberKey) } }],
      failure: [get(groupKey, true)],
    });
    if (response.succeeded) return;
    if (countOf(response, 0) === 0) throw notFound(group);
    throw notJoined(group, member);
  }

  async updateMember(group: string, member: string, capabilities: Capabilities): Promise<void> {
    if (this.#snapshots.size > 0) await this.#afterSnapshots();
    const groupKey = this.#keys.group(group);
    const memberKey = this.#keys.member(group, member);
    const response = await this.#txn('update member', 'unsent', {
      compare: [exists(groupKey), exists(memberKey)],
      // ignore_lease keeps the membership on the lease it joined with.
      success: [{ request_put: { key: b(memberKey), value: b(JSON.stringify(capabilities)), ignore_lease: true } }],
      failure: [get(groupKey, true)],
    });
    if (response.succeeded) return;
    if (countOf(response, 0) === 0) throw notFound(group);
    throw notJoined(group, member);
  }

  async getMembers(group: string): Promise<GroupSnapshot> {
    const prefix = this.#keys.members(group);
    // One transaction: the members and the marker at the same revision.
    const response = await this.#snapshot(
      this.#txn('read members', 'always', {
        success: [{ request_range: { key: b(prefix), range_end: prefixEnd(prefix) } }, get(this.#keys.group(group), true), this.#inOrder],
      }),
    );
    const members: Member[] = kvsOf(response, 0)
      .map((kv) => ({ id: this.#keys.memberName(group, kv.key.toString()), capabilities: parseCapabilities(kv.value) }))
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
          else if (event.kv.version === '1') change = { type: 'join', member, capabilities: parseCapabilities(event.kv.value) };
          else change = { type: 'update', member, capabilities: parseCapabilities(event.kv.value) };
          sink.event(change);
        }
      },
      reset: () => {
        sink.resync();
      },
    });
  }

  // ---- locks

  async tryLock(kind: LockKind, name: string, sessionId: string, member: string): Promise<bigint | undefined> {
    if (this.#snapshots.size > 0) await this.#afterSnapshots();
    const prefix = this.#keys.locks(kind, name);
    const own = this.#keys.contender(kind, name, BigInt(sessionId));
    if (this.#deleting.has(own) || this.#orphans.has(own)) await this.#adopt(own);
    // Put our key only when nobody contends: a refused attempt writes nothing. The failure branch also reads our own
    // key: one put by an earlier attempt whose answer was lost may be there, the lowest (then we hold the lock) or in line.
    const response = await this.#txn('try lock', 'always', {
      compare: [emptyPrefix(prefix)],
      success: [{ request_put: { key: b(own), value: b(member), lease: sessionId } }],
      failure: [get(own), lowest(prefix, 'Ascend', 1)],
    });
    if (response.succeeded) return this.#hold(kind, name, own, BigInt(response.header.revision), response, sessionId);
    const first = kvsOf(response, 1)[0];
    if (first?.key.toString() === own) return this.#hold(kind, name, own, BigInt(first.create_revision), response, sessionId);
    // A key of ours in line: a plain attempt leaves nothing behind.
    const mine = kvsOf(response, 0)[0];
    if (mine) {
      const error = await this.#drop(own, BigInt(mine.create_revision));
      if (error !== undefined) throw error;
    }
    return undefined;
  }

  async acquireLock(
    kind: LockKind,
    name: string,
    sessionId: string,
    member: string,
    signal: AbortSignal,
    queued: () => void,
  ): Promise<bigint> {
    if (signal.aborted) throw abortedError(signal);
    if (this.#snapshots.size > 0) await this.#afterSnapshots();
    const prefix = this.#keys.locks(kind, name);
    const own = this.#keys.contender(kind, name, BigInt(sessionId));
    if (this.#deleting.has(own) || this.#orphans.has(own)) await this.#adopt(own);
    let announced = false;
    for (;;) {
      // One round trip: enter the line (a put unless our key is there already, from an attempt whose answer was lost),
      // and read our key and the two newest keys: when ours is the newest, the second is the one just ahead of it.
      // (The core makes a plain tryLock attempt first when nobody in this process contends, so this is the queued path.)
      // With the lease gone the put fails: ERR_SESSION_LOST.
      const put: IRequestOp = { request_put: { key: b(own), value: b(member), lease: sessionId } };
      const entry = await this.#txn('lock', 'always', {
        compare: [absent(own)],
        success: [put, get(own), lowest(prefix, 'Descend', 2)],
        failure: [get(own), lowest(prefix, 'Descend', 2)],
      });
      const at = entry.succeeded ? 1 : 0;
      const revision = BigInt(entry.header.revision);
      const existing = kvsOf(entry, at)[0];
      if (!existing) throw new ConcordError('ERR_CONNECTION', 'etcd lock: the contender key vanished during the transaction');
      const mine = BigInt(existing.create_revision);
      const newest = kvsOf(entry, at + 1);
      // Known only when ours is the newest key; else (an older key of ours) the wait starts with a read.
      const known = newest[0]?.key.toString() === own;
      const ahead = known ? newest[1] : undefined;
      if (known && ahead === undefined) return this.#hold(kind, name, own, mine, entry, sessionId);
      // Given up on: leave the line at once, not after the round trip the wait may be in (the caller has already been
      // told, and what it does next must not find our key). A grant that races with this is dropped with it.
      let withdrawn: Promise<ConcordError | undefined> | undefined;
      const withdraw = (): Promise<ConcordError | undefined> => (withdrawn ??= this.#drop(own, mine));
      const onAbort = (): void => void withdraw();
      signal.addEventListener('abort', onAbort, { once: true });
      try {
        if (signal.aborted) throw abortedError(signal);
        if (!announced) {
          announced = true;
          queued();
        }
        const first = await this.#wait(prefix, own, mine, revision, ahead, signal);
        if (first !== undefined) return this.#hold(kind, name, own, mine, first, sessionId);
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
   * Waits in line: watches only the key just ahead, re-reads when it goes, holds when none is ahead. Resolves with the
   * revision at which ours was found first, or undefined when our key went meanwhile (the caller queues again; if the
   * lease went with it, that fails with ERR_SESSION_LOST).
   */
  async #wait(
    prefix: string,
    own: string,
    mine: bigint,
    revision: bigint,
    ahead: IKeyValue | undefined,
    signal: AbortSignal,
  ): Promise<bigint | undefined> {
    let wake: (() => void) | undefined;
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
        wake?.();
      },
      reset: () => {
        recheck = true;
        wake?.();
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
          const check = await this.#txn('lock check', 'always', {
            success: [get(own), lowest(prefix, 'Descend', 1, mine - 1n)],
          });
          if (kvsOf(check, 0)[0]?.create_revision !== mine.toString()) return undefined;
          ahead = kvsOf(check, 1)[0];
          revision = BigInt(check.header.revision);
          if (ahead === undefined) return revision;
        }
        const woken = new Promise<void>((resolve) => {
          wake = resolve;
        });
        // Watched from now, not from our read's revision: etcd serves a watch that starts in the past from a loop
        // that runs every 100 ms, so a release right after our read would reach us up to 100 ms late.
        let unwatch: () => void;
        let createdAt = 0n;
        try {
          unwatch = await this.#hub.watch({
            key: ahead.key,
            deletesOnly: true,
            events: () => wake?.(),
            reset: () => wake?.(),
            created: (at) => {
              createdAt = at;
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
        if (createdAt > revision) {
          // Something changed between our read and the watch: the key ahead may be gone already; look again.
          const still = await this.#txn('lock check', 'always', { success: [get(ahead.key.toString())] }).catch((error: unknown) => {
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
          if (!ownGone && !recheck) await waitForWake(woken, this.#ttlMs / 3, signal);
        } finally {
          unwatch();
        }
        ahead = undefined;
      }
    } finally {
      wake = undefined;
      unwatchOwn();
    }
  }

  async unlock(kind: LockKind, name: string, sessionId: string, token: bigint): Promise<void> {
    if (this.#snapshots.size > 0) await this.#afterSnapshots();
    const own = this.#keys.contender(kind, name, BigInt(sessionId));
    // Our own delete is not a loss: stop watching first.
    if (this.#held.get(own)?.token === token) this.#unhold(own);
    // Only the key with this create revision: a later key of ours (or anyone's) is never touched. The next local
    // contender may start before this lands (the core hands over at once), so it waits for it in #adopt.
    const error = await this.#drop(own, token);
    if (error !== undefined) throw error;
  }

  async cancelLock(kind: LockKind, name: string, sessionId: string): Promise<void> {
    if (this.#snapshots.size > 0) await this.#afterSnapshots();
    const own = this.#keys.contender(kind, name, BigInt(sessionId));
    this.#unhold(own);
    const deleting = this.#deleting.get(own);
    if (deleting) await deleting;
    // Whatever its create revision (waiting, or granted meanwhile): the core holds no lock on it. Guarded by the lease
    // so that only this session's key is ever deleted. Deleting a missing key changes nothing, so a retry is harmless.
    await this.#txn('cancel lock', 'always', { compare: [onLease(own, sessionId)], success: [{ request_delete_range: { key: b(own) } }] });
    this.#orphans.delete(own);
  }

  async lockHolder(kind: LockKind, name: string): Promise<LockHolder | undefined> {
    const response = await this.#snapshot(
      this.#txn('lock holder', 'always', { success: [lowest(this.#keys.locks(kind, name), 'Ascend', 1), this.#inOrder] }),
    );
    const first = kvsOf(response, 0)[0];
    return first ? { member: first.value.toString(), token: BigInt(first.create_revision) } : undefined;
  }

  watchLock(kind: LockKind, name: string, listener: () => void): Promise<Unsubscribe> {
    const prefix = this.#keys.locks(kind, name);
    // From the newest revision we know of (never later than now): no change after this call can be missed, an
    // older one merely wakes the listener once more. So there is no need to wait for etcd to confirm the watch.
    const known = this.#revision;
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

  // ---- held locks, watched while held

  /**
   * This session now holds kind/name with `token`, as of the revision of `at` (a response that saw our key first).
   * Its key is watched for deletes from then on, so one from outside (an operator, a revoked lease) reaches the core as
   * lockLost within a watch notification.
   */
  #hold(kind: LockKind, name: string, own: string, token: bigint, at: bigint | ITxnResponse, lease: string): bigint {
    const since = typeof at === 'bigint' ? at : BigInt(at.header.revision);
    this.#held.set(own, { kind, name, token, lease, since });
    this.#watchKey(own, since);
    return token;
  }

  /**
   * Watches our contender key for deletes from `since` on (eager: no round trip is waited for, and no delete after it
   * is missed). The watch outlives a release for a while, so acquiring the same name again sets nothing up (creating
   * and cancelling a watch per hold cost a third of an uncontended acquire + release); our own release's delete then
   * arrives with nothing held, or older than the hold, and is ignored.
   */
  #watchKey(own: string, since: bigint): void {
    const existing = this.#keyWatches.get(own);
    if (existing) {
      clearTimeout(existing.idle);
      existing.idle = undefined;
      return;
    }
    const watch: KeyWatch = { unwatch: undefined, idle: undefined, ended: false };
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
        reset: () => void this.#verifyHeld(own),
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
    this.#unhold(own);
    debug('etcd: %s "%s" (token %s) was deleted from outside', held.kind, held.name, held.token.toString());
    this.#events.lockLost(held.kind, held.name, held.token);
  }

  async #verifyHeld(own: string): Promise<void> {
    const held = this.#held.get(own);
    if (!held) return;
    try {
      const response = await this.#txn('lock check', 'always', { success: [get(own)] });
      if (kvsOf(response, 0)[0]?.create_revision !== held.token.toString()) this.#lost(own, held);
    } catch (error) {
      // Unreachable: the session's renewals decide.
      debug('etcd: checking %s failed: %s', own, (error as Error).message);
    }
  }

  /** No longer held (released, cancelled, lost): the key's watch ends unless the name is held again soon. */
  #unhold(own: string): void {
    if (!this.#held.delete(own)) return;
    const watch = this.#keyWatches.get(own);
    if (!watch) return;
    clearTimeout(watch.idle);
    watch.idle = setTimeout(() => {
      if (!this.#held.has(own)) this.#unwatchKey(own);
    }, KEY_WATCH_IDLE_MS);
    watch.idle.unref();
  }

  // ---- contender keys that must go

  /**
   * Deletes our contender key if it still has this create revision. On failure the key is kept as an orphan: deleted
   * before this key name is used again, and retried after the next successful renewal. Resolves with the error.
   */
  #drop(key: string, revision: bigint): Promise<ConcordError | undefined> {
    const deleting = this.#txn('withdraw', 'always', {
      compare: [createdAt(key, revision)],
      success: [{ request_delete_range: { key: b(key) } }],
    }).then(
      () => {
        if (this.#orphans.get(key) === revision) this.#orphans.delete(key);
        return undefined;
      },
      (error: unknown) => {
        debug('etcd: withdrawing %s failed, retrying later: %s', key, (error as Error).message);
        if (!this.#closed) this.#orphans.set(key, revision);
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
  async #adopt(key: string): Promise<void> {
    const deleting = this.#deleting.get(key);
    if (deleting) await deleting;
    const orphan = this.#orphans.get(key);
    if (orphan === undefined) return;
    const error = await this.#drop(key, orphan);
    if (error !== undefined) throw error;
  }

  #retryOrphans(): void {
    for (const [key, revision] of [...this.#orphans]) {
      if (this.#deleting.has(key)) continue;
      this.#orphans.delete(key);
      void this.#drop(key, revision);
    }
  }
}

function notFound(group: string): ConcordError {
  return new ConcordError('ERR_GROUP_NOT_FOUND', `group "${group}" does not exist`);
}

function notJoined(group: string, member: string): ConcordError {
  return new ConcordError('ERR_MEMBER_NOT_JOINED', `member "${member}" has not joined group "${group}"`);
}

/**
 * Deadlines of calls (gRPC takes them on the wall clock): a call that hangs is given up within the session's TTL and
 * never waits past 10 s; while connecting, never past connect()'s own deadline either, so no call still waiting (the
 * client library's authentication, which cannot be cancelled, included) keeps a process alive after connect() failed.
 */
class Deadlines {
  readonly callTimeoutMs: number;
  /** Wall-clock ms at which connect() gives up; undefined once connected. */
  connectBy: number | undefined;

  constructor(context: DriverContext) {
    this.callTimeoutMs = Math.min(Math.max(context.sessionTtlMs, 2000), 10_000);
    this.connectBy = Date.now() + context.connectTimeoutMs;
  }

  next(): number {
    const now = Date.now();
    const deadline = now + this.callTimeoutMs;
    // Past connect()'s deadline, a connecting call is refused by the aborted signal before it starts.
    return this.connectBy === undefined || this.connectBy <= now ? deadline : Math.min(deadline, this.connectBy);
  }
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
    // Retries are decided per call above (only when they cannot apply a write twice). The package's default circuit
    // breaker would refuse every call to a host for 5 s after three failures, far longer than a session may be
    // suspended; with several hosts, one that just failed to answer is skipped for a second instead, so the next
    // attempt goes to another.
    faultHandling: {
      host: () =>
        config.hosts.length > 1
          ? circuitBreaker(
              handleWhen((error) => error instanceof mod.GRPCUnavailableError || error instanceof mod.GRPCDeadlineExceededError),
              { halfOpenAfter: 1000, breaker: new ConsecutiveBreaker(1) },
            )
          : noop,
      global: noop,
    },
    grpcOptions: {
      'grpc.initial_reconnect_backoff_ms': 100,
      'grpc.min_reconnect_backoff_ms': 100,
      'grpc.max_reconnect_backoff_ms': 1000,
    },
  };
  return new EtcdDriver(context, mod, new mod.Etcd3(options), config, deadlines);
}
