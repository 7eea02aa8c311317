/**
 * etcd shared locks and semaphores with real processes on one server: 4 processes x 300 acquisitions mixing shared
 * and exclusive holds of one lock, and a semaphore of limit 3 under 6 processes, one of them a holder killed with
 * SIGKILL. Each hold is an interval on CLOCK_MONOTONIC (process.hrtime.bigint(), comparable across the processes of
 * one host); the history is checked for the mode rules, the limit and the tokens.
 */
import { randomBytes } from 'node:crypto';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { connect, type Coordinator } from '../../../src/index.js';
import { driver } from '../../../drivers/etcd/index.js';
import { Child } from '../../support/child.js';
import { requireServer, startEtcd, type ServerHandle } from '../../support/servers.js';
import { finishSemaphoreLoad, LOCK_CHILD, runMixed, startSemaphoreLoad } from '../../support/shared-load.js';
import { eventually } from '../../support/wait.js';

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
      await runMixed(child, server.url, ns);
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
      const load = await startSemaphoreLoad(child, server.url, ns, ttl, 80);
      const { holder } = load;
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

      await finishSemaphoreLoad(load, killedAt);
      expect(await observer.semaphore('pool', { limit: 3 }).holders()).toEqual([]);
      expect(await observer.locks()).toEqual([]);
    }, 120_000);
  },
);
