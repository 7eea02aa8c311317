/**
 * sqlite:///ABS/PATH.db — every process of one host coordinating through one SQLite file (better-sqlite3).
 *
 * - WAL mode, tiny transactions; BEGIN IMMEDIATE wherever a read decides a write. The busy timeout is short (the
 *   wait for another connection's write lock blocks this process's event loop): a call that finds the file busy
 *   retries from the event loop, for up to BUSY_BUDGET_MS (half the session TTL when shorter).
 * - Durability: synchronous=NORMAL, which loses commits only to an OS crash or power cut; the first connection of a
 *   new boot then moves every fencing counter far ahead, so no token is ever handed out twice. Without a boot id
 *   (not Linux): synchronous=FULL.
 * - Sessions expire on the host's monotonic clock (CLOCK_MONOTONIC, shared by the processes of one boot), never the
 *   wall clock. Each session row also records its pid, boot id, pid and time namespaces: a session whose process is gone
 *   (or a zombie) is reaped at once, so a killed holder's lock frees in milliseconds. A stopped (SIGSTOP) process is
 *   alive: its session ends by TTL. Any live coordinator reaps, on renewal, before reads that matter, and every
 *   REAP_EVERY_MS while it waits or watches. Reaping publishes the leaves to the change log. A session from another
 *   time namespace (another CLOCK_MONOTONIC) is not judged by its TTL, only by its process's death.
 * - Changes by other processes are noticed by reading `PRAGMA data_version` when the directory's file notification
 *   says the -wal file changed, and every POLL_MS as the fallback (features.watch is 'poll'); drivers of one process
 *   on one file tell each other directly. One poller per driver, running only while something waits or watches, and
 *   keeping the process alive meanwhile (nothing else would: there is no socket).
 * - Membership changes go to a change log written in the same transaction; its id is the revision. Locks carry a
 *   version that every change of hands bumps. Fair locks: waiters queue in a table ordered by id, tied to their
 *   session; only the head may take a free lock.
 *
 * Worst-case detection of a crashed member, for a watcher: REAP_EVERY_MS after its process is gone, else its TTL
 * + REAP_EVERY_MS (TTL + TTL/3 when nobody waits or watches: reaping then rides on renewals).
 */
import { randomBytes } from 'node:crypto';
import { existsSync, statSync, watch, type FSWatcher } from 'node:fs';
import { basename, dirname } from 'node:path';
import type BetterSqlite3 from 'better-sqlite3';
import { importClient } from '../../src/client.js';
import { waitForWake } from '../../src/clock.js';
import { debug } from '../../src/debug.js';
import { ConcordError, abortedError } from '../../src/errors.js';
import type { Driver, DriverContext, GroupSnapshot, LockHolder, LockKind, Revision, Unsubscribe, WatchSink } from '../../src/driver.js';
import type { Capabilities, Coordinator, Features, Member } from '../../src/types.js';
import { BOOT_ID, PID_NS, TIME_NS, deathOf, monotonicMs, type SessionOwner } from './host.js';
import { databasePath } from './path.js';
import { SCHEMA, migrate, prepare, type ChangeRow, type SessionRow, type Statements } from './schema.js';

export const features: Features = Object.freeze({
  scope: 'host',
  groups: true,
  election: true,
  fencing: true,
  watch: 'poll',
  fairLocks: true,
});

/** How often the poller reads PRAGMA data_version. */
const POLL_MS = 10;
/** How often a waiting or watching driver looks for dead sessions (no commit announces a killed process). */
const REAP_EVERY_MS = 50;
/** Calls that read what a dead session may still hold reap first, at most this often. */
const REAP_GAP_MS = 2;
/** A queued acquire re-checks this often even without a notification. */
const WAIT_FALLBACK_MS = 100;
/** How long one statement waits, synchronously, for another connection's write lock. */
const BUSY_TIMEOUT_MS = 20;
/** How long a call keeps retrying a busy file, from the event loop, before failing with ERR_CONNECTION. */
const BUSY_BUDGET_MS = 5000;
/** Pause between such retries. */
const BUSY_RETRY_MS = 5;
/** Far more grants than a WAL can hold unsynced (it is checkpointed, and synced, every 1,000 pages). */
const FENCE_JUMP_AFTER_REBOOT = 1_000_000_000;
/** The change log keeps at least this many recent entries; a watch further behind resynchronises. */
const LOG_KEEP = 4096;
const LOG_TRIM_EVERY = 256;

type Db = BetterSqlite3.Database;

interface GroupWatchEntry {
  readonly group: string;
  last: number;
  readonly sink: WatchSink;
  active: boolean;
}

interface LockWatchEntry {
  readonly kind: LockKind;
  readonly name: string;
  version: number | undefined;
  readonly listeners: Set<() => void>;
}

/** Session id -> the driver that opened it, so tests can reach a coordinator's link. */
const bySession = new Map<string, SqliteDriver>();
/** Database path -> the open drivers of this process on it, told of each other's commits directly. */
const peers = new Map<string, Set<SqliteDriver>>();

class SqliteDriver implements Driver {
  readonly features = features;
  readonly pollIntervalMs = 25;
  readonly #db: Db;
  readonly #st: Statements;
  readonly #path: string;
  readonly #ns: string;
  readonly #context: DriverContext;
  #state: 'open' | 'closed' | 'destroyed' = 'open';
  #linkUp = true;
  /** Sessions opened here and not ended: if one vanishes from the table, the core hears at once. */
  readonly #sessions = new Set<string>();
  readonly #groupWatches = new Set<GroupWatchEntry>();
  readonly #lockWatches = new Map<string, LockWatchEntry>();
  /** How long a call retries a busy file; below the session TTL, which bounds how long the core waits for a cancel. */
  readonly #busyBudgetMs: number;
  #poller: NodeJS.Timeout | undefined;
  #fileWatch: FSWatcher | undefined;
  #kickQueued = false;
  #dataVersion = -1;
  #lastReap = 0;
  #scanQueued = false;
  /** One transaction wrapper for every step (making one per call costs more than the step). */
  readonly #tx: BetterSqlite3.Transaction<(fn: () => unknown) => unknown>;

  constructor(context: DriverContext, db: Db, path: string) {
    this.#context = context;
    this.#db = db;
    this.#path = path;
    this.#ns = context.namespace;
    this.#st = prepare(db);
    this.#tx = db.transaction((fn: () => unknown) => fn());
    this.#busyBudgetMs = Math.max(BUSY_TIMEOUT_MS, Math.min(BUSY_BUDGET_MS, context.sessionTtlMs / 2));
    let set = peers.get(path);
    if (!set) {
      set = new Set();
      peers.set(path, set);
    }
    set.add(this);
  }

  // ---- plumbing

  /** Throws unless the connection is usable: closed, destroyed and cut links fail like a dropped connection. */
  #usable(): void {
    if (this.#state !== 'open') throw new ConcordError('ERR_CONNECTION', 'the sqlite connection is closed');
    if (!this.#linkUp) throw new ConcordError('ERR_CONNECTION', 'the sqlite link is down (fault injected)');
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

  /** A write transaction that took the write lock before reading. Our own commits do not move our data_version. */
  #write<T>(fn: () => T): T {
    const result = this.#tx.immediate(fn) as T;
    this.#changed();
    return result;
  }

  /**
   * After a commit: every driver of this process on the same file looks at once (a microtask, so an observer in this
   * process sees each change before the writer's caller can make the next one); other processes poll.
   */
  #changed(): void {
    for (const peer of peers.get(this.#path) ?? []) peer.poke();
  }

  poke(): void {
    if (this.#scanQueued || (this.#groupWatches.size === 0 && this.#lockWatches.size === 0)) return;
    this.#scanQueued = true;
    queueMicrotask(() => {
      this.#scanQueued = false;
      this.#scan();
    });
  }

  // ---- the poller: one per driver, running while anything waits or watches

  /**
   * Runs only while something waits or watches, and keeps the process alive meanwhile: a process awaiting a lock
   * held by another process has nothing else that would (no socket, unlike a networked backend).
   */
  #startPoller(): void {
    if (this.#poller || this.#state !== 'open') return;
    this.#poller = setInterval(() => {
      this.#tick();
    }, POLL_MS);
    this.#watchFile();
  }

  /**
   * A commit by another process writes the -wal file: a file notification makes the poller look at once, so a
   * hand-off between processes costs well under the poll interval. The poll stays as the fallback (notifications
   * can be dropped, and some file systems have none). The directory is watched, as the -wal file comes and goes.
   */
  #watchFile(): void {
    const names = new Set([basename(this.#path), `${basename(this.#path)}-wal`]);
    try {
      this.#fileWatch = watch(dirname(this.#path), { persistent: false }, (_event, file) => {
        if (file !== null && names.has(file)) this.#kick();
      });
      this.#fileWatch.on('error', (error) => {
        debug('sqlite file watch of %s failed, polling only: %s', this.#path, error.message);
        this.#unwatchFile();
      });
    } catch (error) {
      debug('sqlite cannot watch %s, polling only: %s', this.#path, (error as Error).message);
    }
  }

  #unwatchFile(): void {
    this.#fileWatch?.close();
    this.#fileWatch = undefined;
  }

  #kick(): void {
    if (this.#kickQueued) return;
    this.#kickQueued = true;
    setImmediate(() => {
      this.#kickQueued = false;
      if (this.#poller) this.#tick();
    });
  }

  #stopPollerIfIdle(): void {
    if (this.#poller && this.#groupWatches.size === 0 && this.#lockWatches.size === 0) {
      clearInterval(this.#poller);
      this.#poller = undefined;
      this.#unwatchFile();
    }
  }

  #tick(): void {
    if (this.#state !== 'open' || !this.#linkUp) return;
    try {
      const version = this.#st.dataVersion.get() ?? -1;
      // Recorded only once a scan went through: a failed one is tried again on the next tick, not the next commit.
      if (version !== this.#dataVersion && this.#scan()) this.#dataVersion = version;
      this.#reap(REAP_EVERY_MS);
    } catch (error) {
      debug('sqlite poll of %s failed: %s', this.#path, (error as Error).message);
    }
  }

  /** Delivers new change-log rows to group watches and tells lock listeners whose lock changed. False when it failed. */
  #scan(): boolean {
    if (this.#state !== 'open' || !this.#linkUp) return false;
    try {
      if (this.#groupWatches.size > 0) this.#deliver([...this.#groupWatches]);
      for (const entry of [...this.#lockWatches.values()]) {
        const version = this.#st.lockVersion.get(this.#ns, entry.kind, entry.name) ?? -1;
        if (version === entry.version) continue;
        entry.version = version;
        for (const listener of [...entry.listeners]) listener();
      }
      return true;
    } catch (error) {
      debug('sqlite scan of %s failed: %s', this.#path, (error as Error).message);
      return false;
    }
  }

  /**
   * Reads the trim mark and every watch's new rows in one read transaction (a trim between the two reads would lose
   * rows without a resync), then hands them out outside it (a sink may call back into the driver).
   */
  #deliver(watches: GroupWatchEntry[]): void {
    const batches = this.#tx.deferred(() => {
      const trimmed = this.#st.meta.get('trimmed') ?? 0;
      return watches.map((watch): ChangeRow[] | 'resync' => {
        if (!watch.active) return [];
        // The log no longer reaches back to this watch's position: the core takes a new snapshot.
        if (watch.last < trimmed) return 'resync';
        return this.#st.changesSince.all(this.#ns, watch.group, watch.last);
      });
    }) as Array<ChangeRow[] | 'resync'>;
    watches.forEach((watch, i) => {
      const batch = batches[i] ?? [];
      if (batch === 'resync') {
        if (!watch.active) return;
        watch.active = false;
        watch.sink.resync();
        return;
      }
      for (const row of batch) {
        // Rows another delivery (a catch-up racing a scan) already handed out are skipped.
        if (!watch.active) return;
        if (row.id <= watch.last) continue;
        watch.last = row.id;
        if (row.type === 'leave') watch.sink.event({ type: 'leave', member: row.member });
        else watch.sink.event({ type: row.type, member: row.member, capabilities: parseCapabilities(row.capabilities) });
      }
    });
  }

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
    for (const m of st.sessionMembers.all(id)) this.#logChange(m.ns, m.grp, 'leave', m.member, null);
    st.deleteSessionMembers.run(id);
    st.freeSessionLocks.run(id);
    const waited = st.sessionWaitedLocks.all(id);
    st.deleteSessionWaiters.run(id);
    for (const lock of waited) st.bumpLock.run(lock.ns, lock.kind, lock.name);
    st.deleteSession.run(id);
  }

  #logChange(ns: string, group: string, type: 'join' | 'update' | 'leave', member: string, capabilities: string | null): void {
    const id = Number(this.#st.insertChange.run(ns, group, type, member, capabilities).lastInsertRowid);
    if (id % LOG_TRIM_EVERY === 0 && id > LOG_KEEP) {
      this.#st.trimChanges.run(id - LOG_KEEP);
      this.#st.setMeta.run(id - LOG_KEEP, 'trimmed');
    }
  }

  #requireSession(sessionId: string): void {
    const row = this.#st.session.get(sessionId);
    if (!row || deathOf(toOwner(row), monotonicMs()) !== undefined) {
      throw new ConcordError('ERR_SESSION_LOST', 'the session has expired');
    }
  }

  // ---- faults (tests)

  setLink(up: boolean): void {
    if (this.#linkUp === up) return;
    this.#linkUp = up;
    if (!up) return;
    // Nothing was noticed while the link was down: every watch resynchronises and every waiter looks.
    this.#dataVersion = -1;
    for (const watch of [...this.#groupWatches]) {
      if (!watch.active) continue;
      watch.active = false;
      watch.sink.resync();
    }
    for (const entry of [...this.#lockWatches.values()]) for (const listener of [...entry.listeners]) listener();
  }

  // ---- sessions

  openSession(ttlMs: number): Promise<string> {
    return this.#call(() => {
      const id = `s${randomBytes(12).toString('base64url')}`;
      this.#st.insertSession.run(id, this.#ns, Math.ceil(ttlMs), monotonicMs() + Math.ceil(ttlMs), process.pid, BOOT_ID, PID_NS, TIME_NS);
      this.#sessions.add(id);
      bySession.set(id, this);
      return id;
    });
  }

  renewSession(sessionId: string): Promise<boolean> {
    return this.#call(() => {
      this.#reap(0);
      const now = monotonicMs();
      return this.#st.renewSession.run(now, sessionId, now).changes === 1;
    });
  }

  closeSession(sessionId: string): Promise<void> {
    return this.#call(() => {
      this.#sessions.delete(sessionId);
      bySession.delete(sessionId);
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
    for (const [id, driver] of bySession) if (driver === this) bySession.delete(id);
    const set = peers.get(this.#path);
    set?.delete(this);
    if (set?.size === 0) peers.delete(this.#path);
    clearInterval(this.#poller);
    this.#poller = undefined;
    this.#unwatchFile();
    // Waiting acquires wake, find the connection closed, and fail with ERR_CONNECTION.
    for (const entry of [...this.#lockWatches.values()]) for (const listener of [...entry.listeners]) listener();
    this.#groupWatches.clear();
    this.#lockWatches.clear();
    try {
      this.#db.close();
    } catch (error) {
      debug('closing sqlite %s failed: %s', this.#path, (error as Error).message);
    }
  }

  // ---- groups

  createGroup(group: string): Promise<void> {
    return this.#call(() => {
      if (this.#st.insertGroup.run(this.#ns, group).changes === 0) {
        throw new ConcordError('ERR_GROUP_EXISTS', `group "${group}" already exists`);
      }
    });
  }

  deleteGroup(group: string): Promise<void> {
    return this.#call(() => {
      this.#reap();
      this.#write(() => {
        if (this.#st.groupExists.get(this.#ns, group) === undefined) throw notFound(group);
        if ((this.#st.memberCount.get(this.#ns, group) ?? 0) > 0) {
          throw new ConcordError('ERR_GROUP_NOT_EMPTY', `group "${group}" still has members`);
        }
        this.#st.deleteGroup.run(this.#ns, group);
      });
    });
  }

  listGroups(): Promise<string[]> {
    return this.#call(() => this.#st.listGroups.all(this.#ns).sort(compare));
  }

  joinGroup(group: string, member: string, sessionId: string, capabilities: Capabilities, create: boolean): Promise<void> {
    const json = JSON.stringify(capabilities);
    return this.#call(() => {
      this.#reap();
      this.#write(() => {
        this.#requireSession(sessionId);
        if (this.#st.groupExists.get(this.#ns, group) === undefined) {
          if (!create) throw notFound(group);
          this.#st.insertGroup.run(this.#ns, group);
        }
        if (this.#st.insertMember.run(this.#ns, group, member, sessionId, json).changes === 0) {
          throw new ConcordError('ERR_MEMBER_EXISTS', `member "${member}" is already in group "${group}"`);
        }
        this.#logChange(this.#ns, group, 'join', member, json);
      });
    });
  }

  leaveGroup(group: string, member: string): Promise<void> {
    return this.#call(() => {
      this.#write(() => {
        if (this.#st.groupExists.get(this.#ns, group) === undefined) throw notFound(group);
        if (this.#st.deleteMember.run(this.#ns, group, member).changes === 0) throw notJoined(group, member);
        this.#logChange(this.#ns, group, 'leave', member, null);
      });
    });
  }

  updateMember(group: string, member: string, capabilities: Capabilities): Promise<void> {
    const json = JSON.stringify(capabilities);
    return this.#call(() => {
      this.#write(() => {
        if (this.#st.groupExists.get(this.#ns, group) === undefined) throw notFound(group);
        if (this.#st.updateMember.run(json, this.#ns, group, member).changes === 0) throw notJoined(group, member);
        this.#logChange(this.#ns, group, 'update', member, json);
      });
    });
  }

  getMembers(group: string): Promise<GroupSnapshot> {
    return this.#call(() => {
      this.#reap();
      // One read transaction: the members and the revision they reflect come from the same snapshot.
      return this.#tx.deferred((): GroupSnapshot => {
        const exists = this.#st.groupExists.get(this.#ns, group) !== undefined;
        const members: Member[] = this.#st.members
          .all(this.#ns, group)
          .map((row) => ({ id: row.member, capabilities: parseCapabilities(row.capabilities) }))
          .sort((a, b) => compare(a.id, b.id));
        return { exists, members, revision: BigInt(this.#st.revision.get() ?? 0) };
      }) as GroupSnapshot;
    });
  }

  watchGroup(group: string, fromRevision: Revision, sink: WatchSink): Promise<Unsubscribe> {
    return this.#call(() => {
      const watch: GroupWatchEntry = { group, last: Number(fromRevision), sink, active: true };
      this.#groupWatches.add(watch);
      this.#startPoller();
      // Catch up on what happened since the snapshot, off the caller's stack.
      setImmediate(() => {
        if (!watch.active || this.#state !== 'open' || !this.#linkUp) return;
        try {
          this.#deliver([watch]);
        } catch (error) {
          debug('sqlite catch-up of group "%s" failed: %s', group, (error as Error).message);
        }
      });
      return () => {
        watch.active = false;
        this.#groupWatches.delete(watch);
        this.#stopPollerIfIdle();
      };
    });
  }

  // ---- locks

  tryLock(kind: LockKind, name: string, sessionId: string, member: string): Promise<bigint | undefined> {
    return this.#call(() => {
      this.#reap();
      return this.#write(() => {
        this.#requireSession(sessionId);
        this.#st.ensureLock.run(this.#ns, kind, name);
        const lock = this.#st.lock.get(this.#ns, kind, name);
        if (!lock || lock.session !== null || this.#st.hasWaiters.get(this.#ns, kind, name) !== undefined) return undefined;
        return this.#grant(kind, name, sessionId, member, lock.fence);
      });
    });
  }

  /** Inside a write transaction, with the lock free: the next token goes to this session. */
  #grant(kind: LockKind, name: string, sessionId: string, member: string, fence: number): bigint {
    const token = fence + 1;
    this.#st.grant.run(sessionId, member, token, token, this.#ns, kind, name);
    return BigInt(token);
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
    // Join the queue, or take the lock at once if nobody waits. A place this session already has is kept: only one
    // acquisition of a name runs per session, so it is this one's, left by an attempt that failed after queueing.
    const entry = await this.#call(() => {
      this.#reap();
      return this.#write((): { token: bigint } | { waiter: number } => {
        this.#requireSession(sessionId);
        this.#st.ensureLock.run(this.#ns, kind, name);
        const kept = this.#st.sessionWaiter.get(this.#ns, kind, name, sessionId);
        if (kept !== undefined && kept !== null) return { waiter: kept };
        const lock = this.#st.lock.get(this.#ns, kind, name);
        if (lock && lock.session === null && this.#st.hasWaiters.get(this.#ns, kind, name) === undefined) {
          return { token: this.#grant(kind, name, sessionId, member, lock.fence) };
        }
        return { waiter: Number(this.#st.insertWaiter.run(this.#ns, kind, name, sessionId).lastInsertRowid) };
      });
    }, signal);
    if ('token' in entry) return entry.token;
    const waiter = entry.waiter;
    queued();

    let wake: () => void = () => undefined;
    const unsubscribe = this.#watchLockNow(kind, name, () => {
      wake();
    });
    try {
      for (;;) {
        // Armed before the look, so a change between the look and the wait still wakes us.
        const woken = new Promise<void>((resolve) => {
          wake = resolve;
        });
        let busy = false;
        try {
          const token = this.#run(() => this.#attempt(kind, name, sessionId, member, waiter));
          if (token !== undefined) return token;
        } catch (error) {
          // Someone else is writing: look again shortly, from the event loop.
          if (!isBusy(error)) throw error;
          busy = true;
        }
        await waitForWake(woken, busy ? BUSY_RETRY_MS : WAIT_FALLBACK_MS, signal);
      }
    } catch (error) {
      // Also when the session was declared lost: the core may have given up on a session the file still holds.
      this.#leaveQueue(kind, name, waiter);
      throw signal.aborted ? abortedError(signal) : error;
    } finally {
      unsubscribe();
    }
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
   * An abandoned wait leaves its place at once when it can (one short try: this runs on the abort path). If the
   * file is busy, the place stays until the core's cancelLock, which follows every abandoned acquisition, or the
   * next acquire of the name by this session, which adopts it.
   */
  #leaveQueue(kind: LockKind, name: string, waiter: number): void {
    try {
      this.#run(() => {
        this.#write(() => {
          if (this.#st.deleteWaiter.run(waiter).changes > 0) this.#st.bumpLock.run(this.#ns, kind, name);
        });
      });
    } catch (error) {
      debug('sqlite could not leave the queue of "%s" now: %s', name, (error as Error).message);
    }
  }

  cancelLock(kind: LockKind, name: string, sessionId: string): Promise<void> {
    return this.#call(() => {
      // Reads first (never blocked in WAL mode): a cancel with nothing to do succeeds even while the file is busy.
      const waiting = this.#st.sessionWaiter.get(this.#ns, kind, name, sessionId);
      const holder = this.#st.lock.get(this.#ns, kind, name)?.session;
      if ((waiting === undefined || waiting === null) && holder !== sessionId) return;
      this.#write(() => {
        const left = this.#st.deleteSessionLockWaiters.run(this.#ns, kind, name, sessionId).changes;
        // Granted meanwhile: released as a release does, which tells watchers (the version moves).
        const freed = this.#st.freeSessionLock.run(this.#ns, kind, name, sessionId).changes;
        if (left > 0 && freed === 0) this.#st.bumpLock.run(this.#ns, kind, name);
      });
    });
  }

  unlock(kind: LockKind, name: string, sessionId: string, token: bigint): Promise<void> {
    return this.#call(() => {
      // A single UPDATE is atomic: it frees the lock only if this session still holds it with this token.
      if (this.#st.unlock.run(this.#ns, kind, name, sessionId, Number(token)).changes > 0) this.#changed();
    });
  }

  lockHolder(kind: LockKind, name: string): Promise<LockHolder | undefined> {
    return this.#call(() => {
      this.#reap();
      const lock = this.#st.lock.get(this.#ns, kind, name);
      if (!lock || lock.session === null || lock.member === null || lock.token === null) return undefined;
      return { member: lock.member, token: BigInt(lock.token) };
    });
  }

  watchLock(kind: LockKind, name: string, listener: () => void): Promise<Unsubscribe> {
    return this.#call(() => this.#watchLockNow(kind, name, listener));
  }

  #watchLockNow(kind: LockKind, name: string, listener: () => void): Unsubscribe {
    const key = `${kind}\u0000${name}`;
    let entry = this.#lockWatches.get(key);
    if (!entry) {
      entry = { kind, name, version: this.#st.lockVersion.get(this.#ns, kind, name) ?? -1, listeners: new Set() };
      this.#lockWatches.set(key, entry);
    }
    const own = (): void => {
      listener();
    };
    entry.listeners.add(own);
    this.#startPoller();
    return () => {
      const current = this.#lockWatches.get(key);
      if (!current) return;
      current.listeners.delete(own);
      if (current.listeners.size === 0) this.#lockWatches.delete(key);
      this.#stopPollerIfIdle();
    };
  }
}

function toOwner(row: SessionRow): SessionOwner {
  return { pid: row.pid, boot: row.boot, pidns: row.pidns, timens: row.timens, expiresAt: row.expires_at };
}

/** SQLITE_BUSY (and its extended codes) or SQLITE_LOCKED: another connection holds what this step needs; retry. */
function isBusy(error: unknown): boolean {
  const cause = error instanceof ConcordError ? error.cause : error;
  const code = typeof cause === 'object' && cause !== null && 'code' in cause ? cause.code : undefined;
  return typeof code === 'string' && (code.startsWith('SQLITE_BUSY') || code.startsWith('SQLITE_LOCKED'));
}

/** A pause that keeps the process alive: a call under way must finish even if nothing else holds the process open. */
function pause(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function parseCapabilities(json: string | null): Capabilities {
  return json === null ? {} : (JSON.parse(json) as Capabilities);
}

function notFound(group: string): ConcordError {
  return new ConcordError('ERR_GROUP_NOT_FOUND', `group "${group}" does not exist`);
}

function notJoined(group: string, member: string): ConcordError {
  return new ConcordError('ERR_MEMBER_NOT_JOINED', `member "${member}" has not joined group "${group}"`);
}

function compare(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** Opens the file, checks that it is a usable database, and creates the tables. Never leaves a handle open on failure. */
function open(Database: typeof BetterSqlite3, path: string): Db {
  const dir = dirname(path);
  if (!existsSync(dir)) {
    throw new ConcordError('ERR_CONNECTION', `cannot open sqlite database ${path}: the directory ${dir} does not exist`);
  }
  if (existsSync(path) && statSync(path).isDirectory()) {
    throw new ConcordError('ERR_INVALID_URL', `cannot open sqlite database ${path}: it is a directory`);
  }
  let db: Db | undefined;
  try {
    db = new Database(path, { timeout: BUSY_TIMEOUT_MS });
    const mode = db.pragma('journal_mode = WAL', { simple: true });
    if (typeof mode !== 'string' || mode.toLowerCase() !== 'wal') throw new Error(`cannot switch to WAL mode (got ${String(mode)})`);
    // NORMAL in WAL mode loses commits only to an OS crash or power cut, and then the boot id changes: the first
    // connection of a new boot moves every fencing counter far ahead, past any token a lost commit handed out.
    // Without a boot id, FULL: every commit is on disk before it counts.
    db.pragma(BOOT_ID === '' ? 'synchronous = FULL' : 'synchronous = NORMAL');
    const connection = db;
    db.transaction(() => {
      connection.exec(SCHEMA);
      migrate(connection);
      const boot: unknown = connection.prepare("SELECT value FROM concord_meta WHERE key = 'boot'").pluck().get();
      if (BOOT_ID !== '' && boot !== BOOT_ID) {
        if (boot !== undefined) connection.prepare('UPDATE concord_locks SET fence = fence + ?').run(FENCE_JUMP_AFTER_REBOOT);
        connection.prepare("INSERT OR REPLACE INTO concord_meta (key, value) VALUES ('boot', ?)").run(BOOT_ID);
      }
    }).immediate();
    return db;
  } catch (cause) {
    try {
      if (db?.inTransaction) db.exec('ROLLBACK');
    } catch {
      // The connection is closed below either way.
    }
    db?.close();
    throw new ConcordError('ERR_CONNECTION', `cannot open sqlite database ${path}: ${(cause as Error).message}`, { cause });
  }
}

export async function createDriver(context: DriverContext): Promise<Driver> {
  const path = databasePath(context.url);
  const module = await importClient<{ default: typeof BetterSqlite3 }>('better-sqlite3', 'sqlite');
  // A busy file (another process writing) is retried from the event loop, as every call is.
  const until = performance.now() + BUSY_BUDGET_MS;
  for (;;) {
    if (context.signal?.aborted) throw abortedError(context.signal, 'connecting');
    try {
      return new SqliteDriver(context, open(module.default, path), path);
    } catch (error) {
      if (!isBusy(error) || performance.now() >= until) throw error;
    }
    await pause(BUSY_RETRY_MS);
  }
}

export interface SqliteFaults {
  /** Cut the coordinator's link: its calls fail with ERR_CONNECTION and it notices nothing, while its session ages. */
  readonly disconnect: () => void;
  /** Restore the link; watches resynchronise and waiters look again. */
  readonly reconnect: () => void;
}

/** Fault controls for a coordinator connected with sqlite://. For tests. */
export function sqliteFaults(coordinator: Coordinator): SqliteFaults {
  const driver = bySession.get(coordinator.session.id);
  if (!driver) throw new ConcordError('ERR_INVALID_ARGUMENT', 'coordinator has no live sqlite session');
  return {
    disconnect: () => {
      driver.setLink(false);
    },
    reconnect: () => {
      driver.setLink(true);
    },
  };
}
