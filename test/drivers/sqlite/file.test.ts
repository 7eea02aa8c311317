/**
 * SQLite: the database file is deleted, replaced or loses its directory while processes use it. The path then names
 * another file (or none): a holder in the old file must be told at once and move to the file now at the path, and
 * tokens handed out in the new file must be larger than any the old one handed out.
 */
import { existsSync, mkdirSync, mkdtempSync, renameSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createDriver } from '../../../drivers/sqlite/driver.js';
import { connect, type Coordinator, type Driver, type HeldLock } from '../../../src/index.js';
import { aborted, deadline, eventually, once } from '../../support/wait.js';
import { Child } from './child.js';
import { openDatabase } from './database.js';

const SURVIVOR = fileURLToPath(new URL('./survivor.ts', import.meta.url));

/**
 * The test's bound on how long a holder may take to hear that its file is gone. Renewals come every TTL / 3 (3.3 s
 * here), so a holder told within this bound was told by the file check, not by a renewal; typically it takes a few
 * milliseconds (the README states the measured figure). Generous: the machine running the tests may be loaded.
 */
const TOLD_WITHIN_MS = 1500;
const TTL_MS = 10_000;

let root = '';
let dir = '';
let path = '';
let url = '';
const children: Child[] = [];
const coordinators: Coordinator[] = [];

function child(args: string[], env: Record<string, string> = {}): Child {
  const c = new Child(SURVIVOR, args, [], env);
  children.push(c);
  return c;
}

async function coordinator(member: string, at = url): Promise<Coordinator> {
  const c = await connect(at, { member, sessionTtlMs: TTL_MS });
  coordinators.push(c);
  return c;
}

/** What a temp-directory cleaner or an operator "resetting" things does: the file and its -wal and -shm go. */
function deleteDatabase(file: string): void {
  for (const suffix of ['', '-wal', '-shm']) rmSync(`${file}${suffix}`, { force: true });
}

/** Waiter rows in the file at `file`, read from a separate read-only connection. */
function lockWaiters(file: string): number {
  const db = openDatabase(file);
  try {
    return db.prepare('SELECT count(*) FROM concord_waiters', true).get() as number;
  } finally {
    db.close();
  }
}

/** The driver on its own, as the core drives it; `expired` collects the sessions it reports expired. */
function driverOn(expired: string[]): Promise<Driver> {
  return createDriver({
    url: new URL(url),
    rawUrl: url,
    params: new URLSearchParams(),
    namespace: 'concord',
    member: 'd',
    sessionTtlMs: TTL_MS,
    connectTimeoutMs: 10_000,
    signal: new AbortController().signal,
    events: {
      sessionExpired: (id) => expired.push(id),
      lockLost: () => undefined,
    },
  });
}

function msSince(start: bigint, at: unknown): number {
  return Number(BigInt(String(at)) - start) / 1e6;
}

let counter = 0;
beforeEach(() => {
  // Each test gets its own directory and file: a test that deletes the file must not disturb the next.
  dir = join(root, `t${String(counter++)}`);
  mkdirSync(dir);
  path = join(dir, 'x.db');
  url = `sqlite://${path}`;
});

afterEach(async () => {
  await Promise.all(children.splice(0).map((c) => c.kill()));
  await Promise.all(coordinators.splice(0).map((c) => c.close()));
});

root = mkdtempSync(join(tmpdir(), 'concord-sqlite-file-'));
afterAll(() => {
  rmSync(root, { recursive: true, force: true });
});

describe('sqlite: the database file deleted under a holder', () => {
  it('the holder is told at once, a holder in the recreated file gets a larger token, and the old holder moves to the new file', async () => {
    const a = child([url, 'a', String(TTL_MS), 'L', 'g']);
    const acquired = await a.message('acquired', 'a to acquire');
    const deletedAt = process.hrtime.bigint();
    deleteDatabase(path);
    // A newcomer gets a new, empty file and the lock at once: only a's being told and the tokens keep this safe.
    const b = await coordinator('b');
    const held = await b.lock('L').tryAcquire();
    expect(held).toBeDefined();
    const bHeld = held as HeldLock;
    expect(bHeld.token).toBeGreaterThan(BigInt(String(acquired.token)));
    const lost = await a.message('lost', 'a to be told its lock is lost', TOLD_WITHIN_MS + 1000);
    expect(lost.lost).toBe('ERR_LOCK_LOST');
    expect(msSince(deletedAt, lost.at)).toBeLessThan(TOLD_WITHIN_MS);
    // a closed its connection to the old file: that must not have deleted the new file's -wal and -shm.
    expect(existsSync(`${path}-wal`) && existsSync(`${path}-shm`)).toBe(true);
    // a's replacement session lives in the file now at the path: it queues behind b there.
    await a.message('restored', 'a to open a new session', 20_000);
    a.signal('SIGUSR1');
    await eventually(
      () => lockWaiters(path),
      (n) => n === 1,
      20_000,
      'a to queue in the new file',
    );
    await bHeld.release();
    const again = await a.message('reacquired', 'a to take the lock in the new file', 20_000);
    expect(BigInt(String(again.token))).toBeGreaterThan(bHeld.token);
    expect(await b.lock('L').holder()).toBe('a');
  }, 60_000);

  it('a process waiting in the deleted file is told, and its next session waits in the new file', async () => {
    const a = child([url, 'a', String(TTL_MS), 'L', 'g']);
    await a.message('acquired', 'a to acquire');
    const c = await coordinator('c');
    const gaveUp = new AbortController();
    const waiting = c
      .lock('L')
      .acquire({ signal: gaveUp.signal })
      .catch((error: unknown) => error);
    const lost = once(c, 'lost', 20_000);
    const restored = once(c, 'restored', 20_000);
    restored.catch(() => undefined);
    const deletedAt = process.hrtime.bigint();
    deleteDatabase(path);
    await lost;
    expect(msSince(deletedAt, process.hrtime.bigint())).toBeLessThan(TOLD_WITHIN_MS);
    await restored;
    gaveUp.abort();
    await waiting;
    // c's session is in the new file: a newcomer there sees c's lock once c takes it.
    const held = await c.lock('L').acquire({ timeoutMs: 20_000 });
    const b = await coordinator('b');
    expect(await b.lock('L').holder()).toBe('c');
    await held.release();
  }, 60_000);

  it('tokens in a recreated file start above every token the deleted file handed out', async () => {
    const p = await coordinator('p');
    let last = 0n;
    for (let i = 0; i < 300; i++) {
      const held = await p.lock('L').acquire();
      last = held.token;
      await held.release();
    }
    await p.close();
    deleteDatabase(path);
    const q = await coordinator('q');
    const first = await q.lock('L').acquire();
    expect(first.token).toBeGreaterThan(last);
    await first.release();
  });
});

describe('sqlite: the database file removed before its -wal and -shm', () => {
  it('the holder is told at once but opens no new file while the old -wal and -shm are still there', async () => {
    // As a removal file by file (`rm x.db*`) looks between its steps, or a database file removed without them. A new
    // file opened now would share the old -wal and -shm with connections still in the old file, and lose them to
    // the rest of the removal.
    const a = child([url, 'a', String(TTL_MS), 'L', 'g'], { NODE_DEBUG: 'concord' });
    await a.message('acquired', 'a to acquire');
    const removedAt = process.hrtime.bigint();
    rmSync(path);
    const lost = await a.message('lost', 'a to be told its lock is lost', TOLD_WITHIN_MS + 1000);
    expect(msSince(removedAt, lost.at)).toBeLessThan(TOLD_WITHIN_MS);
    await a.said(/-wal is still there; waiting for it to go/, 'a to decline opening a new file', 20_000);
    expect(existsSync(path)).toBe(false);
    expect(a.has('restored')).toBe(false);
    rmSync(`${path}-wal`);
    rmSync(`${path}-shm`);
    await a.message('restored', 'a to open a new session once the removal is complete', 20_000);
    a.signal('SIGUSR1');
    await a.message('reacquired', 'a to take the lock in the new file', 20_000);
    // The new file and its -wal and -shm are a's own: a newcomer finds the lock held there.
    const b = await coordinator('b');
    expect(await b.lock('L').holder()).toBe('a');
    expect(await b.lock('L').tryAcquire()).toBeUndefined();
  }, 60_000);
});

describe('sqlite: the database file removed without its -wal and -shm', () => {
  it('the holder opens the new file once they have stayed a while, and shares it with newcomers', async () => {
    const a = child([url, 'a', String(TTL_MS), 'L', 'g']);
    await a.message('acquired', 'a to acquire');
    rmSync(path);
    await a.message('lost', 'a to be told its lock is lost', TOLD_WITHIN_MS + 1000);
    await a.message('restored', 'a to open a new session in spite of the leftovers', 20_000);
    a.signal('SIGUSR1');
    await a.message('reacquired', 'a to take the lock in the new file', 20_000);
    const b = await coordinator('b');
    expect(await b.lock('L').holder()).toBe('a');
    expect(await b.lock('L').tryAcquire()).toBeUndefined();
  }, 60_000);
});

describe('sqlite: the database file replaced', () => {
  it('by an older copy renamed over it: the holder is told, and tokens go on above every token the original handed out', async () => {
    const p = await coordinator('p');
    for (let i = 0; i < 3; i++) await (await p.lock('L').acquire()).release();
    // A consistent copy, as a backup would take it.
    const backup = join(dir, 'backup.db');
    const source = openDatabase(path);
    try {
      source.exec(`VACUUM INTO '${backup.replaceAll("'", "''")}'`);
    } finally {
      source.close();
    }
    for (let i = 0; i < 50; i++) await (await p.lock('L').acquire()).release();
    await p.close();
    const a = child([url, 'a', String(TTL_MS), 'L', 'g']);
    const acquired = await a.message('acquired', 'a to acquire');
    // The restore: the -wal and -shm of the file in use go, and the copy takes the file's place in one step.
    rmSync(`${path}-wal`, { force: true });
    rmSync(`${path}-shm`, { force: true });
    const replacedAt = process.hrtime.bigint();
    renameSync(backup, path);
    const b = await coordinator('b');
    const held = await b.lock('L').acquire({ timeoutMs: 20_000 });
    expect(held.token).toBeGreaterThan(BigInt(String(acquired.token)));
    const lost = await a.message('lost', 'a to be told its lock is lost', TOLD_WITHIN_MS + 1000);
    expect(msSince(replacedAt, lost.at)).toBeLessThan(TOLD_WITHIN_MS);
    await held.release();
    await a.message('restored', 'a to open a new session in the restored file', 20_000);
    a.signal('SIGUSR1');
    const again = await a.message('reacquired', 'a to take the lock in the restored file', 20_000);
    expect(BigInt(String(again.token))).toBeGreaterThan(held.token);
    expect(await b.lock('L').holder()).toBe('a');
  }, 60_000);
});

describe('sqlite: the directory removed', () => {
  it('the holder is told, stays lost while the directory is missing, and re-joins once it is back', async () => {
    const a = child([url, 'a', String(TTL_MS), 'L', 'g']);
    const acquired = await a.message('acquired', 'a to acquire');
    // Moved away first so that the path's directory is gone in one step, then removed.
    const removedAt = process.hrtime.bigint();
    renameSync(dir, `${dir}-removed`);
    rmSync(`${dir}-removed`, { recursive: true, force: true });
    const lost = await a.message('lost', 'a to be told its lock is lost', TOLD_WITHIN_MS + 1000);
    expect(msSince(removedAt, lost.at)).toBeLessThan(TOLD_WITHIN_MS);
    await a.message('sessionLost', 'a to report its session lost');
    // Nowhere to open a new session: a cannot be restored until the directory is back.
    expect(a.has('restored')).toBe(false);
    mkdirSync(dir);
    await a.message('restored', 'a to open a new session once the directory is back', 20_000);
    a.signal('SIGUSR1');
    const again = await a.message('reacquired', 'a to take the lock in the new file', 20_000);
    expect(BigInt(String(again.token))).toBeGreaterThan(BigInt(String(acquired.token)));
    const b = await coordinator('b');
    expect(await b.lock('L').holder()).toBe('a');
  }, 60_000);
});

describe('sqlite: the driver on a deleted file', () => {
  it('a renewal right after the deletion reports the session gone, and the next session opens in the new file', async () => {
    const expired: string[] = [];
    const driver = await driverOn(expired);
    try {
      const old = await driver.openSession(TTL_MS);
      deleteDatabase(path);
      // In the same turn of the event loop: no notification or timer can have run, only the renewal's own check.
      expect(await driver.renewSession(old)).toBe(false);
      expect(expired).toEqual([old]);
      const next = await driver.openSession(TTL_MS);
      const db = openDatabase(path);
      try {
        expect(db.prepare('SELECT id FROM concord_sessions', true).all()).toEqual([next]);
      } finally {
        db.close();
      }
      expect(await driver.renewSession(next)).toBe(true);
      await driver.closeSession(next);
    } finally {
      await driver.close();
    }
  });

  it('a watch from a snapshot of the deleted file resynchronises instead of reading the new file from that point', async () => {
    const driver = await driverOn([]);
    try {
      const old = await driver.openSession(TTL_MS);
      for (const m of ['m1', 'm2', 'm3']) await driver.joinGroup('g', m, old, {}, true);
      const snapshot = await driver.getMembers('g');
      deleteDatabase(path);
      expect(await driver.renewSession(old)).toBe(false);
      // The new file's change log has its own numbering: these are ids 1 to 5, two of them past the snapshot's.
      const next = await driver.openSession(TTL_MS);
      for (const m of ['n1', 'n2', 'n3', 'n4', 'n5']) await driver.joinGroup('g', m, next, {}, true);
      const seen: string[] = [];
      let resynced: () => void = () => undefined;
      const resync = new Promise<void>((resolve) => (resynced = resolve));
      const stop = await driver.watchGroup('g', snapshot.revision, {
        event: (event) => seen.push(`${event.type} ${event.member}`),
        resync: () => {
          resynced();
        },
      });
      await deadline(resync, 5000, 'the watch to resynchronise');
      stop();
      expect(seen).toEqual([]);
      await driver.closeSession(next);
    } finally {
      await driver.close();
    }
  });
});

describe('sqlite: a lock lost with its file', () => {
  it('an in-process holder hears of it through its signal', async () => {
    const h = await coordinator('h');
    const held = await h.lock('L').acquire();
    const deletedAt = process.hrtime.bigint();
    deleteDatabase(path);
    await aborted(held.signal, TOLD_WITHIN_MS + 1000);
    expect(msSince(deletedAt, process.hrtime.bigint())).toBeLessThan(TOLD_WITHIN_MS);
  });
});
