/**
 * etcd shared locks and semaphores with real processes on one server: 4 processes x 300 acquisitions mixing shared
 * and exclusive holds of one lock, and a semaphore of limit 3 under 6 processes, one of them a holder killed with
 * SIGKILL. Each hold is an interval on CLOCK_MONOTONIC (process.hrtime.bigint(), comparable across the processes of
 * one host); the history is checked for the mode rules, the limit and the tokens.
 */
import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { connect, type Coordinator } from '../../../src/index.js';
import { driver } from '../../../drivers/etcd/index.js';
import { Child, type Message } from '../../support/child.js';
import { checkIntervals, type HoldInterval } from '../../support/history.js';
import { requireServer, startEtcd, type ServerHandle } from '../../support/servers.js';
import { eventually } from '../../support/wait.js';

const LOCK_CHILD = fileURLToPath(new URL('../../support/lock-child.ts', import.meta.url));

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
      asked: typeof m.asked === 'string' ? BigInt(m.asked) : undefined,
    }));
}

function done(c: Child, ms: number): Promise<Message> {
  return c.next((m) => 'done' in m, 'a worker to finish', ms);
}

const availability = requireServer('etcd');

describe.skipIf(!availability.ok)(
  `etcd: shared locks and semaphores across processes${availability.ok ? '' : ` (skipped: ${availability.reason})`}`,
  () => {
    let server: ServerHandle;
    const children: Child[] = [];
    const coordinators: Coordinator[] = [];

    const child = (args: string[]): Child => {
      const c = new Child(LOCK_CHILD, args);
      children.push(c);
      return c;
    };
    const namespace = (): string => `s${randomBytes(5).toString('hex')}`;

    beforeAll(async () => {
      server = await startEtcd();
    });
    afterEach(async () => {
      await Promise.all(children.splice(0).map((c) => c.kill()));
      await Promise.all(coordinators.splice(0).map((c) => c.close()));
    });
    afterAll(async () => {
      await server.stop();
    });

    it('4 processes x 300 acquisitions mixing shared and exclusive: the mode rules hold, tokens increase', async () => {
      const ns = namespace();
      const perProcess = 300;
      const workers = ['m0', 'm1', 'm2', 'm3'].map((m) => child(['work', server.url, ns, m, 'rw', String(perProcess), 'mixed']));
      await Promise.all(workers.map((w) => done(w, 110_000)));
      const intervals = workers.flatMap((w, i) => intervalsOf(`m${String(i)}`, w.messages));
      expect(intervals).toHaveLength(4 * perProcess);
      // Both modes were exercised (about two in three holds are shared).
      const shared = intervals.filter((i) => i.shared).length;
      expect(shared).toBeGreaterThan(0);
      expect(shared).toBeLessThan(intervals.length);
      const result = checkIntervals(intervals);
      expect(result.violations.slice(0, 5)).toEqual([]);
      expect(result.ok).toBe(true);
      expect(await Promise.all(workers.map((w) => w.exited))).toEqual([0, 0, 0, 0]);
      // Nothing left in the line.
      const observer = await connect(server.url, { namespace: ns, member: 'observer' });
      coordinators.push(observer);
      expect(await observer.locks()).toEqual([]);
    }, 120_000);

    it('a semaphore of limit 3 under 6 processes: never more than 3 holders, and a SIGKILLed holder’s permit frees within its TTL', async () => {
      const ttl = 3000;
      const ns = namespace();
      const observer = await connect(server.url, { namespace: ns, member: 'observer' });
      coordinators.push(observer);
      const holder = child(['hold', server.url, ns, 'killed', 'pool', String(ttl), 'semaphore:3']);
      const acquired = await holder.next((m) => 'acquired' in m, 'the holder to acquire a permit');
      const perProcess = 80;
      const workers = ['p0', 'p1', 'p2', 'p3', 'p4'].map((m) =>
        child(['work', server.url, ns, m, 'pool', String(perProcess), 'semaphore:3']),
      );
      // The workers are under way, one permit short, when the holder dies.
      let seen = 0;
      await workers[0]?.next((m) => 'start' in m && ++seen >= 20, 'the workers to get going');
      holder.process.kill('SIGKILL');
      const killedAt = process.hrtime.bigint();
      await holder.exited;
      await eventually(
        async () => (await observer.semaphore('pool', { limit: 3 }).holders()).some((h) => h.member === 'killed'),
        (held) => !held,
        ttl + driver.crashDetection.delayMs + 5000,
        'the killed holder’s permit to free',
      );
      const freedMs = Number(process.hrtime.bigint() - killedAt) / 1e6;
      console.log(`etcd: the killed holder's permit freed ${freedMs.toFixed(0)} ms after the kill (TTL ${ttl} ms)`);
      // The lease expires at most its TTL after its last renewal (before the kill), then etcd's expiry check and the
      // deletion's watch event: the driver's stated detection delay.
      expect(freedMs).toBeLessThan(ttl + driver.crashDetection.delayMs);

      await Promise.all(workers.map((w) => done(w, 110_000)));
      const intervals = workers.flatMap((w, i) => intervalsOf(`p${String(i)}`, w.messages));
      expect(intervals).toHaveLength(5 * perProcess);
      // The killed holder held from its grant until it was killed (nothing may take its permit before it dies).
      intervals.push({
        client: 'killed',
        token: BigInt(String(acquired.token)),
        start: BigInt(String(acquired.at)),
        end: killedAt,
        shared: true,
      });
      const result = checkIntervals(intervals, { limit: 3 });
      expect(result.violations.slice(0, 5)).toEqual([]);
      expect(result.ok).toBe(true);
      expect(await Promise.all(workers.map((w) => w.exited))).toEqual([0, 0, 0, 0, 0]);
      expect(await observer.semaphore('pool', { limit: 3 }).holders()).toEqual([]);
      expect(await observer.locks()).toEqual([]);
    }, 120_000);
  },
);
