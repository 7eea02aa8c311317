/**
 * The multi-process loads of the shared-lock fault tests, the same on every driver: 4 processes mixing shared and
 * exclusive holds of one lock, and 5 processes taking permits of a semaphore of limit 3 beside a holder the test kills.
 * Each hold a `work` child (lock-child.ts) prints is an interval on CLOCK_MONOTONIC, checked with checkIntervals.
 */
import { fileURLToPath } from 'node:url';
import { expect } from 'vitest';
import { Child, type Message } from './child.js';
import { checkIntervals, type HoldInterval } from './history.js';

export const LOCK_CHILD = fileURLToPath(new URL('./lock-child.ts', import.meta.url));

/** The holds a `work` child printed, as intervals. */
export function intervalsOf(client: string, messages: readonly Message[]): HoldInterval[] {
  return messages.filter((m) => 'start' in m).map((m) => holdOf(client, m, BigInt(String(m.end))));
}

/** One hold a child printed ({start, end, ...} from work, {acquired, at, ...} from hold), ending at `end`. */
function holdOf(client: string, m: Message, end: bigint): HoldInterval {
  return {
    client,
    token: BigInt(String(m.token)),
    start: BigInt(String('start' in m ? m.start : m.at)),
    end,
    shared: m.shared === true,
    ...(typeof m.asked === 'string' ? { asked: BigInt(m.asked) } : {}),
  };
}

/** Waits for a child's {done}. */
export function done(c: Child, ms: number): Promise<Message> {
  return c.next((m) => 'done' in m, 'a worker to finish', ms);
}

function expectClean(intervals: readonly HoldInterval[], limit?: number): void {
  const result = checkIntervals(intervals, limit === undefined ? {} : { limit });
  expect(result.violations.slice(0, 5)).toEqual([]);
  expect(result.ok).toBe(true);
}

/** 4 processes x `perProcess` holds of lock 'rw' in `ns`, two in three shared: the mode rules hold, tokens increase. */
export async function runMixed(spawn: (args: string[]) => Child, url: string, ns: string, perProcess = 300): Promise<void> {
  const workers = ['m0', 'm1', 'm2', 'm3'].map((m) => spawn(['work', url, ns, m, 'rw', String(perProcess), 'mixed']));
  await Promise.all(workers.map((w) => done(w, 110_000)));
  const intervals = workers.flatMap((w, i) => intervalsOf(`m${String(i)}`, w.messages));
  expect(intervals).toHaveLength(4 * perProcess);
  // Both modes were exercised.
  const shared = intervals.filter((i) => i.shared).length;
  expect(shared).toBeGreaterThan(0);
  expect(shared).toBeLessThan(intervals.length);
  expectClean(intervals);
  expect(await Promise.all(workers.map((w) => w.exited))).toEqual([0, 0, 0, 0]);
}

/** A semaphore load under way: a holder of one permit (to be killed) and 5 workers, one permit short. */
export interface SemaphoreLoad {
  readonly holder: Child;
  /** The holder's {acquired}. */
  readonly acquired: Message;
  readonly workers: readonly Child[];
  readonly perProcess: number;
}

/** Starts the holder of semaphore 'pool' (limit 3, session TTL `ttlMs`) and 5 workers, and waits until they work. */
export async function startSemaphoreLoad(
  spawn: (args: string[]) => Child,
  url: string,
  ns: string,
  ttlMs: number,
  perProcess: number,
): Promise<SemaphoreLoad> {
  const holder = spawn(['hold', url, ns, 'killed', 'pool', String(ttlMs), 'semaphore:3']);
  const acquired = await holder.next((m) => 'acquired' in m, 'the holder to acquire a permit');
  const workers = ['p0', 'p1', 'p2', 'p3', 'p4'].map((m) => spawn(['work', url, ns, m, 'pool', String(perProcess), 'semaphore:3']));
  let seen = 0;
  await workers[0]?.next((m) => 'start' in m && ++seen >= 20, 'the workers to get going');
  return { holder, acquired, workers, perProcess };
}

/**
 * Waits for the workers and checks the whole history: never more than 3 holders, tokens increasing. The killed holder
 * counts as holding from its grant until `killedAt` (nothing may take its permit before it dies).
 */
export async function finishSemaphoreLoad(load: SemaphoreLoad, killedAt: bigint): Promise<void> {
  await Promise.all(load.workers.map((w) => done(w, 110_000)));
  const intervals = load.workers.flatMap((w, i) => intervalsOf(`p${String(i)}`, w.messages));
  expect(intervals).toHaveLength(load.workers.length * load.perProcess);
  intervals.push(holdOf('killed', load.acquired, killedAt));
  expectClean(intervals, 3);
  expect(await Promise.all(load.workers.map((w) => w.exited))).toEqual(load.workers.map(() => 0));
}
