/**
 * The in-process backend: what a coordination server would hold, kept in this process. Coordinators connected to the
 * same memory://NAME (and namespace) share one MemoryServer. It behaves like a real server: sessions expire on their
 * own timer, memberships and locks hang off sessions, changes are pushed asynchronously and in order.
 */
import { ConcordError } from '../../src/errors.js';
import { compareIds, groupExists, groupNotEmpty, groupNotFound, memberExists, memberNotJoined, sessionGone } from '../../src/kit/index.js';
import type { DriverGroupEvent, LockHolder, LockKind, LockListing, WatchSink } from '../../src/driver.js';
import type { Capabilities, Member } from '../../src/types.js';

export interface ServerClient {
  /** False while the client's link is down: nothing is delivered to it. */
  readonly reachable: boolean;
  sessionExpired(sessionId: string): void;
}

interface Session {
  readonly id: string;
  readonly ttlMs: number;
  readonly client: ServerClient;
  timer: NodeJS.Timeout;
}

interface Membership {
  capabilities: Capabilities;
  readonly session: string;
}

interface GroupState {
  readonly members: Map<string, Membership>;
  /** Recent changes, so a watch may start from a revision a little in the past. */
  readonly log: Array<{ revision: bigint; event: DriverGroupEvent }>;
}

interface LockState {
  /** Where this lock's fencing counter lives in `fences`. */
  readonly fenceKey: string;
  holder: { session: string; member: string; token: bigint } | undefined;
  readonly queue: Waiter[];
  readonly listeners: Set<Listener>;
}

interface Waiter {
  readonly session: string;
  readonly member: string;
  readonly resolve: (token: bigint) => void;
  readonly reject: (error: ConcordError) => void;
}

interface Listener {
  readonly client: ServerClient;
  readonly notify: () => void;
}

interface GroupWatcher {
  readonly client: ServerClient;
  readonly sink: WatchSink;
}

const LOG_LIMIT = 256;
const servers = new Map<string, MemoryServer>();
/**
 * Fencing counters by server and lock, kept for the life of the process: a server is dropped when its last coordinator
 * closes, but a name used again later must still hand out larger tokens (and terms) than before.
 */
const fences = new Map<string, bigint>();
let sessionCounter = 0;

export class MemoryServer {
  readonly #key: string;
  #clients = 0;
  #revision = 0n;
  readonly #sessions = new Map<string, Session>();
  readonly #groups = new Map<string, GroupState>();
  readonly #watchers = new Map<string, Set<GroupWatcher>>();
  readonly #locks = new Map<string, LockState>();

  private constructor(key: string) {
    this.#key = key;
  }

  /** The server for a name and namespace; it lives while a client or a session uses it. */
  static attach(name: string, namespace: string): MemoryServer {
    const key = `${name}\u0000${namespace}`;
    let server = servers.get(key);
    if (!server) {
      server = new MemoryServer(key);
      servers.set(key, server);
    }
    server.#clients++;
    return server;
  }

  /** Sessions alive on this server (tests check that nothing outlives a close). */
  get sessionCount(): number {
    return this.#sessions.size;
  }

  static find(name: string, namespace: string): MemoryServer | undefined {
    return servers.get(`${name}\u0000${namespace}`);
  }

  detach(): void {
    this.#clients--;
    this.#collect();
  }

  #collect(): void {
    if (this.#clients <= 0 && this.#sessions.size === 0) servers.delete(this.#key);
  }

  // ---- sessions

  openSession(ttlMs: number, client: ServerClient): string {
    const id = `m${(++sessionCounter).toString(36)}-${Date.now().toString(36)}`;
    const session: Session = { id, ttlMs, client, timer: this.#expiryTimer(id, ttlMs) };
    this.#sessions.set(id, session);
    return id;
  }

  #expiryTimer(id: string, ttlMs: number): NodeJS.Timeout {
    // Not unref'd: like a real client's socket, a live session keeps its process running (a waiter must not exit).
    return setTimeout(() => {
      this.expireSession(id);
    }, ttlMs);
  }

  renewSession(id: string): boolean {
    const session = this.#sessions.get(id);
    if (!session) return false;
    clearTimeout(session.timer);
    session.timer = this.#expiryTimer(id, session.ttlMs);
    return true;
  }

  sessionClient(id: string): ServerClient | undefined {
    return this.#sessions.get(id)?.client;
  }

  /** The session ends by expiry: its client is told first (as ZooKeeper does), then everything it held is freed. */
  expireSession(id: string): void {
    const session = this.#sessions.get(id);
    if (!session) return;
    if (session.client.reachable) session.client.sessionExpired(id);
    this.closeSession(id);
  }

  closeSession(id: string): void {
    const session = this.#sessions.get(id);
    if (!session) return;
    clearTimeout(session.timer);
    this.#sessions.delete(id);
    for (const [group, state] of this.#groups) {
      for (const [member, membership] of state.members) {
        if (membership.session === id) {
          state.members.delete(member);
          this.#publish(group, state, { type: 'leave', member });
        }
      }
    }
    for (const [key, lock] of this.#locks) {
      for (let i = lock.queue.length - 1; i >= 0; i--) {
        const waiter = lock.queue[i];
        if (waiter?.session === id) {
          lock.queue.splice(i, 1);
          waiter.reject(new ConcordError('ERR_SESSION_LOST', 'the session ended while waiting for the lock'));
        }
      }
      if (lock.holder?.session === id) this.#free(key, lock);
    }
    this.#collect();
  }

  #requireSession(id: string): void {
    if (!this.#sessions.has(id)) throw sessionGone();
  }

  // ---- groups

  createGroup(group: string): void {
    if (this.#groups.has(group)) throw groupExists(group);
    this.#groups.set(group, { members: new Map(), log: [] });
  }

  deleteGroup(group: string): void {
    const state = this.#group(group);
    if (state.members.size > 0) throw groupNotEmpty(group);
    this.#groups.delete(group);
  }

  listGroups(): string[] {
    return [...this.#groups.keys()].sort();
  }

  join(group: string, member: string, session: string, capabilities: Capabilities, create: boolean): void {
    this.#requireSession(session);
    let state = this.#groups.get(group);
    if (!state) {
      if (!create) throw groupNotFound(group);
      state = { members: new Map(), log: [] };
      this.#groups.set(group, state);
    }
    if (state.members.has(member)) {
      throw memberExists(group, member);
    }
    state.members.set(member, { capabilities, session });
    this.#publish(group, state, { type: 'join', member, capabilities });
  }

  leave(group: string, member: string): void {
    const state = this.#group(group);
    if (!state.members.delete(member)) throw memberNotJoined(group, member);
    this.#publish(group, state, { type: 'leave', member });
  }

  update(group: string, member: string, capabilities: Capabilities): void {
    const state = this.#group(group);
    const membership = state.members.get(member);
    if (!membership) throw memberNotJoined(group, member);
    membership.capabilities = capabilities;
    this.#publish(group, state, { type: 'update', member, capabilities });
  }

  snapshot(group: string): { exists: boolean; members: Member[]; revision: bigint } {
    const state = this.#groups.get(group);
    const members = state
      ? [...state.members].map(([id, m]) => ({ id, capabilities: m.capabilities })).sort((a, b) => compareIds(a.id, b.id))
      : [];
    return { exists: state !== undefined, members, revision: this.#revision };
  }

  watch(group: string, from: bigint, client: ServerClient, sink: WatchSink): () => void {
    const watcher: GroupWatcher = { client, sink };
    let set = this.#watchers.get(group);
    if (!set) {
      set = new Set();
      this.#watchers.set(group, set);
    }
    set.add(watcher);
    // Replay what happened since `from`; when the log no longer reaches back that far, ask for a resync.
    const log = this.#groups.get(group)?.log ?? [];
    const first = log[0];
    if (from < this.#revision) {
      if (first === undefined || first.revision > from + 1n) {
        queueMicrotask(() => {
          if (set.has(watcher)) sink.resync();
        });
      } else {
        for (const entry of log) if (entry.revision > from) this.#deliver(set, watcher, entry.event);
      }
    }
    return () => {
      set.delete(watcher);
      if (set.size === 0 && this.#watchers.get(group) === set) this.#watchers.delete(group);
    };
  }

  #publish(group: string, state: GroupState, event: DriverGroupEvent): void {
    const revision = ++this.#revision;
    state.log.push({ revision, event });
    if (state.log.length > LOG_LIMIT) state.log.shift();
    const set = this.#watchers.get(group);
    if (set) for (const watcher of set) this.#deliver(set, watcher, event);
  }

  #deliver(set: Set<GroupWatcher>, watcher: GroupWatcher, event: DriverGroupEvent): void {
    queueMicrotask(() => {
      if (set.has(watcher) && watcher.client.reachable) watcher.sink.event(event);
    });
  }

  #group(group: string): GroupState {
    const state = this.#groups.get(group);
    if (!state) throw groupNotFound(group);
    return state;
  }

  // ---- locks

  #lock(kind: LockKind, name: string): [string, LockState] {
    const key = `${kind}\u0000${name}`;
    let lock = this.#locks.get(key);
    if (!lock) {
      lock = { fenceKey: `${this.#key}\u0000${key}`, holder: undefined, queue: [], listeners: new Set() };
      this.#locks.set(key, lock);
    }
    return [key, lock];
  }

  tryLock(kind: LockKind, name: string, session: string, member: string): bigint | undefined {
    this.#requireSession(session);
    const [, lock] = this.#lock(kind, name);
    if (lock.holder !== undefined || lock.queue.length > 0) return undefined;
    return this.#grant(lock, session, member);
  }

  /** Fair wait: a FIFO queue on the server, served as the lock frees. */
  acquire(
    kind: LockKind,
    name: string,
    session: string,
    member: string,
    signal: AbortSignal,
    queued: () => void,
    client: ServerClient,
  ): Promise<bigint> {
    this.#requireSession(session);
    if (signal.aborted) return Promise.reject(new ConcordError('ERR_ABORTED', 'the wait was aborted', { cause: signal.reason }));
    const [key, lock] = this.#lock(kind, name);
    if (lock.holder === undefined && lock.queue.length === 0) return Promise.resolve(this.#grant(lock, session, member));
    return new Promise<bigint>((resolve, reject) => {
      const onAbort = (): void => {
        // The caller gave up, but over a link that is down the server never hears of it: the wait stays queued.
        if (!client.reachable) return;
        const i = lock.queue.indexOf(waiter);
        if (i >= 0) lock.queue.splice(i, 1);
        this.#gc(key, lock);
        reject(new ConcordError('ERR_ABORTED', 'the wait was aborted', { cause: signal.reason }));
      };
      const waiter: Waiter = {
        session,
        member,
        resolve: (token) => {
          signal.removeEventListener('abort', onAbort);
          resolve(token);
        },
        reject: (error) => {
          signal.removeEventListener('abort', onAbort);
          reject(error);
        },
      };
      lock.queue.push(waiter);
      signal.addEventListener('abort', onAbort, { once: true });
      queued();
    });
  }

  #grant(lock: LockState, session: string, member: string): bigint {
    const token = (fences.get(lock.fenceKey) ?? 0n) + 1n;
    fences.set(lock.fenceKey, token);
    lock.holder = { session, member, token };
    this.#notify(lock);
    return token;
  }

  unlock(kind: LockKind, name: string, session: string, token: bigint): void {
    const [key, lock] = this.#lock(kind, name);
    if (lock.holder?.session === session && lock.holder.token === token) this.#free(key, lock);
    else this.#gc(key, lock);
  }

  /** Ends whatever `session` has for the lock: its queued waits (their callers are gone) and the lock if it holds it. */
  cancel(kind: LockKind, name: string, session: string): void {
    const key = `${kind}\u0000${name}`;
    const lock = this.#locks.get(key);
    if (!lock) return;
    for (let i = lock.queue.length - 1; i >= 0; i--) {
      const waiter = lock.queue[i];
      if (waiter?.session === session) {
        lock.queue.splice(i, 1);
        waiter.reject(new ConcordError('ERR_ABORTED', 'the wait was cancelled'));
      }
    }
    if (lock.holder?.session === session) this.#free(key, lock);
    else this.#gc(key, lock);
  }

  #free(key: string, lock: LockState): void {
    lock.holder = undefined;
    const next = lock.queue.shift();
    if (next) next.resolve(this.#grant(lock, next.session, next.member));
    else this.#notify(lock);
    this.#gc(key, lock);
  }

  // The fence counter lives in `fences`, so a lock nobody holds, awaits or watches keeps nothing here.
  #gc(key: string, lock: LockState): void {
    if (lock.holder === undefined && lock.queue.length === 0 && lock.listeners.size === 0) {
      this.#locks.delete(key);
    }
  }

  holder(kind: LockKind, name: string): LockHolder | undefined {
    const lock = this.#locks.get(`${kind}\u0000${name}`);
    return lock?.holder ? { member: lock.holder.member, token: lock.holder.token } : undefined;
  }

  listLocks(kind: LockKind | undefined, prefix: string): LockListing[] {
    const listed: LockListing[] = [];
    for (const [key, lock] of this.#locks) {
      const split = key.indexOf('\u0000');
      const lockKind = key.slice(0, split) as LockKind;
      const name = key.slice(split + 1);
      if ((kind !== undefined && lockKind !== kind) || !name.startsWith(prefix)) continue;
      if (lock.holder === undefined && lock.queue.length === 0) continue;
      const holders = lock.holder ? [{ member: lock.holder.member, token: lock.holder.token }] : [];
      listed.push({ kind: lockKind, name, holders, waiting: lock.queue.length });
    }
    return listed;
  }

  watchLock(kind: LockKind, name: string, client: ServerClient, notify: () => void): () => void {
    const [key, lock] = this.#lock(kind, name);
    const listener: Listener = { client, notify };
    lock.listeners.add(listener);
    return () => {
      lock.listeners.delete(listener);
      this.#gc(key, lock);
    };
  }

  #notify(lock: LockState): void {
    for (const listener of lock.listeners) {
      queueMicrotask(() => {
        if (lock.listeners.has(listener) && listener.client.reachable) listener.notify();
      });
    }
  }
}
