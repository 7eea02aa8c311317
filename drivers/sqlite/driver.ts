/**
 * The SQLite driver: sessions, groups and locks as small transactions on one file (index.ts says how it behaves),
 * with the file watched for replacement (file.ts), changes noticed by notify.ts, and the tables in schema.ts.
 */
import { randomBytes } from 'node:crypto';
import { debug } from '../../src/debug.js';
import { ConcordError, abortedError } from '../../src/errors.js';
import {
  EXCLUSIVE,
  holdsAt,
  type Driver,
  type DriverContext,
  type GroupSnapshot,
  type LockHolder,
  type LockKind,
  type LockListing,
  type LockWaiter,
  type LockMode,
  type Revision,
  type Unsubscribe,
  type WatchSink,
} from '../../src/driver.js';
import {
  Wakeup,
  compareIds,
  connectionClosed,
  groupExists,
  groupNotEmpty,
  groupNotFound,
  limitMismatch,
  memberExists,
  memberNotJoined,
  parseCapabilities,
  sessionGone,
} from '../../src/kit/index.js';
import type { Capabilities, Member } from '../../src/types.js';
import { chooseEngine, isBusy, type Connection, type Engine } from './engine.js';
import { FileGuard, identify, sameFile, type FileIdentity } from './file.js';
import { BOOT_ID, PID_NS, TIME_NS, deathOf, monotonicMs, type SessionOwner } from './host.js';
import { features } from './index.js';
import { Notifier } from './notify.js';
import { databasePath } from './path.js';
import { BUSY_TIMEOUT_MS, open, seedFence, type Opened } from './schema.js';
import { prepare, type LineRow, type LockRow, type SessionRow, type Statements } from './statements.js';

/** Calls that read what a dead session may still hold reap first, at most this often. */
const REAP_GAP_MS = 2;
/** A queued acquire re-checks this often even without a notification. */
const WAIT_FALLBACK_MS = 100;
/** How long a call keeps retrying a busy file, from the event loop, before failing with ERR_CONNECTION. */
const BUSY_BUDGET_MS = 5000;
/** Pause between such retries. */
const BUSY_RETRY_MS = 5;
/**
 * How long a connection that left a replaced file waits for the old file's -wal and -shm to go from the path (a
 * removal file by file takes far less); past it, they are taken to be left over, and opened as a newcomer would.
 */
const LEFTOVER_WAIT_MS = 2000;
/** The change log keeps at least this many recent entries; a watch further behind resynchronises. */
const LOG_KEEP = 4096;
const LOG_TRIM_EVERY = 256;
/** How many names found taken a driver remembers (see tryLock). */
const CONTENDED_KEEP = 256;

export class SqliteDriver implements Driver {
  readonly features = features;
  readonly pollIntervalMs = 25;
  readonly #engine: Engine;
  #db!: Connection;
  #st!: Statements;
  /** The file this connection opened; undefined once the path named another (the next call opens that one). */
  #file: FileIdentity | undefined;
  /** That file's -wal and -shm: a reopen waits a while for these to go from the path. */
  #companions: ReadonlyMap<string, FileIdentity> = new Map();
  #detachedAt = 0;
  /** Moves with every such change of file: a queue place taken in one file means nothing in the next. */
  #generation = 0;
  #guard: FileGuard | undefined;
  readonly #path: string;
  readonly #ns: string;
  readonly #context: DriverContext;
  #state: 'open' | 'closed' | 'destroyed' = 'open';
  #linkUp = true;
  /** Sessions opened here and not ended: if one vanishes from the table, the core hears at once. */
  readonly #sessions = new Set<string>();
  readonly #notifier: Notifier;
  /** How long a call retries a busy file; below the session TTL, which bounds how long the core waits for a cancel. */
  readonly #busyBudgetMs: number;
  #lastReap = 0;
  /** Names a try last found taken (kind NUL name), oldest first. */
  readonly #contended = new Set<string>();
  /** Set inside a write transaction that made a change a watcher or waiter of another process may care about. */
  #announce = false;

  constructor(context: DriverContext, engine: Engine, opened: Opened, path: string) {
    this.#context = context;
    this.#engine = engine;
    this.#path = path;
    this.#ns = context.namespace;
    this.#notifier = new Notifier({
      path,
      namespace: this.#ns,
      open: () => this.#state === 'open',
      attached: () => this.#attached(),
      verify: () => this.#verify(),
      statements: () => this.#st,
      read: (fn) => this.#db.transaction('deferred', fn),
      reap: (minGapMs) => {
        this.#reap(minGapMs);
      },
    });
    this.#attach(opened);
    this.#busyBudgetMs = Math.max(BUSY_TIMEOUT_MS, Math.min(BUSY_BUDGET_MS, context.sessionTtlMs / 2));
  }

  // ---- plumbing

  /**
   * Throws unless the connection is usable: closed, destroyed and cut links fail like a dropped connection. A
   * connection that left a replaced file opens the file now at the path first.
   */
  #usable(): void {
    if (this.#state !== 'open') throw connectionClosed('sqlite');
    if (!this.#linkUp) throw new ConcordError('ERR_CONNECTION', 'the sqlite link is down (fault injected)');
    if (this.#file === undefined) this.#reopen();
  }

  /**
   * Opens the file now at the path, once the old file's -wal and -shm are gone from it too: during a removal still
   * under way this connection would otherwise share them with connections still in the old file, and the removal
   * would then take them from under it. Leftovers that stay (only the database file was removed) are opened after
   * LEFTOVER_WAIT_MS, as any newcomer opens them.
   */
  #reopen(): void {
    const waiting = performance.now() - this.#detachedAt < LEFTOVER_WAIT_MS;
    for (const [suffix, old] of waiting ? this.#companions : []) {
      const now = identify(`${this.#path}${suffix}`);
      if (sameFile(now, old) && now?.birth === old.birth) {
        throw new ConcordError(
          'ERR_CONNECTION',
          `sqlite ${this.#path}: the replaced file's ${suffix} is still there; waiting for it to go before opening the new file`,
        );
      }
    }
    this.#attach(open(this.#engine, this.#path));
    debug('sqlite %s reopened: the file now at the path', this.#path);
  }

  /** Whether the poller and watches may read: open, linked, and on the file the path names as far as we know. */
  #attached(): boolean {
    return this.#state === 'open' && this.#linkUp && this.#file !== undefined;
  }

  #attach(opened: Opened): void {
    this.#db = opened.db;
    this.#st = prepare(opened.db);
    this.#file = opened.file;
    this.#companions = opened.companions;
    this.#guard?.close();
    this.#guard = new FileGuard(this.#path, () => {
      this.#verify();
    });
    // The directory may be a new one too: the poller's notifications follow.
    this.#notifier.attached();
  }

  /**
   * True while the path names the file this connection opened. When it names another or none (deleted, replaced,
   * its directory gone), this connection leaves the old file at once: see #detach. One stat: cheap enough for every
   * wake-up.
   */
  #verify(): boolean {
    const file = this.#file;
    if (file === undefined || this.#state !== 'open' || !this.#linkUp) return file !== undefined;
    let now: FileIdentity | undefined;
    try {
      now = identify(this.#path);
    } catch (error) {
      // Proves nothing (EACCES...): no other process can open the path either, so nobody is in a new file meanwhile.
      debug('sqlite cannot check %s: %s', this.#path, (error as Error).message);
      return true;
    }
    if (sameFile(now, file)) return true;
    this.#detach(now === undefined ? 'the file is gone' : 'the path names another file');
    return false;
  }

  /**
   * The path no longer names the file this connection opened, so anyone connecting now works in another file: the
   * sessions of this one are lost at once (their locks may already be held there), waits and watches look again,
   * and the next call opens the file now at the path.
   */
  #detach(why: string): void {
    debug('sqlite %s: %s; its sessions are lost, the next call opens the file now there', this.#path, why);
    this.#file = undefined;
    this.#detachedAt = performance.now();
    this.#generation++;
    this.#guard?.close();
    this.#guard = undefined;
    try {
      // SQLite checks the path's inode on close too: a moved file is neither checkpointed nor its -wal and -shm
      // (which are by now the new file's) deleted.
      this.#db.close();
    } catch (error) {
      debug('closing sqlite %s failed: %s', this.#path, (error as Error).message);
    }
    for (const id of [...this.#sessions]) {
      this.#sessions.delete(id);
      queueMicrotask(() => {
        this.#context.events.sessionExpired(id);
      });
    }
    this.#notifier.detached();
  }

  /** Runs a synchronous step; SQLite failures (busy past the timeout, I/O, corruption) become ERR_CONNECTION. */
  #run<T>(fn: () => T): T {
    this.#usable();
    try {
      return fn();
    } catch (error) {
      if (error instanceof ConcordError) throw error;
      throw new ConcordError('ERR_CONNECTION', `sqlite ${this.#path}: ${(error as Error).message}`, { cause: error });
    }
  }

  /**
   * Runs a step now (synchronously: a commit is seen by this process's observers before the caller continues) and,
   * while the file is busy, again from the event loop until the budget runs out or the signal aborts.
   */
  async #call<T>(fn: () => T, signal?: AbortSignal): Promise<T> {
    const until = performance.now() + this.#busyBudgetMs;
    for (;;) {
      try {
        return this.#run(fn);
      } catch (error) {
        if (!isBusy(error) || performance.now() >= until) throw error;
        debug('sqlite %s is busy, retrying', this.#path);
      }
      await pause(BUSY_RETRY_MS);
      if (signal?.aborted) throw abortedError(signal);
    }
  }

  /**
   * A write transaction that took the write lock before reading. Our own commits do not move our data_version. Other
   * processes hear of it when it made a change they may care about (see #announce).
   */
  #write<T>(fn: () => T): T {
    this.#announce = false;
    const result = this.#db.transaction('immediate', fn);
    this.#notifier.changed(this.#announce);
    return result;
  }

  /** Inside a write transaction: the lock's version moves, which its waiters and watchers look for. */
  #bump(ns: string, kind: string, name: string): void {
    this.#st.bumpLock.run(ns, kind, name);
    this.#announce = true;
  }

  // ---- reaping

  /**
   * Ends every session whose TTL ran out, whose process is gone or whose boot is over. Reads first and takes the
   * write lock only when there is something to reap, so it is cheap to call often.
   */
  #reap(minGapMs = REAP_GAP_MS): void {
    if (performance.now() - this.#lastReap < minGapMs) return;
    this.#lastReap = performance.now();
    const now = monotonicMs();
    const rows = this.#st.sessions.all();
    const dead = rows.filter((row) => deathOf(toOwner(row), now) !== undefined).map((row) => row.id);
    this.#notifier.legacy(rows.some((row) => row.touches !== 1 && !dead.includes(row.id)));
    if (dead.length > 0) {
      this.#write(() => {
        const at = monotonicMs();
        for (const id of dead) {
          const row = this.#st.session.get(id);
          const why = row ? deathOf(toOwner(row), at) : undefined;
          if (!row || why === undefined) continue;
          debug('sqlite reaps session %s: %s', id, why);
          this.#endSession(id);
        }
      });
    }
    if (this.#sessions.size > 0) {
      const live = new Set(rows.map((row) => row.id));
      for (const id of [...this.#sessions]) {
        if (live.has(id) && !dead.includes(id)) continue;
        this.#sessions.delete(id);
        // Told off this call's stack: the core reacts by ending and replacing the session through this driver.
        queueMicrotask(() => {
          this.#context.events.sessionExpired(id);
        });
      }
    }
  }

  /** Inside a write transaction: the session and everything hanging off it go, and watchers are told. */
  #endSession(id: string): void {
    const st = this.#st;
    this.#announce = true;
    for (const m of st.sessionMembers.all(id)) this.#logChange(m.ns, m.grp, 'leave', m.member, null);
    st.deleteSessionMembers.run(id);
    st.freeSessionLocks.run(id);
    const waited = st.sessionWaitedLocks.all(id);
    st.deleteSessionWaiters.run(id);
    for (const lock of waited) this.#bump(lock.ns, lock.kind, lock.name);
    st.deleteSession.run(id);
  }

  #logChange(ns: string, group: string, type: 'join' | 'update' | 'leave', member: string, capabilities: string | null): void {
    this.#announce = true;
    const id = Number(this.#st.insertChange.run(ns, group, type, member, capabilities).lastInsertRowid);
    if (id % LOG_TRIM_EVERY === 0 && id > LOG_KEEP) {
      this.#st.trimChanges.run(id - LOG_KEEP);
      this.#st.setMeta.run(id - LOG_KEEP, 'trimmed');
    }
  }

  #requireSession(sessionId: string): void {
    const row = this.#st.session.get(sessionId);
    if (!row || deathOf(toOwner(row), monotonicMs()) !== undefined) throw sessionGone();
  }

  // ---- faults (tests)

  setLink(up: boolean): void {
    if (this.#linkUp === up) return;
    this.#linkUp = up;
    if (up) this.#notifier.relinked();
  }

  // ---- sessions

  openSession(ttlMs: number): Promise<string> {
    return this.#call(() => {
      const id = `s${randomBytes(12).toString('base64url')}`;
      this.#st.insertSession.run(id, this.#ns, Math.ceil(ttlMs), monotonicMs() + Math.ceil(ttlMs), process.pid, BOOT_ID, PID_NS, TIME_NS);
      this.#sessions.add(id);
      return id;
    });
  }

  renewSession(sessionId: string): Promise<boolean> {
    if (this.#state === 'open' && this.#linkUp) {
      // A session lives in the file it was opened in: once the path names another, it is gone (never reopened here).
      this.#verify();
      if (!this.#sessions.has(sessionId)) return Promise.resolve(false);
    }
    return this.#call(() => {
      this.#reap(0);
      const now = monotonicMs();
      return this.#st.renewSession.run(now, sessionId, now).changes === 1;
    });
  }

  closeSession(sessionId: string): Promise<void> {
    return this.#call(() => {
      this.#sessions.delete(sessionId);
      this.#write(() => {
        this.#endSession(sessionId);
      });
    });
  }

  close(): Promise<void> {
    this.#shut('closed');
    return Promise.resolve();
  }

  destroy(): void {
    this.#shut('destroyed');
  }

  #shut(state: 'closed' | 'destroyed'): void {
    if (this.#state !== 'open') return;
    this.#state = state;
    this.#guard?.close();
    this.#guard = undefined;
    // Waiting acquires wake, find the connection closed, and fail with ERR_CONNECTION.
    this.#notifier.shut();
    try {
      this.#db.close();
    } catch (error) {
      debug('closing sqlite %s failed: %s', this.#path, (error as Error).message);
    }
  }

  // ---- groups

  createGroup(group: string): Promise<void> {
    return this.#call(() => {
      if (this.#st.insertGroup.run(this.#ns, group).changes === 0) throw groupExists(group);
    });
  }

  deleteGroup(group: string): Promise<void> {
    return this.#call(() => {
      this.#reap();
      this.#write(() => {
        if (this.#st.groupExists.get(this.#ns, group) === undefined) throw groupNotFound(group);
        if ((this.#st.memberCount.get(this.#ns, group) ?? 0) > 0) throw groupNotEmpty(group);
        this.#st.deleteGroup.run(this.#ns, group);
      });
    });
  }

  listGroups(): Promise<string[]> {
    return this.#call(() => this.#st.listGroups.all(this.#ns).sort(compareIds));
  }

  joinGroup(group: string, member: string, sessionId: string, capabilities: Capabilities, create: boolean): Promise<void> {
    const json = JSON.stringify(capabilities);
    return this.#call(() => {
      this.#reap();
      this.#write(() => {
        this.#requireSession(sessionId);
        if (this.#st.groupExists.get(this.#ns, group) === undefined) {
          if (!create) throw groupNotFound(group);
          this.#st.insertGroup.run(this.#ns, group);
        }
        if (this.#st.insertMember.run(this.#ns, group, member, sessionId, json).changes === 0) throw memberExists(group, member);
        this.#logChange(this.#ns, group, 'join', member, json);
      });
    });
  }

  leaveGroup(group: string, member: string): Promise<void> {
    return this.#call(() => {
      this.#write(() => {
        if (this.#st.groupExists.get(this.#ns, group) === undefined) throw groupNotFound(group);
        if (this.#st.deleteMember.run(this.#ns, group, member).changes === 0) throw memberNotJoined(group, member);
        this.#logChange(this.#ns, group, 'leave', member, null);
      });
    });
  }

  updateMember(group: string, member: string, capabilities: Capabilities): Promise<void> {
    const json = JSON.stringify(capabilities);
    return this.#call(() => {
      this.#write(() => {
        if (this.#st.groupExists.get(this.#ns, group) === undefined) throw groupNotFound(group);
        if (this.#st.updateMember.run(json, this.#ns, group, member).changes === 0) throw memberNotJoined(group, member);
        this.#logChange(this.#ns, group, 'update', member, json);
      });
    });
  }

  getMembers(group: string): Promise<GroupSnapshot> {
    return this.#call(() => {
      this.#reap();
      // One read transaction: the members and the revision they reflect come from the same snapshot.
      return this.#db.transaction('deferred', (): GroupSnapshot => {
        const exists = this.#st.groupExists.get(this.#ns, group) !== undefined;
        const members: Member[] = this.#st.members
          .all(this.#ns, group)
          .map((row) => ({ id: row.member, capabilities: parseCapabilities(row.capabilities) }))
          .sort((a, b) => compareIds(a.id, b.id));
        return { exists, members, revision: `${String(this.#generation)}:${String(this.#st.revision.get() ?? 0)}` };
      });
    });
  }

  watchGroup(group: string, fromRevision: Revision, sink: WatchSink): Promise<Unsubscribe> {
    return this.#call(() => {
      // `generation:id`: a position in the change log of the file the snapshot was read from. From a file this
      // connection has left since, it means nothing here: the core takes a new snapshot.
      const [generation, id] = String(fromRevision).split(':').map(Number);
      const current = generation === this.#generation && Number.isSafeInteger(id);
      return this.#notifier.watchGroup(group, id ?? 0, current, sink);
    });
  }

  // ---- locks
  //
  // A name's line: its exclusive holder (concord_locks, as ever), then its rows in concord_waiters by id: exclusive
  // waiters, and shared holds and permits, which are granted in place (their token set) and stay in line while held.
  // So the holders are the line's head, holdsAt() says who may hold, and a version 1 process, which knows only
  // waiters, sees a shared hold as a waiter ahead of its own and takes nothing while one is held.

  tryLock(kind: LockKind, name: string, sessionId: string, member: string, mode?: LockMode): Promise<bigint | undefined> {
    if (mode?.shared) return this.#tryShared(kind, name, sessionId, member, mode);
    const key = `${kind}\u0000${name}`;
    return this.#call(() => {
      this.#reap();
      // A name found taken last time is looked at in a read transaction first (never blocked, and blocking no one):
      // under contention the write lock is then left to the holder's release and the head waiter's grant.
      if (this.#contended.has(key)) {
        if (this.#db.transaction('deferred', () => !this.#free(kind, name))) return undefined;
        this.#contended.delete(key);
      }
      return this.#write(() => {
        this.#requireSession(sessionId);
        const lock = this.#lockRow(kind, name);
        if (!lock || lock.session !== null || this.#st.hasWaiters.get(this.#ns, kind, name) !== undefined) {
          this.#contended.add(key);
          if (this.#contended.size > CONTENDED_KEEP) this.#contended.delete(this.#contended.values().next().value ?? key);
          return undefined;
        }
        return this.#grant(kind, name, sessionId, member, lock.fence);
      });
    });
  }

  /** Whether kind/name is free with nobody in line (a row not created yet is). */
  #free(kind: LockKind, name: string): boolean {
    const lock = this.#st.lock.get(this.#ns, kind, name);
    return (lock === undefined || lock.session === null) && this.#st.hasWaiters.get(this.#ns, kind, name) === undefined;
  }

  /** Inside a write transaction: the lock's row, created on the name's first use (read first: it mostly exists). */
  #lockRow(kind: LockKind, name: string): LockRow | undefined {
    const lock = this.#st.lock.get(this.#ns, kind, name);
    if (lock !== undefined) return lock;
    this.#st.ensureLock.run(this.#ns, kind, name, seedFence());
    return this.#st.lock.get(this.#ns, kind, name);
  }

  /** Inside a write transaction, with the lock free: the next token goes to this session. */
  #grant(kind: LockKind, name: string, sessionId: string, member: string, fence: number): bigint {
    const token = fence + 1;
    this.#st.grant.run(sessionId, member, token, token, this.#ns, kind, name);
    // Only an election watches who holds; a waiter waits for a release, which is announced.
    if (kind === 'leader') this.#announce = true;
    return BigInt(token);
  }

  #tryShared(kind: LockKind, name: string, sessionId: string, member: string, mode: LockMode): Promise<bigint | undefined> {
    return this.#call(() => {
      this.#reap();
      return this.#write(() => {
        this.#requireSession(sessionId);
        this.#st.ensureLock.run(this.#ns, kind, name, seedFence());
        const { fence, line, rows } = this.#line(kind, name, mode);
        if (holdsAt([...line, mode]) <= line.length) return undefined;
        return this.#promote(kind, name, fence, line, rows, { sessionId, member, mode });
      });
    });
  }

  /**
   * The modes of kind/name's line and its counter; refuses a semaphore limit other than the one its requests use.
   * Inside a transaction, after ensureLock.
   */
  #line(kind: LockKind, name: string, mode: LockMode): { fence: number; line: LockMode[]; rows: LineRow[] } {
    const lock = this.#st.lock.get(this.#ns, kind, name);
    const rows = this.#st.line.all(this.#ns, kind, name);
    const other = rows.find((row) => row.lim !== mode.limit);
    if (other) throw limitMismatch(name, mode.limit, other.lim);
    const line: LockMode[] = lock !== undefined && lock.session !== null ? [EXCLUSIVE] : [];
    for (const row of rows) line.push({ slot: row.slot, shared: row.shared === 1, limit: row.lim });
    return { fence: lock?.fence ?? 0, line, rows };
  }

  /**
   * Inside a write transaction: every shared request waiting in the part of the line the rule lets hold is granted,
   * in line order, and then `add`, a new request, if given; the counter moves past the tokens handed out. So the
   * shared waiters at the head are granted together by whichever of them (or a newcomer) writes first, and the others
   * find their token at their next look, without waiting for the write lock. Returns the token of `add`, else none.
   */
  #promote(
    kind: LockKind,
    name: string,
    fence: number,
    line: readonly LockMode[],
    rows: readonly LineRow[],
    add?: { readonly sessionId: string; readonly member: string; readonly mode: LockMode },
  ): bigint | undefined {
    const ahead = line.length - rows.length;
    const holding = holdsAt(add ? [...line, add.mode] : line) - ahead;
    let token = fence;
    for (const row of rows.slice(0, holding)) {
      // An exclusive waiter at the head takes the lock's row itself.
      if (row.token !== null || row.shared !== 1) continue;
      this.#st.grantRequest.run(++token, row.id);
    }
    let granted: bigint | undefined;
    if (add) {
      const { sessionId, member, mode } = add;
      this.#st.insertRequest.run(this.#ns, kind, name, sessionId, mode.slot, mode.limit, member, ++token, monotonicMs());
      granted = BigInt(token);
    }
    if (token !== fence) {
      this.#st.advanceFence.run(token, this.#ns, kind, name);
      // Requests granted here find their token at their next look.
      this.#announce = true;
    }
    return granted;
  }

  async acquireLock(
    kind: LockKind,
    name: string,
    sessionId: string,
    member: string,
    signal: AbortSignal,
    queued: () => void,
    mode?: LockMode,
  ): Promise<bigint> {
    if (signal.aborted) throw abortedError(signal);
    const shared = mode?.shared ? mode : undefined;
    // Join the queue, or take the lock at once if nobody waits. A place this session already has (in this slot) is
    // kept: only one acquisition of a name and slot runs per session, so it is this one's, left by an attempt that
    // failed after queueing.
    const entry = await this.#call(() => {
      this.#reap();
      const generation = this.#generation;
      return this.#write((): { token: bigint } | { waiter: number; generation: number } => {
        this.#requireSession(sessionId);
        if (shared) {
          this.#st.ensureLock.run(this.#ns, kind, name, seedFence());
          return this.#enterShared(kind, name, sessionId, member, shared, generation);
        }
        const lock = this.#lockRow(kind, name);
        // An empty line has no place of ours either.
        const waiting = this.#st.hasWaiters.get(this.#ns, kind, name) !== undefined;
        const kept = waiting ? this.#st.sessionWaiter.get(this.#ns, kind, name, sessionId) : undefined;
        if (kept !== undefined && kept !== null) return { waiter: kept, generation };
        if (lock && lock.session === null && !waiting) {
          return { token: this.#grant(kind, name, sessionId, member, lock.fence) };
        }
        const id = this.#st.insertWaiter.run(this.#ns, kind, name, sessionId, member, monotonicMs()).lastInsertRowid;
        return { waiter: Number(id), generation };
      });
    }, signal);
    if ('token' in entry) return entry.token;
    const { waiter, generation } = entry;
    // The place is in the file it was taken in: if the connection moved to another since, the id means nothing there.
    const moved = (): boolean => generation !== this.#generation;
    if (moved()) throw fileReplaced();
    queued();

    // Subscribed before the first look, so a change between a look and the wait after it still wakes us.
    const wakeup = new Wakeup();
    const unsubscribe = this.#notifier.watchLock(kind, name, () => {
      wakeup.wake();
    });
    try {
      for (;;) {
        let busy = false;
        try {
          if (moved()) throw fileReplaced();
          const token = this.#run(() =>
            shared ? this.#attemptShared(kind, name, sessionId, waiter, shared) : this.#attempt(kind, name, sessionId, member, waiter),
          );
          if (token !== undefined) return token;
        } catch (error) {
          // Someone else is writing: look again shortly, from the event loop.
          if (!isBusy(error)) throw error;
          busy = true;
        }
        await wakeup.wait(busy ? BUSY_RETRY_MS : WAIT_FALLBACK_MS, signal);
      }
    } catch (error) {
      // Also when the session was declared lost: the core may have given up on a session the file still holds.
      if (!moved()) this.#leaveQueue(kind, name, waiter);
      throw signal.aborted ? abortedError(signal) : error;
    } finally {
      unsubscribe();
    }
  }

  /** Inside the write transaction of acquireLock: a shared request takes its place in line, granted if it may hold. */
  #enterShared(
    kind: LockKind,
    name: string,
    sessionId: string,
    member: string,
    mode: LockMode,
    generation: number,
  ): { token: bigint } | { waiter: number; generation: number } {
    const { fence, line, rows } = this.#line(kind, name, mode);
    const kept = this.#st.slotRequest.get(this.#ns, kind, name, sessionId, mode.slot);
    if (kept) return kept.token === null ? { waiter: kept.id, generation } : { token: BigInt(kept.token) };
    if (holdsAt([...line, mode]) > line.length) {
      const token = this.#promote(kind, name, fence, line, rows, { sessionId, member, mode });
      if (token !== undefined) return { token };
    }
    const id = this.#st.insertRequest.run(
      this.#ns,
      kind,
      name,
      sessionId,
      mode.slot,
      mode.limit,
      member,
      null,
      monotonicMs(),
    ).lastInsertRowid;
    return { waiter: Number(id), generation };
  }

  /** One look at the queue: takes the lock when it is free and this waiter is at the head. */
  #attempt(kind: LockKind, name: string, sessionId: string, member: string, waiter: number): bigint | undefined {
    this.#reap();
    const position = this.#st.position.get(waiter, this.#ns, kind, name);
    if (position === undefined || position.mine === null) {
      throw new ConcordError('ERR_SESSION_LOST', 'the session ended while waiting for the lock');
    }
    if (position.session !== null || position.head !== waiter) return undefined;
    return this.#write(() => {
      this.#requireSession(sessionId);
      const lock = this.#st.lock.get(this.#ns, kind, name);
      const now = this.#st.position.get(waiter, this.#ns, kind, name);
      if (!lock || lock.session !== null || now?.head !== waiter) return undefined;
      this.#st.deleteWaiter.run(waiter);
      return this.#grant(kind, name, sessionId, member, lock.fence);
    });
  }

  /**
   * One look at the line for a shared request: its token if it was granted (by another waiter's promotion), else a
   * grant when the rule lets it hold. Looks in a read transaction first (never blocked), and takes the write lock
   * only when it may hold and nobody has granted it yet.
   */
  #attemptShared(kind: LockKind, name: string, sessionId: string, waiter: number, mode: LockMode): bigint | undefined {
    this.#reap();
    const look = (): { token: bigint | undefined; may: boolean; fence: number; line: LockMode[]; rows: LineRow[] } => {
      const { fence, line, rows } = this.#line(kind, name, mode);
      const at = rows.findIndex((row) => row.id === waiter);
      const mine = rows[at];
      if (mine === undefined) throw new ConcordError('ERR_SESSION_LOST', 'the session ended while waiting for the lock');
      const token = mine.token === null ? undefined : BigInt(mine.token);
      return { token, may: line.length - rows.length + at < holdsAt(line), fence, line, rows };
    };
    const first = this.#db.transaction('deferred', look);
    if (first.token !== undefined || !first.may) return first.token;
    return this.#write(() => {
      this.#requireSession(sessionId);
      const now = look();
      if (now.token !== undefined || !now.may) return now.token;
      this.#promote(kind, name, now.fence, now.line, now.rows);
      return look().token;
    });
  }

  /**
   * An abandoned wait leaves its place at once when it can (one short try: this runs on the abort path). If the
   * file is busy, the place stays until the core's cancelLock, which follows every abandoned acquisition, or the
   * next acquire of the name by this session, which adopts it.
   */
  #leaveQueue(kind: LockKind, name: string, waiter: number): void {
    try {
      this.#run(() => {
        this.#write(() => {
          if (this.#st.deleteWaiter.run(waiter).changes > 0) this.#bump(this.#ns, kind, name);
        });
      });
    } catch (error) {
      debug('sqlite could not leave the queue of "%s" now: %s', name, (error as Error).message);
    }
  }

  cancelLock(kind: LockKind, name: string, sessionId: string, slot = 0): Promise<void> {
    if (isShared(kind, slot)) {
      return this.#call(() => {
        if (this.#st.slotRequest.get(this.#ns, kind, name, sessionId, slot) === undefined) return;
        this.#write(() => {
          if (this.#st.deleteSlotRequests.run(this.#ns, kind, name, sessionId, slot).changes > 0) this.#bump(this.#ns, kind, name);
        });
      });
    }
    return this.#call(() => {
      // Reads first (never blocked in WAL mode): a cancel with nothing to do succeeds even while the file is busy.
      const waiting = this.#st.sessionWaiter.get(this.#ns, kind, name, sessionId);
      const holder = this.#st.lock.get(this.#ns, kind, name)?.session;
      if ((waiting === undefined || waiting === null) && holder !== sessionId) return;
      this.#write(() => {
        const left = this.#st.deleteSessionLockWaiters.run(this.#ns, kind, name, sessionId).changes;
        // Granted meanwhile: released as a release does, which tells watchers (the version moves).
        const freed = this.#st.freeSessionLock.run(this.#ns, kind, name, sessionId).changes;
        if (freed > 0) this.#announce = true;
        if (left > 0 && freed === 0) this.#bump(this.#ns, kind, name);
      });
    });
  }

  unlock(kind: LockKind, name: string, sessionId: string, token: bigint, slot = 0): Promise<void> {
    if (isShared(kind, slot)) {
      return this.#call(() => {
        this.#write(() => {
          if (this.#st.releaseShared.run(this.#ns, kind, name, sessionId, Number(token)).changes > 0) this.#bump(this.#ns, kind, name);
        });
      });
    }
    return this.#call(() => {
      // A single UPDATE is atomic: it frees the lock only if this session still holds it with this token.
      if (this.#st.unlock.run(this.#ns, kind, name, sessionId, Number(token)).changes === 0) return;
      // Announced where someone may care: an election, or a line (read after the release: a waiter that queues later
      // looks at the lock itself once queued).
      this.#notifier.changed(kind === 'leader' || this.#st.hasWaiters.get(this.#ns, kind, name) !== undefined);
    });
  }

  lockHolder(kind: LockKind, name: string): Promise<LockHolder | undefined> {
    return this.#call(() => {
      this.#reap();
      return this.#holders(kind, name)[0];
    });
  }

  lockHolders(kind: LockKind, name: string): Promise<LockHolder[]> {
    return this.#call(() => {
      this.#reap();
      return this.#holders(kind, name);
    });
  }

  /** Every holder of kind/name by token: the exclusive one, or the shared holds and permits (one read transaction). */
  #holders(kind: LockKind, name: string): LockHolder[] {
    return this.#db.transaction('deferred', (): LockHolder[] => {
      const lock = this.#st.lock.get(this.#ns, kind, name);
      const holders: LockHolder[] = [];
      if (lock && lock.session !== null && lock.member !== null && lock.token !== null) {
        holders.push({ member: lock.member, token: BigInt(lock.token) });
      }
      for (const row of this.#st.sharedHolders.all(this.#ns, kind, name)) {
        holders.push({ member: row.member, token: BigInt(row.token), shared: true });
      }
      return holders;
    });
  }

  listLocks(kind: LockKind | undefined, prefix: string): Promise<LockListing[]> {
    return this.#call(() => {
      this.#reap();
      type Listed = { kind: LockKind; name: string; holders: LockHolder[]; waiting: number; limit?: number; oldestWaiter?: LockWaiter };
      const byLock = new Map<string, Listed>();
      const entry = (row: { kind: string; name: string }): Listed | undefined => {
        if ((kind !== undefined && row.kind !== kind) || !row.name.startsWith(prefix)) return undefined;
        const id = `${row.kind}\u0000${row.name}`;
        let found = byLock.get(id);
        if (!found) byLock.set(id, (found = { kind: row.kind as LockKind, name: row.name, holders: [], waiting: 0 }));
        return found;
      };
      return this.#db.transaction('deferred', (): LockListing[] => {
        for (const row of this.#st.heldLocks.all(this.#ns)) entry(row)?.holders.push({ member: row.member, token: BigInt(row.token) });
        for (const row of this.#st.sharedHolds.all(this.#ns)) {
          entry(row)?.holders.push({ member: row.member, token: BigInt(row.token), shared: true });
        }
        for (const row of this.#st.waitingCounts.all(this.#ns)) {
          const found = entry(row);
          if (!found) continue;
          found.waiting = row.n;
          if (row.kind === 'semaphore' && row.lim > 0) found.limit = row.lim;
        }
        const now = monotonicMs();
        for (const row of this.#st.firstWaiters.all(this.#ns)) {
          const found = entry(row);
          // A waiter queued by an earlier version names no member.
          if (!found || row.member === null) continue;
          // A time taken in another time namespace is on another monotonic clock: the wait is not told.
          const ours = row.timens === null || row.timens === '' || TIME_NS === '' || row.timens === TIME_NS;
          found.oldestWaiter = row.since === null || !ours ? { member: row.member } : { member: row.member, waitedMs: now - row.since };
        }
        for (const found of byLock.values()) found.holders.sort((a, b) => (a.token < b.token ? -1 : a.token > b.token ? 1 : 0));
        return [...byLock.values()];
      });
    });
  }

  watchLock(kind: LockKind, name: string, listener: () => void): Promise<Unsubscribe> {
    return this.#call(() => this.#notifier.watchLock(kind, name, listener));
  }
}

/** Whether a hold or request of kind/name in `slot` lives in the line (shared holds, permits) or in the lock's row. */
function isShared(kind: LockKind, slot: number): boolean {
  return kind === 'semaphore' || slot > 0;
}

function fileReplaced(): ConcordError {
  return new ConcordError('ERR_SESSION_LOST', 'the database file was deleted or replaced while waiting for the lock');
}

function toOwner(row: SessionRow): SessionOwner {
  return { pid: row.pid, boot: row.boot, pidns: row.pidns, timens: row.timens, expiresAt: row.expires_at };
}

/** A pause that keeps the process alive: a call under way must finish even if nothing else holds the process open. */
function pause(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Opens the file the URL names; a file busy with another process's write is retried from the event loop. */
export async function createDriver(context: DriverContext): Promise<SqliteDriver> {
  const path = databasePath(context.url);
  const engine = await chooseEngine(context.params);
  debug('sqlite %s on %s', path, engine.name);
  const until = performance.now() + BUSY_BUDGET_MS;
  for (;;) {
    if (context.signal?.aborted) throw abortedError(context.signal, 'connecting');
    try {
      return new SqliteDriver(context, engine, open(engine, path), path);
    } catch (error) {
      if (!isBusy(error) || performance.now() >= until) throw error;
    }
    await pause(BUSY_RETRY_MS);
  }
}
