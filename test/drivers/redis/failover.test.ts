/**
 * Sentinel failover with replication lag, staged: the replica replicates through a fault proxy, which stops passing
 * anything just before the master grants a lock; the master is then killed and Sentinel promotes the replica, which
 * never saw that grant. The next holder's token must still be larger, and the old holder (whose session did reach the
 * replica) must be told its lock is gone.
 */
import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import { describe, expect, it } from 'vitest';
import { ConcordError, connect, type Coordinator } from '../../../src/index.js';
import { FaultProxy } from '../../support/proxy.js';
import { requireServer, startRedis, startRedisReplica, startSentinel } from '../../support/servers.js';
import { aborted, eventually } from '../../support/wait.js';

const availability = requireServer('redis');

describe.skipIf(!availability.ok)(`redis sentinel failover${availability.ok ? '' : ` (skipped: ${availability.reason})`}`, () => {
  it('a grant the promoted replica never saw: the next token is still larger, and the old holder is told', async () => {
    const namespace = `v${randomBytes(5).toString('hex')}`;
    const master = await startRedis();
    const proxy = await FaultProxy.start({ host: master.host, port: master.port });
    const replica = await startRedisReplica({ host: proxy.host, port: proxy.port });
    const replicaAdmin = new Redis({ host: replica.host, port: replica.port, lazyConnect: true });
    const masterAdmin = new Redis({ host: master.host, port: master.port, lazyConnect: true });
    const open: Coordinator[] = [];
    let sentinelAdmin: Redis | undefined;
    // Sentinel re-points a replica it sees replicating from anywhere but the master (here: through the proxy) once
    // failover-timeout has passed; that would route replication around the proxy, so the timeout outlasts the test.
    const sentinel = await startSentinel('m', { host: master.host, port: master.port }, { downAfterMs: 500, failoverTimeoutMs: 120_000 });
    try {
      await Promise.all([replicaAdmin.connect(), masterAdmin.connect()]);
      sentinelAdmin = new Redis({ host: sentinel.host, port: sentinel.port, lazyConnect: true });
      await sentinelAdmin.connect();
      const admin = sentinelAdmin;
      await eventually(
        () => replicaAdmin.info('replication'),
        (info) => info.includes('master_link_status:up'),
        20_000,
        'the replica to sync',
      );
      await eventually(
        async () => (await admin.call('SENTINEL', 'REPLICAS', 'm')) as string[][],
        (replicas) => replicas.some((fields) => fields.join(' ').includes(`port ${replica.port}`)),
        30_000,
        'Sentinel to know the replica',
      );
      // A TTL longer than the failover can take (Sentinel may need tens of seconds on a loaded host): the session key
      // the replica was sent must still be alive when it is promoted, so only the unreplicated grant is lost.
      const a = await connect(sentinel.url, { member: 'a', namespace, sessionTtlMs: 120_000 });
      open.push(a);
      const first = await a.lock('l').acquire();
      await first.release();
      // Everything so far (the session, the first grant and its release) reached the replica.
      expect(await masterAdmin.call('WAIT', '1', '10000')).toBe(1);
      proxy.blackhole();
      const held = await a.lock('l').acquire();
      expect(held.token).toBeGreaterThan(first.token);
      // Still replicating through the proxy: the grant is stuck there.
      expect(await replicaAdmin.info('replication')).toContain(`master_port:${String(proxy.port)}`);
      masterAdmin.disconnect();
      await master.kill();
      await eventually(
        async () => (await admin.call('SENTINEL', 'GET-MASTER-ADDR-BY-NAME', 'm')) as [string, string] | null,
        (address) => Number(address?.[1]) === replica.port,
        60_000,
        'Sentinel to promote the replica',
      );
      const b = await connect(sentinel.url, { member: 'b', namespace, sessionTtlMs: 30_000 });
      open.push(b);
      const next = await b.lock('l').acquire({ timeoutMs: 20_000 });
      // Never the token the lost grant carried, nor any below it.
      expect(next.token).toBeGreaterThan(held.token);
      const reason = await aborted(held.signal, 30_000);
      expect((reason as ConcordError).code).toBe('ERR_LOCK_LOST');
      // Its session lives on: the promoted replica has it (suspended while the master was gone, then reconnected).
      await eventually(
        () => a.session.state,
        (state) => state === 'connected',
        10_000,
        "a's session to reconnect",
      );
      await held.release();
      expect(await b.lock('l').holder()).toBe('b');
      await next.release();
    } finally {
      await Promise.all(open.map((c) => c.close()));
      replicaAdmin.disconnect();
      masterAdmin.disconnect();
      sentinelAdmin?.disconnect();
      await sentinel.stop();
      await replica.stop();
      await proxy.close();
      await master.stop();
    }
  }, 120_000);
});
