/**
 * The in-process backend: what a coordination server would hold, kept in this process. Coordinators connected to the
 * same memory://NAME (and namespace) share one MemoryServer. It behaves like a real server: sessions expire on their
 * own timer, memberships and locks hang off sessions, changes are pushed asynchronously and in order.
 */
import { ConcordError } from '../../src/errors.js';
import {
  compareIds,
  groupExists,
  groupNotEmpty,
  groupNotFound,
  limitMismatch,
  memberExists,
  memberNotJoined,
  sessionGone,
} from '../../src/kit/index.js';
import {
  EXCLUSIVE,
  holdsAt,
  type DriverGroupEvent,
  type LockHolder,
  type LockKind,
  type LockListing,
  type LockMode,
  type WatchSink,
} from '../../src/driver.js';
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
  /** Every live request in arrival order; the holders are a prefix (see holdsAt). */
  readonly line: Request[];
  readonly listeners: Set<Listener>;
}

interface Request {
  readonly session: string;
  readonly member: string;
  readonly slot: number;
  readonly shared: boolean;
  readonly limit: number;
  /** When it entered the line (performance.now()). */
  readonly since: number;
  /** Set once granted. */
  token: bigint | undefined;
  /** A queued acquire's callbacks (absent for a grant made at once). */
  readonly resolve?: (token: bigint) => void;
  readonly reject?: (error: ConcordError) => void;
}

/** A request entering the line now. */
function newRequest(session: string, member: string, mode: LockMode): Request {
  return { session, member, slot: mode.slot, shared: mode.shared, limit: mode.limit, since: performance.now(), token: undefined };
}

/** The granted requests of a lock as holders, by token. */
function heldBy(lock: LockState): LockHolder[] {
  const holders: LockHolder[] = [];
  for (const request of lock.line) {
    if (request.token === undefined) continue;
    holders.push(
      request.shared ? { member: request.member, token: request.token, shared: true } : { member: request.member, token: request.token },
    );
  }
  return holders.sort((a, b) => (a.token < b.token ? -1 : 1));
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
    this.#endSession(id);
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
      lock = { fenceKey: `${this.#key}\u0000${key}`, line: [], listeners: new Set() };
      this.#locks.set(key, lock);
    }
    return [key, lock];
  }

  /** Every request of a semaphore names the limit its holders and waiters use. */
  #checkLimit(name: string, lock: LockState, mode: LockMode): void {
    const other = lock.line.find((request) => request.limit !== mode.limit);
    if (other) throw limitMismatch(name, mode.limit, other.limit);
  }

  tryLock(kind: LockKind, name: string, session: string, member: string, mode: LockMode = EXCLUSIVE): bigint | undefined {
    this.#requireSession(session);
    const [key, lock] = this.#lock(kind, name);
    this.#checkLimit(name, lock, mode);
    const line = [...lock.line, mode];
    if (holdsAt(line) < line.length) {
      this.#gc(key, lock);
      return undefined;
    }
    const request = newRequest(session, member, mode);
    lock.line.push(request);
    return this.#grant(lock, request);
  }

  /** Fair wait: a FIFO line on the server, served as holders leave. */
  acquire(
    kind: LockKind,
    name: string,
    session: string,
    member: string,
    signal: AbortSignal,
    queued: () => void,
    client: ServerClient,
    mode: LockMode = EXCLUSIVE,
  ): Promise<bigint> {
    this.#requireSession(session);
    if (signal.aborted) return Promise.reject(new ConcordError('ERR_ABORTED', 'the wait was aborted', { cause: signal.reason }));
    const [key, lock] = this.#lock(kind, name);
    this.#checkLimit(name, lock, mode);
    const line = [...lock.line, mode];
    if (holdsAt(line) === line.length) {
      const request = newRequest(session, member, mode);
      lock.line.push(request);
      return Promise.resolve(this.#grant(lock, request));
    }
    return new Promise<bigint>((resolve, reject) => {
      const onAbort = (): void => {
        // The caller gave up, but over a link that is down the server never hears of it: the wait stays queued.
        if (!client.reachable) return;
        const i = lock.line.indexOf(request);
        if (i >= 0) lock.line.splice(i, 1);
        this.#promote(key, lock);
        reject(new ConcordError('ERR_ABORTED', 'the wait was aborted', { cause: signal.reason }));
      };
      const request: Request = {
        ...newRequest(session, member, mode),
        resolve: (token) => {
          signal.removeEventListener('abort', onAbort);
          resolve(token);
        },
        reject: (error) => {
          signal.removeEventListener('abort', onAbort);
          reject(error);
        },
      };
      lock.line.push(request);
      signal.addEventListener('abort', onAbort, { once: true });
      queued();
    });
  }

  #grant(lock: LockState, request: Request): bigint {
    const token = (fences.get(lock.fenceKey) ?? 0n) + 1n;
    fences.set(lock.fenceKey, token);
    request.token = token;
    this.#notify(lock);
    return token;
  }

  /** Grants every request the rule now lets hold (waiters at the head, together when shared), then collects. */
  #promote(key: string, lock: LockState): void {
    const holding = holdsAt(lock.line);
    for (let i = 0; i < holding; i++) {
      const request = lock.line[i];
      if (request === undefined || request.token !== undefined) continue;
      const token = this.#grant(lock, request);
      request.resolve?.(token);
    }
    this.#notify(lock);
    this.#gc(key, lock);
  }

  unlock(kind: LockKind, name: string, session: string, token: bigint): void {
    const [key, lock] = this.#lock(kind, name);
    const i = lock.line.findIndex((request) => request.session === session && request.token === token);
    if (i >= 0) lock.line.splice(i, 1);
    this.#promote(key, lock);
  }

  /** Ends whatever `session` has in `slot`: its queued wait (its caller is gone) and its hold. */
  cancel(kind: LockKind, name: string, session: string, slot = 0): void {
    const key = `${kind}\u0000${name}`;
    const lock = this.#locks.get(key);
    if (!lock) return;
    for (let i = lock.line.length - 1; i >= 0; i--) {
      const request = lock.line[i];
      if (request?.session === session && request.slot === slot) {
        lock.line.splice(i, 1);
        if (request.token === undefined) request.reject?.(new ConcordError('ERR_ABORTED', 'the wait was cancelled'));
      }
    }
    this.#promote(key, lock);
  }

  /** Drops every request of a session that ended: its waiters are told, its holds free. */
  #endSession(id: string): void {
    for (const [key, lock] of this.#locks) {
      let changed = false;
      for (let i = lock.line.length - 1; i >= 0; i--) {
        const request = lock.line[i];
        if (request?.session !== id) continue;
        lock.line.splice(i, 1);
        changed = true;
        if (request.token === undefined) {
          request.reject?.(new ConcordError('ERR_SESSION_LOST', 'the session ended while waiting for the lock'));
        }
      }
      if (changed) this.#promote(key, lock);
    }
  }

  // The fence counter lives in `fences`, so a lock nobody holds, awaits or watches keeps nothing here.
  #gc(key: string, lock: LockState): void {
    if (lock.line.length === 0 && lock.listeners.size === 0) this.#locks.delete(key);
  }

  holders(kind: LockKind, name: string): LockHolder[] {
    const lock = this.#locks.get(`${kind}\u0000${name}`);
    return lock ? heldBy(lock) : [];
  }

  holder(kind: LockKind, name: string): LockHolder | undefined {
    return this.holders(kind, name)[0];
  }

  listLocks(kind: LockKind | undefined, prefix: string): LockListing[] {
    const listed: LockListing[] = [];
    for (const [key, lock] of this.#locks) {
      const split = key.indexOf('\u0000');
      const lockKind = key.slice(0, split) as LockKind;
      const name = key.slice(split + 1);
      if ((kind !== undefined && lockKind !== kind) || !name.startsWith(prefix)) continue;
      if (lock.line.length === 0) continue;
      const holders = heldBy(lock);
      const limit = lockKind === 'semaphore' ? lock.line[0]?.limit : undefined;
      const first = lock.line.find((request) => request.token === undefined);
      const oldestWaiter = first && { member: first.member, waitedMs: performance.now() - first.since };
      listed.push({
        kind: lockKind,
        name,
        holders,
        waiting: lock.line.length - holders.length,
        ...(limit ? { limit } : {}),
        ...(oldestWaiter ? { oldestWaiter } : {}),
      });
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
