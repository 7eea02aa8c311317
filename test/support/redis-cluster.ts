/**
 * A Redis Cluster for the tests: 3 masters and 3 replicas (`redis-server --cluster-enabled yes`, joined with
 * `redis-cli --cluster create`), each on a free loopback port in a temporary folder of its own, like servers.ts
 * starts single servers. A node can be killed and restarted on its port (it keeps its nodes.conf, so it rejoins as
 * itself), which is how the failover tests take a master away.
 *
 * Every node runs with keyspace notifications for expired and deleted keys on (as an operator would set them in each
 * node's redis.conf): a coordinator turns them on only on the master it talks to, and a promoted replica would
 * otherwise have none.
 */
import { spawnSync } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';
import { Redis } from 'ioredis';
import { findBinary, startRedis, type ServerHandle } from './servers.js';

/** A node of the cluster: a server of its own (servers.ts); kill() keeps its folder and nodes.conf for restart(). */
export type ClusterNode = ServerHandle;

export interface RedisCluster {
  /** `redis+cluster://` listing the three first nodes. */
  readonly url: string;
  readonly nodes: readonly ClusterNode[];
  /** The node serving `slot` as master, by asking a running node. */
  masterOf(slot: number): Promise<ClusterNode>;
  /** The slot of a key (CLUSTER KEYSLOT). */
  slotOf(key: string): Promise<number>;
  /** An admin connection to one node (the caller disconnects it). */
  admin(node: ClusterNode): Promise<Redis>;
  stop(): Promise<void>;
}

export interface RedisClusterOptions {
  /** cluster-node-timeout: how long a master is unreachable before its replica takes over. Default 1000. */
  nodeTimeoutMs?: number;
}

/** Cluster mode on top of startRedis' own flags. */
function clusterArgs(nodeTimeoutMs: number): string[] {
  return [
    '--cluster-enabled',
    'yes',
    '--cluster-config-file',
    'nodes.conf',
    '--cluster-node-timeout',
    String(nodeTimeoutMs),
    // A replica may take over however long it was cut off (restarted nodes too).
    '--cluster-replica-validity-factor',
    '0',
    '--notify-keyspace-events',
    'KEgx',
  ];
}

async function adminOf(node: ClusterNode): Promise<Redis> {
  const client = new Redis({ host: node.host, port: node.port, lazyConnect: true, maxRetriesPerRequest: 1, retryStrategy: () => null });
  client.on('error', () => undefined);
  await client.connect();
  return client;
}

/** Runs `use` on a fresh connection to the first running node that answers. */
async function ask<T>(nodes: readonly ClusterNode[], use: (client: Redis) => Promise<T>): Promise<T> {
  let last: unknown;
  for (const node of nodes) {
    if (!node.running) continue;
    let client: Redis | undefined;
    try {
      client = await adminOf(node);
      return await use(client);
    } catch (error) {
      last = error;
    } finally {
      client?.disconnect();
    }
  }
  throw new Error(`no cluster node answered: ${String(last)}`);
}

/** Whether every running node sees the cluster as whole (all slots served, state ok). */
async function settled(nodes: readonly ClusterNode[]): Promise<boolean> {
  for (const node of nodes) {
    if (!node.running) continue;
    try {
      const info = await ask([node], (c) => c.call('CLUSTER', 'INFO') as Promise<string>);
      if (!info.includes('cluster_state:ok') || !info.includes('cluster_slots_ok:16384')) return false;
    } catch {
      return false;
    }
  }
  return true;
}

/** Waits until every running node reports the cluster ok. */
export async function waitForCluster(nodes: readonly ClusterNode[], ms = 30_000): Promise<void> {
  const deadline = performance.now() + ms;
  while (!(await settled(nodes))) {
    if (performance.now() > deadline) throw new Error(`the Redis cluster did not settle within ${ms} ms`);
    await sleep(100);
  }
}

export function redisClusterAvailable(): { ok: true } | { ok: false; reason: string } {
  if (!findBinary('redis-server') || !findBinary('redis-cli')) {
    return { ok: false, reason: 'redis-server and redis-cli not found: apt-get install -y redis-server redis-tools' };
  }
  return { ok: true };
}

export async function startRedisCluster(options: RedisClusterOptions = {}): Promise<RedisCluster> {
  const cli = findBinary('redis-cli');
  if (!findBinary('redis-server') || !cli)
    throw new Error('redis-server and redis-cli not found: apt-get install -y redis-server redis-tools');
  const args = clusterArgs(options.nodeTimeoutMs ?? 1000);
  const started = await Promise.allSettled(Array.from({ length: 6 }, () => startRedis({ args })));
  const nodes = started.flatMap((s) => (s.status === 'fulfilled' ? [s.value] : []));
  const stop = async (): Promise<void> => {
    await Promise.all(nodes.map((n) => n.stop()));
  };
  try {
    const failed = started.find((s) => s.status === 'rejected');
    if (failed) throw failed.reason;
    const created = spawnSync(
      cli,
      ['--cluster', 'create', ...nodes.map((n) => `${n.host}:${String(n.port)}`), '--cluster-replicas', '1', '--cluster-yes'],
      { encoding: 'utf8', timeout: 60_000 },
    );
    if (created.status !== 0) throw new Error(`redis-cli --cluster create failed: ${created.stdout}${created.stderr}`);
    await waitForCluster(nodes);
    // Every replica attached and in sync, so a failover finds one to promote.
    await ask(nodes, async (c) => {
      const deadline = performance.now() + 30_000;
      for (;;) {
        const lines = ((await c.call('CLUSTER', 'NODES')) as string).trim().split('\n');
        const replicas = lines.filter((l) => / slave /.test(l) || /,slave /.test(l)).length;
        if (replicas === 3 && lines.every((l) => l.includes(' connected'))) return;
        if (performance.now() > deadline) throw new Error(`replicas did not attach:\n${lines.join('\n')}`);
        await sleep(100);
      }
    });
  } catch (error) {
    await stop();
    throw error;
  }
  const byPort = (port: number): ClusterNode => {
    const node = nodes.find((n) => n.port === port);
    if (!node) throw new Error(`no node on port ${String(port)}`);
    return node;
  };
  return {
    url: `redis+cluster://${nodes
      .slice(0, 3)
      .map((n) => `${n.host}:${String(n.port)}`)
      .join(',')}`,
    nodes,
    masterOf: (slot) =>
      ask(nodes, async (c) => {
        const ranges = (await c.call('CLUSTER', 'SLOTS')) as Array<[number, number, [string, number]]>;
        const range = ranges.find(([from, to]) => slot >= from && slot <= to);
        if (!range) throw new Error(`slot ${String(slot)} is not served`);
        return byPort(range[2][1]);
      }),
    slotOf: (key) => ask(nodes, async (c) => Number(await c.call('CLUSTER', 'KEYSLOT', key))),
    admin: adminOf,
    stop,
  };
}
