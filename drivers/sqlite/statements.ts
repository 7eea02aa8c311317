/**
 * The prepared statements the driver runs, and the rows they read. Sessions are not namespaced: any live coordinator
 * reaps any dead session.
 */
import type { Connection, Statement } from './engine.js';

/** Prepares `sql`; with `pluck`, rows are the first column only. */
function statement<P extends unknown[], R = unknown>(db: Connection, sql: string, pluck = false): Statement<P, R> {
  return db.prepare<P, R>(sql, pluck);
}

export interface SessionRow {
  readonly id: string;
  readonly pid: number;
  readonly boot: string;
  readonly pidns: string;
  readonly timens: string;
  readonly expires_at: number;
  /** 1: its process touches the side file after the commits watchers care about (notify.ts); 0: an earlier version's. */
  readonly touches: number;
}

export interface ChangeRow {
  readonly id: number;
  readonly type: 'join' | 'update' | 'leave';
  readonly member: string;
  readonly capabilities: string | null;
}

export interface LockRow {
  readonly fence: number;
  readonly session: string | null;
  readonly member: string | null;
  readonly token: number | null;
  readonly version: number;
}

export interface ListedLockRow {
  readonly kind: string;
  readonly name: string;
  readonly member: string;
  readonly token: number | bigint;
}

export interface WaitingRow {
  readonly kind: string;
  readonly name: string;
  readonly n: number;
  /** A semaphore's limit (0 for locks and leadership). */
  readonly lim: number;
}

/**
 * The first request waiting in a line: its member and when it entered (null in a row of an earlier version), and the
 * time namespace of its session, whose monotonic clock that is (null once the session is gone).
 */
export interface FirstWaiterRow {
  readonly kind: string;
  readonly name: string;
  readonly member: string | null;
  readonly since: number | null;
  readonly timens: string | null;
}

/** A shared hold or a permit, listed. */
export interface SharedHoldRow {
  readonly kind: string;
  readonly name: string;
  readonly member: string;
  readonly token: number | bigint;
}

/** One request in a name's line after its exclusive holder: a waiter, or a shared hold or permit (with a token). */
export interface LineRow {
  readonly id: number;
  readonly session: string;
  readonly slot: number;
  readonly shared: number;
  readonly lim: number;
  readonly member: string | null;
  readonly token: number | null;
}

export interface LockPosition {
  readonly session: string | null;
  readonly head: number | null;
  readonly mine: number | null;
}

/** Every statement, prepared once per connection. */
export function prepare(db: Connection) {
  return {
    dataVersion: statement<[], number>(db, 'PRAGMA data_version', true),
    meta: statement<[string], number>(db, 'SELECT value FROM concord_meta WHERE key = ?', true),
    setMeta: statement<[number, string]>(db, 'UPDATE concord_meta SET value = max(value, ?) WHERE key = ?'),

    // sessions
    insertSession: statement<[string, string, number, number, number, string, string, string]>(
      db,
      'INSERT INTO concord_sessions (id, ns, ttl_ms, expires_at, pid, boot, pidns, timens, touches) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 1)',
    ),
    renewSession: statement<[number, string, number]>(
      db,
      'UPDATE concord_sessions SET expires_at = ? + ttl_ms WHERE id = ? AND expires_at > ?',
    ),
    sessions: statement<[], SessionRow>(db, 'SELECT id, pid, boot, pidns, timens, expires_at, touches FROM concord_sessions'),
    session: statement<[string], SessionRow>(
      db,
      'SELECT id, pid, boot, pidns, timens, expires_at, touches FROM concord_sessions WHERE id = ?',
    ),
    deleteSession: statement<[string]>(db, 'DELETE FROM concord_sessions WHERE id = ?'),
    sessionMembers: statement<[string], { ns: string; grp: string; member: string }>(
      db,
      'SELECT ns, grp, member FROM concord_members WHERE session = ?',
    ),
    deleteSessionMembers: statement<[string]>(db, 'DELETE FROM concord_members WHERE session = ?'),
    freeSessionLocks: statement<[string]>(
      db,
      'UPDATE concord_locks SET session = NULL, member = NULL, token = NULL, version = version + 1 WHERE session = ?',
    ),
    sessionWaitedLocks: statement<[string], { ns: string; kind: string; name: string }>(
      db,
      'SELECT DISTINCT ns, kind, name FROM concord_waiters WHERE session = ?',
    ),
    deleteSessionWaiters: statement<[string]>(db, 'DELETE FROM concord_waiters WHERE session = ?'),

    // groups
    groupExists: statement<[string, string], number>(db, 'SELECT 1 FROM concord_groups WHERE ns = ? AND name = ?', true),
    insertGroup: statement<[string, string]>(db, 'INSERT OR IGNORE INTO concord_groups (ns, name) VALUES (?, ?)'),
    deleteGroup: statement<[string, string]>(db, 'DELETE FROM concord_groups WHERE ns = ? AND name = ?'),
    listGroups: statement<[string], string>(db, 'SELECT name FROM concord_groups WHERE ns = ?', true),
    memberCount: statement<[string, string], number>(db, 'SELECT count(*) FROM concord_members WHERE ns = ? AND grp = ?', true),
    members: statement<[string, string], { member: string; capabilities: string }>(
      db,
      'SELECT member, capabilities FROM concord_members WHERE ns = ? AND grp = ?',
    ),
    insertMember: statement<[string, string, string, string, string]>(
      db,
      'INSERT OR IGNORE INTO concord_members (ns, grp, member, session, capabilities) VALUES (?, ?, ?, ?, ?)',
    ),
    deleteMember: statement<[string, string, string]>(db, 'DELETE FROM concord_members WHERE ns = ? AND grp = ? AND member = ?'),
    updateMember: statement<[string, string, string, string]>(
      db,
      'UPDATE concord_members SET capabilities = ? WHERE ns = ? AND grp = ? AND member = ?',
    ),
    insertChange: statement<[string, string, string, string, string | null]>(
      db,
      'INSERT INTO concord_changes (ns, grp, type, member, capabilities) VALUES (?, ?, ?, ?, ?)',
    ),
    trimChanges: statement<[number]>(db, 'DELETE FROM concord_changes WHERE id <= ?'),
    revision: statement<[], number>(db, "SELECT coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'concord_changes'), 0)", true),
    changesSince: statement<[string, string, number], ChangeRow>(
      db,
      'SELECT id, type, member, capabilities FROM concord_changes WHERE ns = ? AND grp = ? AND id > ? ORDER BY id',
    ),

    // locks
    /** A new lock's counter starts at the given clock base (see seedFence), so a recreated file's tokens are larger. */
    ensureLock: statement<[string, string, string, number]>(
      db,
      'INSERT OR IGNORE INTO concord_locks (ns, kind, name, fence) VALUES (?, ?, ?, ?)',
    ),
    /** Every held lock of a namespace (listing; prefixes are matched by the caller). */
    heldLocks: statement<[string], ListedLockRow>(
      db,
      'SELECT kind, name, member, token FROM concord_locks WHERE ns = ? AND session IS NOT NULL AND token IS NOT NULL',
    ),
    /** How many wait for each lock of a namespace (shared holds and permits are in its line too, with a token). */
    waitingCounts: statement<[string], WaitingRow>(
      db,
      'SELECT kind, name, sum(token IS NULL) AS n, max(lim) AS lim FROM concord_waiters WHERE ns = ? GROUP BY kind, name',
    ),
    /** The first request still waiting in each line of a namespace (listing). */
    firstWaiters: statement<[string], FirstWaiterRow>(
      db,
      `SELECT w.kind AS kind, w.name AS name, w.member AS member, w.since AS since, s.timens AS timens
         FROM concord_waiters w LEFT JOIN concord_sessions s ON s.id = w.session
        WHERE w.ns = ? AND w.token IS NULL
          AND w.id = (SELECT min(id) FROM concord_waiters x WHERE x.ns = w.ns AND x.kind = w.kind AND x.name = w.name AND x.token IS NULL)`,
    ),
    /** Every shared hold and permit of a namespace (listing). */
    sharedHolds: statement<[string], SharedHoldRow>(
      db,
      'SELECT kind, name, member, token FROM concord_waiters WHERE ns = ? AND token IS NOT NULL',
    ),
    lock: statement<[string, string, string], LockRow>(
      db,
      'SELECT fence, session, member, token, version FROM concord_locks WHERE ns = ? AND kind = ? AND name = ?',
    ),
    lockVersion: statement<[string, string, string], number>(
      db,
      'SELECT version FROM concord_locks WHERE ns = ? AND kind = ? AND name = ?',
      true,
    ),
    grant: statement<[string, string, number, number, string, string, string]>(
      db,
      'UPDATE concord_locks SET session = ?, member = ?, token = ?, fence = ?, version = version + 1 WHERE ns = ? AND kind = ? AND name = ?',
    ),
    unlock: statement<[string, string, string, string, number]>(
      db,
      'UPDATE concord_locks SET session = NULL, member = NULL, token = NULL, version = version + 1 WHERE ns = ? AND kind = ? AND name = ? AND session = ? AND token = ?',
    ),
    bumpLock: statement<[string, string, string]>(
      db,
      'UPDATE concord_locks SET version = version + 1 WHERE ns = ? AND kind = ? AND name = ?',
    ),
    hasWaiters: statement<[string, string, string], number>(
      db,
      'SELECT 1 FROM concord_waiters WHERE ns = ? AND kind = ? AND name = ? LIMIT 1',
      true,
    ),
    position: statement<[number, string, string, string], LockPosition>(
      db,
      `SELECT l.session AS session,
              (SELECT min(id) FROM concord_waiters w WHERE w.ns = l.ns AND w.kind = l.kind AND w.name = l.name) AS head,
              (SELECT id FROM concord_waiters WHERE id = ?) AS mine
         FROM concord_locks l WHERE l.ns = ? AND l.kind = ? AND l.name = ?`,
    ),
    waiter: statement<[number, string], number>(db, 'SELECT id FROM concord_waiters WHERE id = ? AND session = ?', true),
    insertWaiter: statement<[string, string, string, string, string, number]>(
      db,
      'INSERT INTO concord_waiters (ns, kind, name, session, member, since) VALUES (?, ?, ?, ?, ?, ?)',
    ),
    deleteWaiter: statement<[number]>(db, 'DELETE FROM concord_waiters WHERE id = ?'),
    /** The session's earliest exclusive place in the lock's queue (a wait interrupted by a failure leaves one). */
    sessionWaiter: statement<[string, string, string, string], number | null>(
      db,
      'SELECT min(id) FROM concord_waiters WHERE ns = ? AND kind = ? AND name = ? AND session = ? AND slot = 0',
      true,
    ),
    deleteSessionLockWaiters: statement<[string, string, string, string]>(
      db,
      'DELETE FROM concord_waiters WHERE ns = ? AND kind = ? AND name = ? AND session = ? AND slot = 0',
    ),

    // shared holds and permits: rows of the line, granted by setting their token
    line: statement<[string, string, string], LineRow>(
      db,
      'SELECT id, session, slot, shared, lim, member, token FROM concord_waiters WHERE ns = ? AND kind = ? AND name = ? ORDER BY id',
    ),
    /** The session's request in a slot (granted or waiting), if any. */
    slotRequest: statement<[string, string, string, string, number], { id: number; token: number | null }>(
      db,
      'SELECT id, token FROM concord_waiters WHERE ns = ? AND kind = ? AND name = ? AND session = ? AND slot = ? ORDER BY id LIMIT 1',
    ),
    insertRequest: statement<[string, string, string, string, number, number, string, number | null, number]>(
      db,
      'INSERT INTO concord_waiters (ns, kind, name, session, slot, shared, lim, member, token, since) VALUES (?, ?, ?, ?, ?, 1, ?, ?, ?, ?)',
    ),
    grantRequest: statement<[number, number]>(db, 'UPDATE concord_waiters SET token = ? WHERE id = ?'),
    /** A shared grant took the next token: the counter moves, and so does the version (watchers look). */
    advanceFence: statement<[number, string, string, string]>(
      db,
      'UPDATE concord_locks SET fence = ?, version = version + 1 WHERE ns = ? AND kind = ? AND name = ?',
    ),
    releaseShared: statement<[string, string, string, string, number]>(
      db,
      'DELETE FROM concord_waiters WHERE ns = ? AND kind = ? AND name = ? AND session = ? AND token = ?',
    ),
    deleteSlotRequests: statement<[string, string, string, string, number]>(
      db,
      'DELETE FROM concord_waiters WHERE ns = ? AND kind = ? AND name = ? AND session = ? AND slot = ?',
    ),
    sharedHolders: statement<[string, string, string], { member: string; token: number }>(
      db,
      'SELECT member, token FROM concord_waiters WHERE ns = ? AND kind = ? AND name = ? AND token IS NOT NULL ORDER BY token',
    ),
    freeSessionLock: statement<[string, string, string, string]>(
      db,
      'UPDATE concord_locks SET session = NULL, member = NULL, token = NULL, version = version + 1 WHERE ns = ? AND kind = ? AND name = ? AND session = ?',
    ),
  };
}

export type Statements = ReturnType<typeof prepare>;
