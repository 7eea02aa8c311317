/**
 * ?replicas=N: a grant counts once N replicas have it (WAIT). Refusals before any I/O; behind Sentinel, a grant (and a
 * hand-off) is on the replica when acquire() resolves, a stalled replica keeps a grant from being reported, and a
 * failover under load with the replication link cut just before the master dies grants no lock twice.
 */
import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import { describe, expect, it } from 'vitest';
import { ConcordError, connect, type Coordinator } from '../../../src/index.js';
import { FailoverLoad, tokenOn } from '../../support/failover-load.js';
import { FaultProxy } from '../../support/proxy.js';
import { freePort, requireServer, startRedis, startRedisReplica, startSentinel, type ServerHandle } from '../../support/servers.js';
import { eventually } from '../../support/wait.js';

const availability = requireServer('redis');

async function codeOf(promise: Promise<unknown>): Promise<[string | undefined, string]> {
  try {
    await promise;
    return [undefined, ''];
  } catch (error) {
    return [(error as ConcordError).code, (error as Error).message];
  }
}

describe('redis ?replicas urls', () => {
  it('is refused, by name and before any I/O, where it cannot mean anything, and unless an integer of 1 or more', async () => {
    const port = await freePort();
    for (const [url, naming] of [
      [`redis://:pw@127.0.0.1:${port}?replicas=1`, 'replicas'],
      [`rediss://:pw@127.0.0.1:${port}?replicas=1`, 'replicas'],
      [`redis+sentinel://:pw@127.0.0.1:${port}/m?replicas=0`, 'replicas'],
      [`redis+sentinel://:pw@127.0.0.1:${port}/m?replicas=1.5`, 'replicas'],
      [`redis+sentinel://:pw@127.0.0.1:${port}/m?replicas=`, 'replicas'],
      [`redis+cluster://:pw@127.0.0.1:${port}?replicas=-1`, 'replicas'],
      [`redis+cluster://:pw@127.0.0.1:${port}?replicas=all`, 'replicas'],
    ] as const) {
      const [code, message] = await codeOf(connect(url, { member: 'x', connectTimeoutMs: 2000 }));
      expect(code, url).toBe('ERR_INVALID_URL');
      expect(message, url).toContain(naming);
      expect(message, url).not.toContain('pw');
    }
  });
});

/** A master, a replica that replicates through a fault proxy, and a Sentinel watching them. */
interface Setup {
  readonly master: ServerHandle;
  readonly proxy: FaultProxy;
  readonly replica: ServerHandle;
  readonly sentinel: ServerHandle;
  readonly masterAdmin: Redis;
  readonly replicaAdmin: Redis;
  readonly sentinelAdmin: Redis;
  stop(): Promise<void>;
}

async function replicaSynced(admin: Redis): Promise<void> {
  await eventually(
    () => admin.info('replication'),
    (info) => info.includes('master_link_status:up'),
    20_000,
    'the replica to sync',
  );
}

async function startSetup(): Promise<Setup> {
  const master = await startRedis();
  const proxy = await FaultProxy.start({ host: master.host, port: master.port });
  const replica = await startRedisReplica({ host: proxy.host, port: proxy.port });
  // Sentinel re-points a replica it sees replicating from anywhere but the master (here: through the proxy) once
  // failover-timeout has passed; that would route replication around the proxy, so the timeout outlasts the test.
  const sentinel = await startSentinel('m', { host: master.host, port: master.port }, { downAfterMs: 500, failoverTimeoutMs: 120_000 });
  const masterAdmin = new Redis({ host: master.host, port: master.port, lazyConnect: true });
  const replicaAdmin = new Redis({ host: replica.host, port: replica.port, lazyConnect: true });
  const sentinelAdmin = new Redis({ host: sentinel.host, port: sentinel.port, lazyConnect: true });
  const setup: Setup = {
    master,
    proxy,
    replica,
    sentinel,
    masterAdmin,
    replicaAdmin,
    sentinelAdmin,
    async stop() {
      masterAdmin.disconnect();
      replicaAdmin.disconnect();
      sentinelAdmin.disconnect();
      await sentinel.stop();
      await replica.stop();
      await proxy.close();
      await master.stop();
    },
  };
  try {
    await Promise.all([masterAdmin.connect(), replicaAdmin.connect(), sentinelAdmin.connect()]);
    await replicaSynced(replicaAdmin);
    await eventually(
      async () => (await sentinelAdmin.call('SENTINEL', 'REPLICAS', 'm')) as string[][],
      (replicas) => replicas.some((fields) => fields.join(' ').includes(`port ${replica.port}`)),
      30_000,
      'Sentinel to know the replica',
    );
  } catch (error) {
    await setup.stop();
    throw error;
  }
  return setup;
}

describe.skipIf(!availability.ok)(`redis ?replicas behind Sentinel${availability.ok ? '' : ` (skipped: ${availability.reason})`}`, () => {
  it('a grant, a hand-off to a waiter and a release are on the replica when they resolve; a stalled replica holds a grant back', async () => {
    const setup = await startSetup();
    const namespace = `v${randomBytes(5).toString('hex')}`;
    const open: Coordinator[] = [];
    try {
      const url = `${setup.sentinel.url}?replicas=1`;
      const a = await connect(url, { member: 'a', namespace, sessionTtlMs: 12_000 });
      const b = await connect(url, { member: 'b', namespace, sessionTtlMs: 12_000 });
      open.push(a, b);
      const first = await a.lock('l').acquire();
      // Read at once, with nothing in between that could let replication catch up by chance: it is already there.
      expect(await tokenOn(setup.replicaAdmin, namespace, 'l')).toBe(first.token.toString());
      const waiting = b.lock('l').acquire({ timeoutMs: 10_000 });
      await eventually(
        async () => (await a.locks({ prefix: 'l' })).find((lock) => lock.name === 'l')?.waiting ?? 0,
        (n) => n === 1,
        10_000,
        'b to queue',
      );
      await first.release();
      const handed = await waiting;
      expect(await tokenOn(setup.replicaAdmin, namespace, 'l')).toBe(handed.token.toString());
      await handed.release();
      expect(await tokenOn(setup.replicaAdmin, namespace, 'l')).toBeNull();

      // A permit too.
      const permit = await a.semaphore('s', { limit: 2 }).acquire();
      const held = await setup.replicaAdmin.hgetall(`{${namespace}}:l:semaphore:s`);
      expect(Object.values(held).some((v) => v.startsWith(`${permit.token.toString()} `))).toBe(true);
      await permit.release();

      // The replica stops answering: the master grants, but no acquisition may report it.
      setup.replica.pause();
      try {
        const [code] = await codeOf(a.lock('stalled').acquire({ timeoutMs: 3000 }));
        expect(code).toBe('ERR_LOCK_TIMEOUT');
        expect(
          await a
            .lock('stalled')
            .tryAcquire()
            .then(String, (error: unknown) => (error as ConcordError).code),
        ).toBe('ERR_CONNECTION');
      } finally {
        setup.replica.resume();
      }
      // What the master granted meanwhile is given back once the replica is back, and the lock is usable again.
      await eventually(
        () => tokenOn(setup.masterAdmin, namespace, 'stalled'),
        (token) => token === null,
        20_000,
        'the unconfirmed grant to be cancelled',
      );
      const later = await b.lock('stalled').acquire({ timeoutMs: 10_000 });
      expect(await tokenOn(setup.replicaAdmin, namespace, 'stalled')).toBe(later.token.toString());
      await later.release();
    } finally {
      await Promise.all(open.map((c) => c.close()));
      await setup.stop();
    }
  }, 60_000);

  for (const replicas of [true, false]) {
    it(`a failover under load ${replicas ? 'with ?replicas=1 grants no lock twice' : 'without ?replicas (a double grant may be seen)'}`, async () => {
      const setup = await startSetup();
      const namespace = `v${randomBytes(5).toString('hex')}`;
      const url = replicas ? `${setup.sentinel.url}?replicas=1` : setup.sentinel.url;
      let load: FailoverLoad | undefined;
      let extra: ServerHandle | undefined;
      try {
        // Short: with ?replicas a grant the replica got just before the cut, but whose acknowledgement was cut off, is
        // confirmed by nobody, and the waiter gives it back when it gives up, which hands the lock on where the replica
        // cannot see it.
        const running = await FailoverLoad.connect(url, namespace, 5000);
        load = running;
        await eventually(
          () => running.grants,
          (n) => n >= 40,
          20_000,
          'grants before the failover',
        );
        // Replication stops just before the master dies: what it grants from now on never reaches the replica.
        setup.proxy.blackhole();
        running.cut();
        await eventually(
          async () =>
            Promise.all(
              running.names.map(async (name) => [
                await tokenOn(setup.masterAdmin, namespace, name),
                await tokenOn(setup.replicaAdmin, namespace, name),
              ]),
            ),
          (pairs) => pairs.some(([onMaster, onReplica]) => onMaster !== null && onMaster !== onReplica),
          20_000,
          'a grant the replica never saw',
        );
        setup.masterAdmin.disconnect();
        await setup.master.kill();
        await eventually(
          async () => (await setup.sentinelAdmin.call('SENTINEL', 'GET-MASTER-ADDR-BY-NAME', 'm')) as [string, string] | null,
          (address) => Number(address?.[1]) === setup.replica.port,
          30_000,
          'Sentinel to promote the replica',
        );
        running.promoted();
        // The promoted master gets a replica of its own, so grants can be confirmed again.
        extra = await startRedisReplica({ host: setup.replica.host, port: setup.replica.port });
        const after = running.grants;
        await eventually(
          () => running.grants,
          (n) => n >= after + 20,
          40_000,
          'grants after the failover',
        );
        await running.stop();
        running.check(replicas);
      } finally {
        await load?.close();
        await extra?.stop();
        await setup.stop();
      }
    }, 90_000);
  }
});
