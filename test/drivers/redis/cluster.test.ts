/**
 * redis+cluster:// on a local Redis Cluster of 3 masters and 3 replicas (test/support/redis-cluster.ts): the
 * conformance suite, and the url's own cases. A faulty coordinator reaches the master of its namespace's slot through
 * a fault proxy named as the url's only node (a node of the url that serves the slot is used by that address).
 */
import { inspect } from 'node:util';
import { describe, expect, it } from 'vitest';
import { ConcordError, connect } from '../../../src/index.js';
import { driver } from '../../../drivers/redis/index.js';
import { FaultProxy } from '../../support/proxy.js';
import { freePort } from '../../support/servers.js';
import { redisClusterAvailable, startRedisCluster, type RedisCluster } from '../../support/redis-cluster.js';
import { describeConformance } from '../../conformance/suite.js';

const availability = redisClusterAvailable();

describe.skipIf(!availability.ok)(`redis cluster${availability.ok ? '' : ` (skipped: ${availability.reason})`}`, () => {
  let cluster: RedisCluster | undefined;
  const proxies: FaultProxy[] = [];
  const running = (): RedisCluster => {
    if (!cluster) throw new Error('the cluster is not running');
    return cluster;
  };
  describeConformance({
    name: 'redis-cluster',
    descriptor: driver,
    async setup() {
      cluster = await startRedisCluster();
    },
    async teardown() {
      await Promise.all(proxies.splice(0).map((p) => p.close()));
      await cluster?.stop();
    },
    url: () => running().url,
    shortTtlMs: 750,
    detectionDelayMs: driver.crashDetection.delayMs,
    async connectFaulty(options) {
      const own = running();
      const master = await own.masterOf(await own.slotOf(`{${options.namespace ?? 'default'}}:ss`));
      const proxy = await FaultProxy.start({ host: master.host, port: master.port });
      proxies.push(proxy);
      const coordinator = await connect(`redis+cluster://127.0.0.1:${String(proxy.port)}`, options);
      return {
        coordinator,
        disconnect: () => {
          proxy.cut();
        },
        reconnect: () => {
          proxy.pass();
        },
      };
    },
  });
});

describe('redis+cluster urls', () => {
  it('refuses what a cluster url cannot mean, naming the parameter and never the password', async () => {
    const port = await freePort();
    for (const [url, naming] of [
      [`redis+cluster://:pw@127.0.0.1:${port}/2`, 'path'],
      [`redis+cluster://:pw@127.0.0.1:${port}?db=1`, 'db'],
      [`redis+cluster://:pw@127.0.0.1:${port}?sentinelPassword=x`, 'sentinelPassword'],
      [`redis+cluster://:pw@127.0.0.1:${port}?ca=/nowhere.pem`, 'ca'],
      [`redis+cluster://:pw@127.0.0.1:${port}?bogus=1`, 'bogus'],
      [`redis+cluster://:pw@127.0.0.1:${port},127.0.0.1:x`, 'x'],
    ] as const) {
      const error = await connect(url, { member: 'x' }).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(error, url).toBeInstanceOf(ConcordError);
      expect((error as ConcordError).code, url).toBe('ERR_INVALID_URL');
      expect((error as Error).message, url).toContain(naming);
      expect(inspect(error, { depth: 10 }), url).not.toContain(':pw');
    }
    // Nothing listens: a connection error that names no password.
    const error = await connect(`redis+cluster://:pw@127.0.0.1:${port}`, { member: 'x', connectTimeoutMs: 3000 }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect((error as ConcordError).code).toBe('ERR_CONNECTION');
    expect(inspect(error, { depth: 10 })).not.toContain(':pw@');
  });
});

describe.skipIf(!availability.ok)('redis cluster specifics', () => {
  it('spreads namespaces over the masters, redacts the url, and finds the slot through any node of the url', async () => {
    const own = await startRedisCluster();
    try {
      const masters = new Set<number>();
      const open = [];
      for (const namespace of ['a', 'b', 'c', 'd', 'e', 'f', 'g', 'h']) {
        masters.add((await own.masterOf(await own.slotOf(`{${namespace}}:ss`))).port);
        // The url names one node, a replica maybe: the slot's master is found through it.
        const node = own.nodes[open.length % own.nodes.length];
        if (!node) throw new Error('no node');
        const c = await connect(`redis+cluster://default:s3cret-pw@127.0.0.1:${String(node.port)}`, { member: namespace, namespace });
        expect(c.url).not.toContain('s3cret-pw');
        open.push(c);
        const held = await c.lock('l').acquire();
        const admin = await own.admin(await own.masterOf(await own.slotOf(`{${namespace}}:ss`)));
        expect(await admin.hget(`{${namespace}}:l:lock:l`, 'm')).toBe(namespace);
        admin.disconnect();
        await held.release();
      }
      expect(masters.size).toBeGreaterThan(1);
      await Promise.all(open.map((c) => c.close()));
    } finally {
      await own.stop();
    }
  }, 60_000);
});
