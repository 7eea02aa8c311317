/**
 * SQLite schema versions: a file made by version 1 (exclusive locks only) is migrated when opened, and a process of
 * version 1 may go on sharing it. Version 1's lock steps are replayed here with its own statements, on a connection
 * beside the driver's, as such a process would run them.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { connect, type Coordinator } from '../../../src/index.js';
import type { Connection } from '../../../drivers/sqlite/engine.js';
import { SCHEMA_VERSION } from '../../../drivers/sqlite/schema.js';
import { openDatabase } from './database.js';

/** Version 1's tables, as it created them. */
const V1_SCHEMA = `
CREATE TABLE IF NOT EXISTS concord_meta (key TEXT PRIMARY KEY, value NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS concord_sessions (
  id TEXT PRIMARY KEY, ns TEXT NOT NULL, ttl_ms INTEGER NOT NULL, expires_at INTEGER NOT NULL,
  pid INTEGER NOT NULL, boot TEXT NOT NULL, pidns TEXT NOT NULL, timens TEXT NOT NULL DEFAULT ''
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
CREATE INDEX IF NOT EXISTS concord_locks_session ON concord_locks (session) WHERE session IS NOT NULL;
CREATE TABLE IF NOT EXISTS concord_waiters (
  id INTEGER PRIMARY KEY AUTOINCREMENT, ns TEXT NOT NULL, kind TEXT NOT NULL, name TEXT NOT NULL, session TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS concord_waiters_lock ON concord_waiters (ns, kind, name, id);
CREATE INDEX IF NOT EXISTS concord_waiters_session ON concord_waiters (session);
INSERT OR IGNORE INTO concord_meta (key, value) VALUES ('schema', 1);
INSERT OR IGNORE INTO concord_meta (key, value) VALUES ('trimmed', 0);
`;

const NS = 'concord';

/** Version 1's lock steps, with its statements (drivers/sqlite/statements.ts of that version). */
class V1Process {
  readonly #db: Connection;
  readonly session = 'sv1-process';

  constructor(db: Connection) {
    this.#db = db;
    // A live session of this process (its pid is alive), that no reaper ends.
    db.prepare(
      "INSERT INTO concord_sessions (id, ns, ttl_ms, expires_at, pid, boot, pidns, timens) VALUES (?, ?, 600000, 9e15, ?, '', '', '')",
    ).run(this.session, NS, process.pid);
  }

  /** tryLock: free and nobody waiting. */
  mayTake(name: string): boolean {
    const lock = this.#db
      .prepare<[string, string, string], { session: string | null }>(
        'SELECT fence, session, member, token, version FROM concord_locks WHERE ns = ? AND kind = ? AND name = ?',
      )
      .get(NS, 'lock', name);
    const waiting = this.#db
      .prepare('SELECT 1 FROM concord_waiters WHERE ns = ? AND kind = ? AND name = ? LIMIT 1', true)
      .get(NS, 'lock', name);
    return lock !== undefined && lock.session === null && waiting === undefined;
  }

  queue(name: string): number {
    return Number(
      this.#db.prepare('INSERT INTO concord_waiters (ns, kind, name, session) VALUES (?, ?, ?, ?)').run(NS, 'lock', name, this.session)
        .lastInsertRowid,
    );
  }

  /** One look of a queued waiter: takes the lock when it is free and this waiter is at the head. */
  attempt(name: string, waiter: number): bigint | undefined {
    return this.#db.transaction('immediate', () => {
      const position = this.#db
        .prepare<[number, string, string, string], { session: string | null; head: number | null; mine: number | null }>(
          `SELECT l.session AS session,
                  (SELECT min(id) FROM concord_waiters w WHERE w.ns = l.ns AND w.kind = l.kind AND w.name = l.name) AS head,
                  (SELECT id FROM concord_waiters WHERE id = ?) AS mine
             FROM concord_locks l WHERE l.ns = ? AND l.kind = ? AND l.name = ?`,
        )
        .get(waiter, NS, 'lock', name);
      if (position?.mine === null || position === undefined) throw new Error('the waiter is gone');
      if (position.session !== null || position.head !== waiter) return undefined;
      const fence =
        this.#db
          .prepare<[string, string, string], number>('SELECT fence FROM concord_locks WHERE ns = ? AND kind = ? AND name = ?', true)
          .get(NS, 'lock', name) ?? 0;
      this.#db.prepare('DELETE FROM concord_waiters WHERE id = ?').run(waiter);
      this.#db
        .prepare(
          'UPDATE concord_locks SET session = ?, member = ?, token = ?, fence = ?, version = version + 1 WHERE ns = ? AND kind = ? AND name = ?',
        )
        .run(this.session, 'v1', fence + 1, fence + 1, NS, 'lock', name);
      return BigInt(fence + 1);
    });
  }

  unlock(name: string, token: bigint): void {
    this.#db
      .prepare(
        'UPDATE concord_locks SET session = NULL, member = NULL, token = NULL, version = version + 1 WHERE ns = ? AND kind = ? AND name = ? AND session = ? AND token = ?',
      )
      .run(NS, 'lock', name, this.session, Number(token));
  }
}

let dir = '';
let path = '';
const coordinators: Coordinator[] = [];
const connections: Connection[] = [];

async function coordinator(member: string): Promise<Coordinator> {
  const c = await connect(`sqlite://${path}`, { member });
  coordinators.push(c);
  return c;
}

function database(): Connection {
  const db = openDatabase(path, { writable: true });
  connections.push(db);
  return db;
}

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'concord-sqlite-schema-'));
  path = join(dir, 'v1.db');
  const db = database();
  db.prepare('PRAGMA journal_mode = WAL', true).get();
  db.exec(V1_SCHEMA);
});

afterEach(async () => {
  await Promise.all(coordinators.splice(0).map((c) => c.close()));
  for (const db of connections.splice(0)) db.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('sqlite: a file of schema version 1', () => {
  it('is migrated when opened: the line gains its columns, and a version 1 waiter in it is served in order', async () => {
    const v1 = new V1Process(database());
    // A version 1 waiter queued before the migration, behind a lock that is free: the head takes it next.
    database().prepare("INSERT INTO concord_locks (ns, kind, name, fence) VALUES (?, 'lock', 'l', 1000)").run(NS);
    const waiter = v1.queue('l');
    const a = await coordinator('a');
    const db = database();
    const columns = db.prepare<[], string>("SELECT name FROM pragma_table_info('concord_waiters')", true).all();
    expect(columns).toEqual(expect.arrayContaining(['slot', 'shared', 'lim', 'member', 'token', 'since']));
    expect(db.prepare("SELECT value FROM concord_meta WHERE key = 'schema'", true).get()).toBe(SCHEMA_VERSION);
    // It is an exclusive waiter ahead of newcomers of either mode.
    expect(await a.lock('l').tryAcquire({ shared: true })).toBeUndefined();
    expect(await a.lock('l').tryAcquire()).toBeUndefined();
    // A version 1 waiter names neither its member nor when it came: it is counted, not named.
    const [listed] = await a.locks();
    expect(listed).toMatchObject({ name: 'l', waiting: 1 });
    expect(listed?.oldestWaiter).toBeUndefined();
    const token = v1.attempt('l', waiter);
    expect(token).toBeDefined();
    expect(await a.lock('l').holders()).toEqual([{ member: 'v1', token, shared: false }]);
    v1.unlock('l', token ?? 0n);
    const shared = await a.lock('l').tryAcquire({ shared: true });
    expect(shared?.token).toBeGreaterThan(token ?? 0n);
    await shared?.release();
    expect(await a.locks()).toEqual([]);
  });

  it('a version 1 process sharing the file takes nothing while a shared hold is held, and waits its turn in line', async () => {
    const a = await coordinator('a');
    const b = await coordinator('b');
    const v1 = new V1Process(database());
    const r1 = await a.lock('l').acquire({ shared: true });
    const r2 = await b.lock('l').acquire({ shared: true });
    expect(v1.mayTake('l')).toBe(false);
    const waiter = v1.queue('l');
    expect(v1.attempt('l', waiter)).toBeUndefined();
    // Behind the version 1 waiter: a later shared request waits too (FIFO across modes and versions).
    expect(await b.lock('l').tryAcquire({ shared: true })).toBeUndefined();
    await r1.release();
    expect(v1.attempt('l', waiter)).toBeUndefined();
    await r2.release();
    const token = v1.attempt('l', waiter);
    expect(token).toBeGreaterThan(r2.token);
    expect(await a.lock('l').tryAcquire({ shared: true })).toBeUndefined();
    const pending = a.lock('l').acquire({ shared: true });
    v1.unlock('l', token ?? 0n);
    const after = await pending;
    expect(after.token).toBeGreaterThan(token ?? 0n);
    expect(v1.mayTake('l')).toBe(false);
    await after.release();
    expect(v1.mayTake('l')).toBe(true);
  });
});

describe('sqlite: how long the first waiter has waited', () => {
  it('is told from the time its request entered, and not for a row without one or one timed on another clock', async () => {
    const a = await coordinator('a');
    const b = await coordinator('b');
    const held = await a.lock('l').acquire();
    const waiting = b.lock('l').acquire();
    await vi.waitFor(async () => {
      expect((await a.locks())[0]?.waiting).toBe(1);
    });
    expect((await a.locks())[0]?.oldestWaiter).toEqual({ member: 'b', waitedMs: expect.any(Number) as number });
    const db = database();
    // A shared request written by version 2 names its member but has no time: it is named, its wait is not told.
    const since = db.prepare<[], number>('SELECT since FROM concord_waiters WHERE token IS NULL', true).get();
    db.prepare('UPDATE concord_waiters SET since = NULL WHERE token IS NULL').run();
    expect((await a.locks())[0]?.oldestWaiter).toEqual({ member: 'b' });
    // A time taken in another time namespace is on another monotonic clock.
    db.prepare('UPDATE concord_waiters SET since = ? WHERE token IS NULL').run(since ?? 0);
    db.prepare(
      "UPDATE concord_sessions SET timens = 'time:[1]' WHERE id = (SELECT session FROM concord_waiters WHERE token IS NULL)",
    ).run();
    expect((await a.locks())[0]?.oldestWaiter).toEqual({ member: 'b' });
    await held.release();
    await (await waiting).release();
  });
});
