/**
 * SQLite shared locks and semaphores with real processes sharing one database file: 4 processes x 300 acquisitions
 * mixing shared and exclusive holds of one lock, and a semaphore of limit 3 under 6 processes, one of them a holder
 * killed with SIGKILL. Each hold is an interval on CLOCK_MONOTONIC (process.hrtime.bigint(), comparable across the
 * processes of one host); the history is checked for the mode rules, the limit and the tokens.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { connect, type Coordinator } from '../../../src/index.js';
import { Child, type Message } from '../../support/child.js';
import { checkIntervals, type HoldInterval } from '../../support/history.js';
import { eventually } from '../../support/wait.js';

const LOCK_CHILD = fileURLToPath(new URL('../../support/lock-child.ts', import.meta.url));

let dir = '';
let url = '';
const children: Child[] = [];
const coordinators: Coordinator[] = [];

function child(args: string[]): Child {
  const c = new Child(LOCK_CHILD, args);
  children.push(c);
  return c;
}

/** The holds a `work` child printed, as intervals. */
function intervalsOf(client: string, messages: readonly Message[]): HoldInterval[] {
  return messages
    .filter((m) => 'start' in m)
    .map((m) => ({
      client,
      token: BigInt(String(m.token)),
      start: BigInt(String(m.start)),
      end: BigInt(String(m.end)),
      shared: m.shared === true,
      asked: BigInt(String(m.asked)),
    }));
}

/** Waits for a child's {done}. */
function done(c: Child, ms: number): Promise<Message> {
  return c.next((m) => 'done' in m, 'a worker to finish', ms);
}

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'concord-sqlite-shared-'));
  url = `sqlite://${join(dir, 'shared.db')}`;
});

afterEach(async () => {
  await Promise.all(children.splice(0).map((c) => c.kill()));
  await Promise.all(coordinators.splice(0).map((c) => c.close()));
});

afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

describe('sqlite: shared locks and semaphores across processes', () => {
  it('4 processes x 300 acquisitions mixing shared and exclusive: the mode rules hold, tokens increase', async () => {
    const perProcess = 300;
    const workers = ['m0', 'm1', 'm2', 'm3'].map((m) => child(['work', url, 'mixed', m, 'rw', String(perProcess), 'mixed']));
    await Promise.all(workers.map((w) => done(w, 110_000)));
    const intervals = workers.flatMap((w, i) => intervalsOf(`m${String(i)}`, w.messages));
    expect(intervals).toHaveLength(4 * perProcess);
    // Both modes were exercised (about two in three holds are shared).
    const shared = intervals.filter((i) => i.shared).length;
    expect(shared).toBeGreaterThan(0);
    expect(shared).toBeLessThan(intervals.length);
    const result = checkIntervals(intervals, {});
    expect(result.violations.slice(0, 5)).toEqual([]);
    expect(result.ok).toBe(true);
    expect(await Promise.all(workers.map((w) => w.exited))).toEqual([0, 0, 0, 0]);
  }, 120_000);

  it('a semaphore of limit 3 under 6 processes: never more than 3 holders, and a SIGKILLed holder’s permit frees within its TTL', async () => {
    const ttl = 5000;
    const ns = 'semaphore';
    // Connected before the others start: opening the file while five processes write to it can take seconds.
    const observer = await connect(url, { namespace: ns, member: 'observer' });
    coordinators.push(observer);
    const holder = child(['hold', url, ns, 'killed', 'pool', String(ttl), 'semaphore:3']);
    const acquired = await holder.next((m) => 'acquired' in m, 'the holder to acquire a permit');
    const perProcess = 150;
    const workers = ['p0', 'p1', 'p2', 'p3', 'p4'].map((m) => child(['work', url, ns, m, 'pool', String(perProcess), 'semaphore:3']));
    // The workers are under way, one permit short, when the holder dies.
    let seen = 0;
    await workers[0]?.next((m) => 'start' in m && ++seen >= 20, 'the workers to get going');
    const killedAt = process.hrtime.bigint();
    holder.process.kill('SIGKILL');
    await holder.exited;

    const freed = await eventually(
      async () => (await observer.semaphore('pool', { limit: 3 }).holders()).some((h) => h.member === 'killed'),
      (held) => !held,
      ttl,
      'the killed holder’s permit to free',
    );
    expect(freed).toBe(false);
    const freedMs = Number(process.hrtime.bigint() - killedAt) / 1e6;
    expect(freedMs).toBeLessThan(ttl);

    await Promise.all(workers.map((w) => done(w, 110_000)));
    const intervals = workers.flatMap((w, i) => intervalsOf(`p${String(i)}`, w.messages));
    expect(intervals).toHaveLength(5 * perProcess);
    // The killed holder held from its grant until SIGKILL was sent (nothing may take its permit before it dies).
    intervals.push({
      client: 'killed',
      token: BigInt(String(acquired.token)),
      start: BigInt(String(acquired.at)),
      end: killedAt,
      shared: true,
      asked: BigInt(String(acquired.asked)),
    });
    const result = checkIntervals(intervals, { limit: 3 });
    expect(result.violations.slice(0, 5)).toEqual([]);
    expect(result.ok).toBe(true);
    expect(await Promise.all(workers.map((w) => w.exited))).toEqual([0, 0, 0, 0, 0]);
    expect(await observer.semaphore('pool', { limit: 3 }).holders()).toEqual([]);
  }, 120_000);
});
