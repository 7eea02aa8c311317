/**
 * SQLite safety scenarios with real processes sharing one database file: four processes x 500 acquisitions of one
 * lock guarding a shared file, a holder killed with SIGKILL, a holder stopped with SIGSTOP past its TTL, a holder in
 * another time namespace, an abandoned wait whose clean-up meets a busy file; and database paths that cannot work,
 * which must fail with a clear error rather than a crash.
 */
import { spawnSync } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { ConcordError, connect, type Coordinator } from '../../../src/index.js';
import { checkIntervals, type HoldInterval } from '../../support/history.js';
import { deadline, eventually } from '../../support/wait.js';
import { Child } from './child.js';
import { openDatabase } from './database.js';

const WORKER = fileURLToPath(new URL('./worker.ts', import.meta.url));
const HOLDER = fileURLToPath(new URL('./holder.ts', import.meta.url));
const BLOCKER = fileURLToPath(new URL('./blocker.ts', import.meta.url));

let dir = '';
let url = '';
const children: Child[] = [];
const coordinators: Coordinator[] = [];

function child(script: string, args: string[], wrapper: string[] = []): Child {
  const c = new Child(script, args, wrapper);
  children.push(c);
  return c;
}

async function coordinator(member: string, sessionTtlMs?: number): Promise<Coordinator> {
  const c = await connect(url, { member, sessionTtlMs });
  coordinators.push(c);
  return c;
}

async function codeOf(promise: Promise<unknown>): Promise<string> {
  try {
    await promise;
    return 'resolved';
  } catch (error) {
    return error instanceof ConcordError ? error.code : String(error);
  }
}

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'concord-sqlite-faults-'));
  url = `sqlite://${join(dir, 'faults.db')}`;
});

afterEach(async () => {
  await Promise.all(children.splice(0).map((c) => c.kill()));
  await Promise.all(coordinators.splice(0).map((c) => c.close()));
});

afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

describe('sqlite: processes sharing one file', () => {
  it('4 processes x 500 acquisitions: zero overlaps on the guarded file, tokens strictly increasing', async () => {
    const guard = join(dir, 'guard.json');
    writeFileSync(guard, JSON.stringify({ holder: null, count: 0 }));
    const perProcess = 500;
    const workers = ['w0', 'w1', 'w2', 'w3'].map((m) => child(WORKER, [url, m, String(perProcess), guard]));
    const reports = await Promise.all(workers.map((w) => w.message('done', 'a worker to finish', 110_000)));
    const intervals: HoldInterval[] = [];
    const violations: string[] = [];
    for (const report of reports) {
      const client = String(report.done);
      violations.push(...(report.violations as string[]));
      for (const i of report.intervals as Array<{ token: string; start: string; end: string }>) {
        intervals.push({ client, token: BigInt(i.token), start: BigInt(i.start), end: BigInt(i.end) });
      }
    }
    expect(violations).toEqual([]);
    expect(intervals).toHaveLength(4 * perProcess);
    const result = checkIntervals(intervals);
    expect(result.violations.slice(0, 5)).toEqual([]);
    expect(result.ok).toBe(true);
    const { readFileSync } = await import('node:fs');
    expect(JSON.parse(readFileSync(guard, 'utf8'))).toEqual({ holder: null, count: 4 * perProcess });
    expect(await Promise.all(workers.map((w) => w.exited))).toEqual([0, 0, 0, 0]);
  }, 120_000);

  it('SIGKILL of a holder frees the lock for a waiter at once, long before its TTL, with a larger token', async () => {
    // A 60 s TTL and a 10 s wait: the waiter can only get the lock through the dead-process check.
    const holder = child(HOLDER, [url, 'killed', '60000', 'k']);
    const acquired = await holder.message('acquired', 'the holder to acquire');
    const waiter = await coordinator('waiter');
    const waiting = waiter.lock('k').acquire({ timeoutMs: 10_000 });
    holder.signal('SIGKILL');
    await holder.exited;
    const held = await waiting;
    expect(held.token).toBeGreaterThan(BigInt(String(acquired.token)));
    expect(await waiter.lock('k').holder()).toBe('waiter');
    await held.release();
  });

  it('SIGKILL of a member: a watcher in another process sees it leave at once, long before its TTL', async () => {
    const watcherSide = await coordinator('watcher');
    const member = child(HOLDER, [url, 'member', '60000', 'unused', 'g']);
    await member.message('acquired', 'the child to join and start');
    const watch = watcherSide.group('g').watch();
    const events: string[] = [];
    const left = (async () => {
      for await (const event of watch) {
        events.push(`${event.type} ${event.member}`);
        if (event.type === 'leave') return;
      }
    })();
    member.signal('SIGKILL');
    await member.exited;
    await deadline(left, 10_000, 'the leave of the killed member');
    expect(events).toEqual(['join member', 'leave member']);
    expect(await watcherSide.group('g').members()).toEqual([]);
    await watch.close();
  });

  it('SIGSTOP of a holder past its TTL: the waiter gets a larger token, and the holder learns it lost on resume', async () => {
    const ttl = 1000;
    const holder = child(HOLDER, [url, 'stopped', String(ttl), 's']);
    const acquired = await holder.message('acquired', 'the holder to acquire');
    const waiter = await coordinator('waiter');
    holder.signal('SIGSTOP');
    const stoppedAt = performance.now();
    const held = await deadline(waiter.lock('s').acquire(), 30_000, 'the waiter to acquire after the TTL');
    // A stopped process is alive: only its TTL can have freed the lock.
    expect(performance.now() - stoppedAt).toBeGreaterThanOrEqual(ttl / 2);
    expect(held.token).toBeGreaterThan(BigInt(String(acquired.token)));
    const resumedAt = process.hrtime.bigint();
    holder.signal('SIGCONT');
    const lost = await holder.message('lost', 'the resumed holder to notice');
    expect(lost.lost).toBe('ERR_LOCK_LOST');
    // No look after the resume found the lock still held.
    expect(BigInt(String(lost.lastHeldLook))).toBeLessThan(resumedAt);
    await holder.message('released', 'the resumed holder to release');
    // Its release did not touch the new holder's lock.
    expect(await waiter.lock('s').holder()).toBe('waiter');
    expect(held.signal.aborted).toBe(false);
    await held.release();
    expect(await holder.exited).toBe(0);
  });
});

describe('sqlite: a waiting process', () => {
  it('stays alive while it waits for a lock another process holds (nothing else would keep it running)', async () => {
    const parent = await coordinator('parent');
    const held = await parent.lock('alive').acquire();
    const waiter = child(HOLDER, [url, 'waiter', '60000', 'alive']);
    const db = openDatabase(join(dir, 'faults.db'));
    try {
      await eventually(
        () => db.prepare("SELECT count(*) FROM concord_waiters WHERE name = 'alive'", true).get() as number,
        (n) => n === 1,
        20_000,
        'the child to queue',
      );
    } finally {
      db.close();
    }
    await held.release();
    const acquired = await waiter.message('acquired', 'the waiting child to acquire');
    expect(BigInt(String(acquired.token))).toBeGreaterThan(held.token);
  });
});

/** Waiter rows of the lock, read from a separate read-only connection (reads are never blocked in WAL mode). */
function waiterRows(name: string): number {
  const db = openDatabase(join(dir, 'faults.db'));
  try {
    return db.prepare('SELECT count(*) FROM concord_waiters WHERE name = ?', true).get(name) as number;
  } finally {
    db.close();
  }
}

function lockRow(name: string): { fence: number; session: string | null } | undefined {
  const db = openDatabase(join(dir, 'faults.db'));
  try {
    return db.prepare('SELECT fence, session FROM concord_locks WHERE name = ?').get(name) as
      { fence: number; session: string | null } | undefined;
  } finally {
    db.close();
  }
}

describe('sqlite: an abandoned wait while another process holds the write lock', () => {
  it('leaves no queue place behind once the file is writable again, and a third member then acquires', async () => {
    const a = await coordinator('a');
    const held = await a.lock('c').acquire();
    const b = await coordinator('b', 20_000);
    const gaveUp = new AbortController();
    const waiting = codeOf(b.lock('c').acquire({ signal: gaveUp.signal }));
    await eventually(
      () => waiterRows('c'),
      (n) => n === 1,
      20_000,
      'b to queue',
    );
    // Another process takes the write lock and keeps it while b gives up: b's own DELETE cannot get through.
    const blocker = child(BLOCKER, [join(dir, 'faults.db')]);
    await blocker.message('locked', 'the blocker to take the write lock');
    gaveUp.abort();
    expect(await waiting).toBe('ERR_ABORTED');
    expect(waiterRows('c')).toBe(1);
    blocker.signal('SIGTERM');
    await blocker.message('unlocked', 'the blocker to let go');
    // The core's cancelLock, retried while the file was busy, removes the place.
    await eventually(
      () => waiterRows('c'),
      (n) => n === 0,
      20_000,
      "b's queue place to go",
    );
    const c = await coordinator('c');
    const third = c.lock('c').acquire({ timeoutMs: 20_000 });
    await eventually(
      () => waiterRows('c'),
      (n) => n === 1,
      20_000,
      'c to queue',
    );
    await held.release();
    const next = await third;
    expect(next.token).toBeGreaterThan(held.token);
    expect(await c.lock('c').holder()).toBe('c');
    await next.release();
  }, 60_000);

  it('a grant that lands after the caller gave up is released by the cancel, and the lock reaches the next member', async () => {
    const a = await coordinator('a');
    const first = await a.lock('g').acquire();
    await first.release();
    const b = await coordinator('b', 20_000);
    const c = await coordinator('c');
    const blocker = child(BLOCKER, [join(dir, 'faults.db')]);
    await blocker.message('locked', 'the blocker to take the write lock');
    // b's attempt finds the file busy and keeps retrying from the event loop after b's caller has timed out.
    expect(await codeOf(b.lock('g').acquire({ timeoutMs: 500 }))).toBe('ERR_LOCK_TIMEOUT');
    blocker.signal('SIGTERM');
    await blocker.message('unlocked', 'the blocker to let go');
    // The retried attempt takes token first + 1 for b, and the cancel that follows it gives the lock back.
    await eventually(
      () => lockRow('g'),
      (row) => row?.fence === Number(first.token) + 1 && row.session === null,
      20_000,
      "b's late grant to be taken and given back",
    );
    const next = await c.lock('g').acquire({ timeoutMs: 20_000 });
    expect(next.token).toBe(first.token + 2n);
    expect(await c.lock('g').holder()).toBe('c');
    await next.release();
  }, 60_000);
});

/** Whether `unshare -T` works here (it needs CAP_SYS_ADMIN and a kernel with time namespaces). */
function timeNamespaces(): string | undefined {
  const probe = spawnSync('unshare', ['-T', '--monotonic', '-1', 'true'], { encoding: 'utf8' });
  if (probe.error) return `unshare is not available (${probe.error.message})`;
  if (probe.status !== 0) return `unshare -T failed: ${probe.stderr.trim()}`;
  return undefined;
}

describe('sqlite: time namespaces', () => {
  it('a live holder whose CLOCK_MONOTONIC is far behind ours is not reaped by its TTL; its death still frees the lock', async (ctx) => {
    const missing = timeNamespaces();
    if (missing !== undefined) {
      if (process.env.CI === 'true') throw new Error(`${missing}: run the tests as root on Linux 5.6 or later`);
      ctx.skip(`skipped: ${missing}`);
      return;
    }
    // The holder's monotonic clock starts about 5 s after its namespace's boot: every expiry it writes (now + 60 s)
    // is long past on ours, so judging it by our clock would reap it at once.
    const behindS = Math.floor(Number(process.hrtime.bigint() / 1_000_000_000n)) - 5;
    if (behindS < 120) {
      ctx.skip('skipped: the host has been up for less than two minutes, too little to set a clock far behind');
      return;
    }
    const holder = child(HOLDER, [url, 'other-clock', '60000', 't'], ['unshare', '-T', '--monotonic', `-${String(behindS)}`]);
    const acquired = await holder.message('acquired', 'the holder in another time namespace to acquire');
    const here = await coordinator('here');
    expect(await codeOf(here.lock('t').acquire({ timeoutMs: 1000 }))).toBe('ERR_LOCK_TIMEOUT');
    expect(await here.lock('t').holder()).toBe('other-clock');
    process.kill(Number(acquired.pid), 'SIGKILL');
    await holder.exited;
    const held = await here.lock('t').acquire({ timeoutMs: 10_000 });
    expect(held.token).toBeGreaterThan(BigInt(String(acquired.token)));
    await held.release();
  }, 60_000);
});

describe('sqlite: reboots', () => {
  it('a session left from another boot is reaped at once', async () => {
    const old = await coordinator('old');
    const held = await old.lock('b').acquire();
    const db = openDatabase(join(dir, 'faults.db'), { writable: true });
    try {
      // As if this session's process ran before a reboot: its pid and monotonic times mean nothing any more.
      db.prepare("UPDATE concord_sessions SET boot = 'a-previous-boot' WHERE id = ?").run(old.session.id);
    } finally {
      db.close();
    }
    const other = await coordinator('other');
    const next = await other.lock('b').acquire({ timeoutMs: 5000 });
    expect(next.token).toBeGreaterThan(held.token);
    await next.release();
  });

  it('the first connection of a new boot moves fencing counters far ahead of any token a lost commit gave out', async () => {
    const a = await coordinator('a');
    const first = await a.lock('f').acquire();
    await first.release();
    const db = openDatabase(join(dir, 'faults.db'), { writable: true });
    try {
      db.prepare("UPDATE concord_meta SET value = 'a-previous-boot' WHERE key = 'boot'").run();
    } finally {
      db.close();
    }
    const b = await coordinator('b');
    const second = await b.lock('f').acquire();
    expect(second.token).toBeGreaterThanOrEqual(first.token + 1_000_000_000n);
    await second.release();
    // Only once per boot.
    const c = await coordinator('c');
    const third = await c.lock('f').acquire();
    expect(third.token).toBe(second.token + 1n);
    await third.release();
  });
});

describe('sqlite: database paths', () => {
  it('a relative path is ERR_INVALID_URL naming the url', async () => {
    for (const bad of ['sqlite:relative.db', 'sqlite://relative/x.db', 'sqlite:///']) {
      const error = await connect(bad).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(error, bad).toBeInstanceOf(ConcordError);
      expect((error as ConcordError).code, bad).toBe('ERR_INVALID_URL');
      expect((error as ConcordError).message, bad).toContain('sqlite:');
    }
  });

  it('a missing directory, a corrupt file, an unwritable place or a directory fail with a clear error', async () => {
    const missing = join(dir, 'no-such-dir', 'x.db');
    let error = (await connect(`sqlite://${missing}`).catch((e: unknown) => e)) as ConcordError;
    expect(error.code).toBe('ERR_CONNECTION');
    expect(error.message).toContain('does not exist');

    const corrupt = join(dir, 'corrupt.db');
    writeFileSync(corrupt, 'this is not a database, just some text that is long enough to look like a header '.repeat(20));
    error = (await connect(`sqlite://${corrupt}`).catch((e: unknown) => e)) as ConcordError;
    expect(error.code).toBe('ERR_CONNECTION');
    expect(error.message).toContain(corrupt);

    // Permissions do not stop root, so /proc stands in for a place nobody may create a file.
    const unwritable = process.getuid?.() === 0 ? '/proc/concord-test.db' : join(dir, 'ro', 'x.db');
    if (process.getuid?.() !== 0) {
      mkdirSync(join(dir, 'ro'));
      chmodSync(join(dir, 'ro'), 0o500);
    }
    error = (await connect(`sqlite://${unwritable}`).catch((e: unknown) => e)) as ConcordError;
    expect(error.code).toBe('ERR_CONNECTION');
    expect(error.message).toContain(unwritable);

    error = (await connect(`sqlite://${dir}`).catch((e: unknown) => e)) as ConcordError;
    expect(['ERR_INVALID_URL', 'ERR_CONNECTION']).toContain(error.code);
    expect(await codeOf(connect(`sqlite://${join(dir, 'fine.db')}`).then((c) => c.close()))).toBe('resolved');
  });
});
