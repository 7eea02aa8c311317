/**
 * Opening a database file: the tables (shared by every namespace of one file; each row carries its namespace), their
 * migration from earlier versions, the connection settings, and the fencing counters moved up where tokens may have
 * been handed out that this file does not remember (a new boot after a lost commit, a new or copied file).
 */
import { existsSync, statSync } from 'node:fs';
import { dirname } from 'node:path';
import { ConcordError } from '../../src/errors.js';
import type { Connection, Engine } from './engine.js';
import { identify, sameFile, type FileIdentity } from './file.js';
import { BOOT_ID } from './host.js';

/** How long one statement waits, synchronously, for another connection's write lock. */
export const BUSY_TIMEOUT_MS = 20;
/** Far more grants than a WAL can hold unsynced (it is checkpointed, and synced, every 1,000 pages). */
const FENCE_JUMP_AFTER_REBOOT = 1_000_000_000;
/** Attempts at opening a file that is replaced while it is being opened. */
const OPEN_ATTEMPTS = 3;

/**
 * 2: a lock's line holds shared holds and semaphore permits as well as waiters (concord_waiters' slot, shared, lim,
 * member and token). 3: every request names its member and when it entered the line (concord_waiters' since, on the
 * host's monotonic clock), so a listing can say who has waited longest. 4: every session says whether its process
 * touches the side file after the commits watchers care about (concord_sessions' touches), so a watcher knows while
 * it must also listen to every commit (notify.ts). Processes of versions 1 to 3 may go on sharing a migrated file:
 * see migrate().
 */
export const SCHEMA_VERSION = 4;

export const SCHEMA = `
CREATE TABLE IF NOT EXISTS concord_meta (key TEXT PRIMARY KEY, value NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS concord_sessions (
  id TEXT PRIMARY KEY, ns TEXT NOT NULL, ttl_ms INTEGER NOT NULL, expires_at INTEGER NOT NULL,
  pid INTEGER NOT NULL, boot TEXT NOT NULL, pidns TEXT NOT NULL, timens TEXT NOT NULL DEFAULT '',
  touches INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS concord_groups (ns TEXT NOT NULL, name TEXT NOT NULL, PRIMARY KEY (ns, name)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS concord_members (
  ns TEXT NOT NULL, grp TEXT NOT NULL, member TEXT NOT NULL, session TEXT NOT NULL, capabilities TEXT NOT NULL,
  PRIMARY KEY (ns, grp, member)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS concord_members_session ON concord_members (session);
CREATE TABLE IF NOT EXISTS concord_changes (
  id INTEGER PRIMARY KEY AUTOINCREMENT, ns TEXT NOT NULL, grp TEXT NOT NULL, type TEXT NOT NULL,
  member TEXT NOT NULL, capabilities TEXT
);
CREATE INDEX IF NOT EXISTS concord_changes_group ON concord_changes (ns, grp, id);
CREATE TABLE IF NOT EXISTS concord_locks (
  ns TEXT NOT NULL, kind TEXT NOT NULL, name TEXT NOT NULL, fence INTEGER NOT NULL DEFAULT 0,
  session TEXT, member TEXT, token INTEGER, version INTEGER NOT NULL DEFAULT 0,
  PRIMARY KEY (ns, kind, name)
) WITHOUT ROWID;
-- Was an index of holders by session: every grant and release then wrote its page too (two pages a commit, not one),
-- for the benefit of a session's end only, which now reads the (small) table instead.
DROP INDEX IF EXISTS concord_locks_session;
CREATE TABLE IF NOT EXISTS concord_waiters (
  id INTEGER PRIMARY KEY AUTOINCREMENT, ns TEXT NOT NULL, kind TEXT NOT NULL, name TEXT NOT NULL, session TEXT NOT NULL,
  slot INTEGER NOT NULL DEFAULT 0, shared INTEGER NOT NULL DEFAULT 0, lim INTEGER NOT NULL DEFAULT 0, member TEXT, token INTEGER,
  since INTEGER
);
CREATE INDEX IF NOT EXISTS concord_waiters_lock ON concord_waiters (ns, kind, name, id);
CREATE INDEX IF NOT EXISTS concord_waiters_session ON concord_waiters (session);
INSERT OR IGNORE INTO concord_meta (key, value) VALUES ('schema', ${String(SCHEMA_VERSION)});
INSERT OR IGNORE INTO concord_meta (key, value) VALUES ('trimmed', 0);
`;

/**
 * The columns versions 2 and 3 added to concord_waiters; a version 1 row (an exclusive waiter) reads as these defaults,
 * and a row of either earlier version has no since (and an exclusive waiter's no member).
 */
const LINE_COLUMNS: ReadonlyArray<readonly [string, string]> = [
  ['slot', 'INTEGER NOT NULL DEFAULT 0'],
  ['shared', 'INTEGER NOT NULL DEFAULT 0'],
  ['lim', 'INTEGER NOT NULL DEFAULT 0'],
  ['member', 'TEXT'],
  ['token', 'INTEGER'],
  ['since', 'INTEGER'],
];

/**
 * Brings a file made by an earlier version up to date (inside the opening transaction, after SCHEMA). Only columns
 * with defaults are added, so processes of the earlier version keep working on the file: their statements name the
 * columns they know, and SQLite prepares them again after the change. A version 1 process sees a shared hold or a
 * permit as a waiter ahead of its own: it takes no lock while one is held, and waits its turn behind them.
 */
function migrate(db: Connection): void {
  const columns = db.prepare<[], string>("SELECT name FROM pragma_table_info('concord_sessions')", true).all();
  // Sessions written without it are taken to share our clock, as before.
  if (!columns.includes('timens')) db.exec("ALTER TABLE concord_sessions ADD COLUMN timens TEXT NOT NULL DEFAULT ''");
  // An earlier version's session (written without it) touches nothing: watchers then listen to every commit too.
  if (!columns.includes('touches')) db.exec('ALTER TABLE concord_sessions ADD COLUMN touches INTEGER NOT NULL DEFAULT 0');
  const line = db.prepare<[], string>("SELECT name FROM pragma_table_info('concord_waiters')", true).all();
  for (const [name, type] of LINE_COLUMNS) {
    if (!line.includes(name)) db.exec(`ALTER TABLE concord_waiters ADD COLUMN ${name} ${type}`);
  }
  db.prepare("UPDATE concord_meta SET value = ? WHERE key = 'schema' AND value < ?").run(SCHEMA_VERSION, SCHEMA_VERSION);
}

/** An open connection, the file it opened, and that file's -wal and -shm as they were once it was open. */
export interface Opened {
  readonly db: Connection;
  readonly file: FileIdentity;
  readonly companions: ReadonlyMap<string, FileIdentity>;
}

/** Where a new fencing counter starts: the wall clock in microseconds, far above any count of grants. */
export function seedFence(): number {
  return Date.now() * 1000;
}

/**
 * Opens the file, checks that it is a usable database, and creates the tables. Never leaves a handle open on failure.
 * The file must still be at the path once opened: one replaced meanwhile is opened again.
 */
export function open(engine: Engine, path: string): Opened {
  for (let attempt = 1; ; attempt++) {
    const opened = openOnce(engine, path);
    if (sameFile(identify(path), opened.file)) return opened;
    opened.db.close();
    if (attempt >= OPEN_ATTEMPTS) {
      throw new ConcordError('ERR_CONNECTION', `cannot open sqlite database ${path}: it was replaced each time it was opened`);
    }
  }
}

function openOnce(engine: Engine, path: string): Opened {
  const dir = dirname(path);
  if (!existsSync(dir)) {
    throw new ConcordError('ERR_CONNECTION', `cannot open sqlite database ${path}: the directory ${dir} does not exist`);
  }
  if (existsSync(path) && statSync(path).isDirectory()) {
    throw new ConcordError('ERR_INVALID_URL', `cannot open sqlite database ${path}: it is a directory`);
  }
  let db: Connection | undefined;
  try {
    db = engine.open(path, { busyTimeoutMs: BUSY_TIMEOUT_MS });
    const file = identify(path);
    if (file === undefined) throw new Error('the file was removed as it was opened');
    const mode = db.prepare('PRAGMA journal_mode = WAL', true).get();
    if (typeof mode !== 'string' || mode.toLowerCase() !== 'wal') throw new Error(`cannot switch to WAL mode (got ${String(mode)})`);
    // NORMAL in WAL mode loses commits only to an OS crash or power cut, and then the boot id changes: the first
    // connection of a new boot moves every fencing counter far ahead, past any token a lost commit handed out.
    // Without a boot id, FULL: every commit is on disk before it counts.
    db.exec(BOOT_ID === '' ? 'PRAGMA synchronous = FULL' : 'PRAGMA synchronous = NORMAL');
    const connection = db;
    connection.transaction('immediate', () => {
      connection.exec(SCHEMA);
      migrate(connection);
      const boot: unknown = connection.prepare("SELECT value FROM concord_meta WHERE key = 'boot'", true).get();
      if (BOOT_ID !== '' && boot !== BOOT_ID) {
        if (boot !== undefined) connection.prepare('UPDATE concord_locks SET fence = fence + ?').run(FENCE_JUMP_AFTER_REBOOT);
        connection.prepare("INSERT OR REPLACE INTO concord_meta (key, value) VALUES ('boot', ?)").run(BOOT_ID);
      }
      // The file's counters were written in another file (this one is new, or a copy, a restored backup, a file moved
      // here): tokens may have been handed out above them. Every counter moves up to the clock base, as a new one
      // starts (see seedFence). The birth time tells a new file from an old one that got a freed inode number back.
      const identity = `${String(file.dev)}:${String(file.ino)}:${String(file.birth)}`;
      const known: unknown = connection.prepare("SELECT value FROM concord_meta WHERE key = 'file'", true).get();
      if (known !== identity) {
        connection.prepare('UPDATE concord_locks SET fence = max(fence, ?)').run(seedFence());
        connection.prepare("INSERT OR REPLACE INTO concord_meta (key, value) VALUES ('file', ?)").run(identity);
      }
    });
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
