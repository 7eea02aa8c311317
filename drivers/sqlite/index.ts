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
 * - Membership changes go to a change log written in the same transaction; its id is the revision (with the number
 *   of the file this connection is in, counting changes of file, so that no revision crosses to another). Locks carry a
 *   version that every change of hands bumps. Fair locks: waiters queue in a table ordered by id, tied to their
 *   session; only the head may take a free lock.
 * - The file itself: a connection lives on in a file that was deleted or replaced, while newcomers open whatever the
 *   path names now. So every renewal, every wake-up of the poller, a watch on the file and a FILE_CHECK_MS timer
 *   compare the path's device and inode with those of the file this connection opened. When they differ, the
 *   connection is closed (SQLite sees the file moved and neither checkpoints nor deletes the new file's -wal and
 *   -shm), its sessions are declared lost at once, and the next call opens the file now at the path.
 * - Fencing counters start from the wall clock in microseconds (a new lock row, and every row of a file that is not
 *   the one its counters were written in: new, copied, restored), so a recreated or restored file hands out tokens
 *   above any its predecessor could have, as long as that one handed out fewer than one a microsecond.
 *
 * Worst-case detection of a crashed member, for a watcher: REAP_EVERY_MS after its process is gone, else its TTL
 * + REAP_EVERY_MS (TTL + TTL/3 when nobody waits or watches: reaping then rides on renewals).
 */
import { randomBytes } from 'node:crypto';
import { existsSync, statSync, watch, type BigIntStats, type FSWatcher } from 'node:fs';
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
/** How often a connection checks, without any other wake-up, that the path still names the file it opened. */
const FILE_CHECK_MS = 50;
/**
 * How long a connection that left a replaced file waits for the old file's -wal and -shm to go from the path (a
 * removal file by file takes far less); past it, they are taken to be left over, and opened as a newcomer would.
 */
const LEFTOVER_WAIT_MS = 2000;
/** Attempts at opening a file that is replaced while it is being opened. */
const OPEN_ATTEMPTS = 3;
/** The change log keeps at least this many recent entries; a watch further behind resynchronises. */
const LOG_KEEP = 4096;
const LOG_TRIM_EVERY = 256;

type Db = BetterSqlite3.Database;

/**
 * Which file a path names: the device and inode (not reused while the file is open), and the birth time (0 where the
 * file system has none), which tells a new file from an old one that got a freed inode number back.
 */
interface FileIdentity {
  readonly dev: bigint;
  readonly ino: bigint;
  readonly birth: bigint;
}

/** An open connection, the file it opened, and that file's -wal and -shm as they were once it was open. */
interface Opened {
  readonly db: Db;
  readonly file: FileIdentity;
  readonly companions: ReadonlyMap<string, FileIdentity>;
}

/** What `file` names now, or undefined when nothing (a component of the path may also no longer be a directory). */
function identify(file: string): FileIdentity | undefined {
  let stats: BigIntStats | undefined;
  try {
    stats = statSync(file, { bigint: true, throwIfNoEntry: false });
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOTDIR') throw error;
  }
  return stats && { dev: stats.dev, ino: stats.ino, birth: stats.birthtimeNs };
}

function sameFile(a: FileIdentity | undefined, b: FileIdentity): boolean {
  return a !== undefined && a.dev === b.dev && a.ino === b.ino;
}

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
  readonly #Database: typeof BetterSqlite3;
  #db!: Db;
  #st!: Statements;
  /** One transaction wrapper for every step (making one per call costs more than the step). */
  #tx!: BetterSqlite3.Transaction<(fn: () => unknown) => unknown>;
  /** The file this connection opened; undefined once the path named another (the next call opens that one). */
  #file: FileIdentity | undefined;
  /** That file's -wal and -shm: a reopen waits a while for these to go from the path. */
  #companions: ReadonlyMap<string, FileIdentity> = new Map();
  #detachedAt = 0;
  /** Moves with every such change of file: a queue place taken in one file means nothing in the next. */
  #generation = 0;
  #fileCheck: NodeJS.Timeout | undefined;
  #fileGuard: FSWatcher | undefined;
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

  constructor(context: DriverContext, Database: typeof BetterSqlite3, opened: Opened, path: string) {
    this.#context = context;
    this.#Database = Database;
    this.#path = path;
    this.#ns = context.namespace;
    this.#attach(opened);
    this.#busyBudgetMs = Math.max(BUSY_TIMEOUT_MS, Math.min(BUSY_BUDGET_MS, context.sessionTtlMs / 2));
    let set = peers.get(path);
    if (!set) {
      set = new Set();
      peers.set(path, set);
    }
    set.add(this);
  }

  // ---- plumbing

  /**
   * Throws unless the connection is usable: closed, destroyed and cut links fail like a dropped connection. A
   * connection that left a replaced file opens the file now at the path first.
   */
  #usable(): void {
    if (this.#state !== 'open') throw new ConcordError('ERR_CONNECTION', 'the sqlite connection is closed');
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
    this.#attach(open(this.#Database, this.#path));
    debug('sqlite %s reopened: the file now at the path', this.#path);
  }

  /** Whether the poller and watches may read: open, linked, and on the file the path names as far as we know. */
  #attached(): boolean {
    return this.#state === 'open' && this.#linkUp && this.#file !== undefined;
  }

  #attach(opened: Opened): void {
    this.#db = opened.db;
    this.#st = prepare(opened.db);
    this.#tx = opened.db.transaction((fn: () => unknown) => fn());
    this.#file = opened.file;
    this.#companions = opened.companions;
    this.#dataVersion = -1;
    this.#guardFile();
    // The directory may be a new one too: the poller's notifications follow.
    if (this.#poller) {
      this.#unwatchFile();
      this.#watchFile();
    }
  }

  /**
   * Watches the file this connection opened: its deletion, or a rename over it, is an event on it; a timer covers
   * file systems without notifications. Neither keeps the process alive.
   */
  #guardFile(): void {
    this.#unguardFile();
    try {
      this.#fileGuard = watch(this.#path, { persistent: false }, () => {
        this.#verify();
      });
      this.#fileGuard.on('error', (error) => {
        debug('sqlite watch of %s failed, checking every %d ms only: %s', this.#path, FILE_CHECK_MS, error.message);
        this.#fileGuard?.close();
        this.#fileGuard = undefined;
      });
    } catch (error) {
      debug('sqlite cannot watch %s, checking every %d ms only: %s', this.#path, FILE_CHECK_MS, (error as Error).message);
    }
    this.#fileCheck = setInterval(() => {
      this.#verify();
    }, FILE_CHECK_MS);
    this.#fileCheck.unref();
  }

  #unguardFile(): void {
    clearInterval(this.#fileCheck);
    this.#fileCheck = undefined;
    this.#fileGuard?.close();
    this.#fileGuard = undefined;
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
    this.#unguardFile();
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
    // Told from a timer or a file notification: a listener that throws must not take the process down.
    const tell = (fn: () => void): void => {
      try {
        fn();
      } catch (error) {
        debug('sqlite listener failed: %s', (error as Error).message);
      }
    };
    for (const watch of [...this.#groupWatches]) {
      if (!watch.active) continue;
      watch.active = false;
      tell(() => {
        watch.sink.resync();
      });
    }
    for (const entry of [...this.#lockWatches.values()]) {
      entry.version = undefined;
      for (const listener of [...entry.listeners]) tell(listener);
    }
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
    // Every wake-up first checks that the path still names this connection's file.
    if (!this.#attached() || !this.#verify()) return;
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
    if (!this.#attached()) return false;
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
    this.#unguardFile();
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
        return { exists, members, revision: `${String(this.#generation)}:${String(this.#st.revision.get() ?? 0)}` };
      }) as GroupSnapshot;
    });
  }

  watchGroup(group: string, fromRevision: Revision, sink: WatchSink): Promise<Unsubscribe> {
    return this.#call(() => {
      // `generation:id`: a position in the change log of the file the snapshot was read from. From a file this
      // connection has left since, it means nothing here: the core takes a new snapshot.
      const [generation, id] = String(fromRevision).split(':').map(Number);
      const current = generation === this.#generation && Number.isSafeInteger(id);
      const watch: GroupWatchEntry = { group, last: id ?? 0, sink, active: true };
      this.#groupWatches.add(watch);
      this.#startPoller();
      // Catch up on what happened since the snapshot, off the caller's stack.
      setImmediate(() => {
        if (!watch.active || !this.#attached()) return;
        if (!current) {
          watch.active = false;
          sink.resync();
          return;
        }
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
        this.#st.ensureLock.run(this.#ns, kind, name, seedFence());
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
      const generation = this.#generation;
      return this.#write((): { token: bigint } | { waiter: number; generation: number } => {
        this.#requireSession(sessionId);
        this.#st.ensureLock.run(this.#ns, kind, name, seedFence());
        const kept = this.#st.sessionWaiter.get(this.#ns, kind, name, sessionId);
        if (kept !== undefined && kept !== null) return { waiter: kept, generation };
        const lock = this.#st.lock.get(this.#ns, kind, name);
        if (lock && lock.session === null && this.#st.hasWaiters.get(this.#ns, kind, name) === undefined) {
          return { token: this.#grant(kind, name, sessionId, member, lock.fence) };
        }
        return { waiter: Number(this.#st.insertWaiter.run(this.#ns, kind, name, sessionId).lastInsertRowid), generation };
      });
    }, signal);
    if ('token' in entry) return entry.token;
    const { waiter, generation } = entry;
    // The place is in the file it was taken in: if the connection moved to another since, the id means nothing there.
    const moved = (): boolean => generation !== this.#generation;
    if (moved()) throw fileReplaced();
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
          if (moved()) throw fileReplaced();
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
      if (!moved()) this.#leaveQueue(kind, name, waiter);
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

  /** The lock's version, or undefined when it cannot be read now (the next scan then tells the listeners). */
  #lockVersion(kind: LockKind, name: string): number | undefined {
    if (!this.#attached()) return undefined;
    try {
      return this.#st.lockVersion.get(this.#ns, kind, name) ?? -1;
    } catch (error) {
      debug('sqlite cannot read the version of "%s": %s', name, (error as Error).message);
      return undefined;
    }
  }

  #watchLockNow(kind: LockKind, name: string, listener: () => void): Unsubscribe {
    const key = `${kind}\u0000${name}`;
    let entry = this.#lockWatches.get(key);
    if (!entry) {
      entry = { kind, name, version: this.#lockVersion(kind, name), listeners: new Set() };
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

/** Where a new fencing counter starts: the wall clock in microseconds, far above any count of grants. */
function seedFence(): number {
  return Date.now() * 1000;
}

function fileReplaced(): ConcordError {
  return new ConcordError('ERR_SESSION_LOST', 'the database file was deleted or replaced while waiting for the lock');
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

/**
 * Opens the file, checks that it is a usable database, and creates the tables. Never leaves a handle open on failure.
 * The file must still be at the path once opened: one replaced meanwhile is opened again.
 */
function open(Database: typeof BetterSqlite3, path: string): Opened {
  for (let attempt = 1; ; attempt++) {
    const opened = openOnce(Database, path);
    if (sameFile(identify(path), opened.file)) return opened;
    opened.db.close();
    if (attempt >= OPEN_ATTEMPTS) {
      throw new ConcordError('ERR_CONNECTION', `cannot open sqlite database ${path}: it was replaced each time it was opened`);
    }
  }
}

function openOnce(Database: typeof BetterSqlite3, path: string): Opened {
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
    const file = identify(path);
    if (file === undefined) throw new Error('the file was removed as it was opened');
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
      // The file's counters were written in another file (this one is new, or a copy, a restored backup, a file moved
      // here): tokens may have been handed out above them. Every counter moves up to the clock base, as a new one
      // starts (see seedFence). The birth time tells a new file from an old one that got a freed inode number back.
      const identity = `${String(file.dev)}:${String(file.ino)}:${String(file.birth)}`;
      const known: unknown = connection.prepare("SELECT value FROM concord_meta WHERE key = 'file'").pluck().get();
      if (known !== identity) {
        connection.prepare('UPDATE concord_locks SET fence = max(fence, ?)').run(seedFence());
        connection.prepare("INSERT OR REPLACE INTO concord_meta (key, value) VALUES ('file', ?)").run(identity);
      }
    }).immediate();
    const companions = new Map<string, FileIdentity>();
    for (const suffix of ['-wal', '-shm']) {
      const companion = identify(`${path}${suffix}`);
      if (companion) companions.set(suffix, companion);
    }
    return { db, file, companions };
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
      return new SqliteDriver(context, module.default, open(module.default, path), path);
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
