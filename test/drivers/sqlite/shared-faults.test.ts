/**
 * SQLite shared locks and semaphores with real processes sharing one database file: 4 processes x 300 acquisitions
 * mixing shared and exclusive holds of one lock, and a semaphore of limit 3 under 6 processes, one of them a holder
 * killed with SIGKILL. Each hold is an interval on CLOCK_MONOTONIC (process.hrtime.bigint(), comparable across the
 * processes of one host); the history is checked for the mode rules, the limit and the tokens.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { connect, type Coordinator } from '../../../src/index.js';
import { Child } from '../../support/child.js';
import { finishSemaphoreLoad, LOCK_CHILD, runMixed, startSemaphoreLoad } from '../../support/shared-load.js';
import { eventually } from '../../support/wait.js';

let dir = '';
let url = '';
const children: Child[] = [];
const coordinators: Coordinator[] = [];

function child(args: string[]): Child {
  const c = new Child(LOCK_CHILD, args);
  children.push(c);
  return c;
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
    await runMixed(child, url, 'mixed');
  }, 120_000);

  it('a semaphore of limit 3 under 6 processes: never more than 3 holders, and a SIGKILLed holder’s permit frees within its TTL', async () => {
    const ttl = 5000;
    const ns = 'semaphore';
    // Connected before the others start: opening the file while five processes write to it can take seconds.
    const observer = await connect(url, { namespace: ns, member: 'observer' });
    coordinators.push(observer);
    const load = await startSemaphoreLoad(child, url, ns, ttl, 150);
    const { holder } = load;
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

    await finishSemaphoreLoad(load, killedAt);
    expect(await observer.semaphore('pool', { limit: 3 }).holders()).toEqual([]);
  }, 120_000);
});
