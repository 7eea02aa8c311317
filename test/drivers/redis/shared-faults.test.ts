/**
 * Redis shared locks and semaphores with real processes on one server: 4 processes x 300 acquisitions mixing shared
 * and exclusive holds of one lock, and a semaphore of limit 3 under 6 processes, one of them a holder killed with
 * SIGKILL. Each hold is an interval on CLOCK_MONOTONIC (process.hrtime.bigint(), comparable across the processes of
 * one host); the history is checked for the mode rules, the limit and the tokens.
 */
import { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { connect, type Coordinator } from '../../../src/index.js';
import { driver } from '../../../drivers/redis/index.js';
import { Child } from '../../support/child.js';
import { requireServer, startRedis, type ServerHandle } from '../../support/servers.js';
import { finishSemaphoreLoad, LOCK_CHILD, runMixed, startSemaphoreLoad } from '../../support/shared-load.js';
import { eventually } from '../../support/wait.js';

const availability = requireServer('redis');

describe.skipIf(!availability.ok)(
  `redis: shared locks and semaphores across processes${availability.ok ? '' : ` (skipped: ${availability.reason})`}`,
  () => {
    let server: ServerHandle;
    let admin: Redis;
    const children: Child[] = [];
    const coordinators: Coordinator[] = [];

    const child = (args: string[]): Child => {
      const c = new Child(LOCK_CHILD, args);
      children.push(c);
      return c;
    };

    beforeAll(async () => {
      server = await startRedis();
      admin = new Redis({ host: server.host, port: server.port, lazyConnect: true });
      await admin.connect();
    });
    afterEach(async () => {
      await Promise.all(children.splice(0).map((c) => c.kill()));
      await Promise.all(coordinators.splice(0).map((c) => c.close()));
    });
    afterAll(async () => {
      await admin.quit();
      await server.stop();
    });

    it('4 processes x 300 acquisitions mixing shared and exclusive: the mode rules hold, tokens increase', async () => {
      await runMixed(child, server.url, 'mixed');
      // Nothing left in the line: only the fencing counter.
      expect((await admin.keys('{mixed}:*')).filter((k) => k.includes(':rw'))).toEqual(['{mixed}:f:lock:rw']);
    }, 120_000);

    it('a semaphore of limit 3 under 6 processes: never more than 3 holders, and a SIGKILLed holder’s permit frees within its TTL', async () => {
      const ttl = 3000;
      const ns = 'semaphore';
      const observer = await connect(server.url, { namespace: ns, member: 'observer' });
      coordinators.push(observer);
      const load = await startSemaphoreLoad(child, server.url, ns, ttl, 150);
      const { holder } = load;
      // The killed holder's session key (its value is the member id).
      const sessions = await admin.keys(`{${ns}}:s:*`);
      const members = await Promise.all(sessions.map((k) => admin.get(k)));
      const killedSession = sessions[members.indexOf('killed')] ?? '';
      expect(killedSession).not.toBe('');
      holder.process.kill('SIGKILL');
      const killedAt = process.hrtime.bigint();
      // The killed session expires at most this long after the reply: its TTL counts from its last renewal, up to a
      // third of the TTL before the kill.
      const remainingMs = await admin.pttl(killedSession);
      const expiresBy = process.hrtime.bigint() + BigInt(remainingMs) * 1_000_000n;
      await holder.exited;
      await eventually(
        async () => (await observer.semaphore('pool', { limit: 3 }).holders()).some((h) => h.member === 'killed'),
        (held) => !held,
        ttl + driver.crashDetection.delayMs,
        'the killed holder’s permit to free',
      );
      const freedAt = process.hrtime.bigint();
      expect(remainingMs).toBeGreaterThan(0);
      expect(remainingMs).toBeLessThanOrEqual(ttl);
      // Within the TTL of its last renewal, give or take the driver's stated detection delay (with keyspace
      // notifications, about 100 ms after the session key expires).
      const afterExpiryMs = Number(freedAt - expiresBy) / 1e6;
      console.log(
        `redis: the killed holder's permit freed ${(Number(freedAt - killedAt) / 1e6).toFixed(0)} ms after the kill (TTL ${ttl} ms), ${afterExpiryMs.toFixed(0)} ms after its session expired`,
      );
      expect(afterExpiryMs).toBeLessThan(driver.crashDetection.delayMs);

      await finishSemaphoreLoad(load, killedAt);
      expect(await observer.semaphore('pool', { limit: 3 }).holders()).toEqual([]);
    }, 120_000);
  },
);
