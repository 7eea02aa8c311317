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
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Redis } from 'ioredis';
import { findBinary, freePort, LOOPBACK, logTail, tcpExchange } from './servers.js';

export interface ClusterNode {
  readonly host: string;
  readonly port: number;
  readonly dir: string;
  readonly running: boolean;
  /** SIGKILL, waits for exit; the folder (and nodes.conf) stays. */
  kill(): Promise<void>;
  /** Starts again on the same port and waits until it answers PING. */
  restart(): Promise<void>;
}

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

const live = new Set<ChildProcess>();
let hooked = false;

function killAll(): void {
  for (const child of live) {
    try {
      if (child.pid !== undefined) process.kill(child.pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
  live.clear();
}

class Node implements ClusterNode {
  readonly host = LOOPBACK;
  #child: ChildProcess | undefined;
  #exited: Promise<void> = Promise.resolve();

  constructor(
    readonly port: number,
    readonly dir: string,
    readonly nodeTimeoutMs: number,
    readonly bin: string,
  ) {}

  get running(): boolean {
    return this.#child !== undefined;
  }

  async start(): Promise<void> {
    if (!hooked) {
      hooked = true;
      process.on('exit', killAll);
    }
    const log = path.join(this.dir, 'server.log');
    const out = fs.openSync(log, 'a');
    const child = spawn(
      this.bin,
      [
        '--port',
        String(this.port),
        '--bind',
        LOOPBACK,
        '--dir',
        this.dir,
        '--daemonize',
        'no',
        '--logfile',
        '',
        '--save',
        '',
        '--appendonly',
        'no',
        '--cluster-enabled',
        'yes',
        '--cluster-config-file',
        'nodes.conf',
        '--cluster-node-timeout',
        String(this.nodeTimeoutMs),
        // A replica may take over however long it was cut off (restarted nodes too).
        '--cluster-replica-validity-factor',
        '0',
        '--notify-keyspace-events',
        'KEgx',
        '--enable-debug-command',
        'local',
      ],
      { cwd: this.dir, stdio: ['ignore', out, out] },
    );
    fs.closeSync(out);
    this.#child = child;
    live.add(child);
    this.#exited = new Promise<void>((resolve) => {
      child.once('exit', () => {
        live.delete(child);
        if (this.#child === child) this.#child = undefined;
        resolve();
      });
    });
    const deadline = performance.now() + 10_000;
    while (performance.now() < deadline && this.#child === child) {
      const reply = await tcpExchange(this.port, 'PING\r\n', (r) => r.includes('\r\n'));
      if (reply.startsWith('+PONG')) return;
      await sleep(50);
    }
    await this.kill();
    throw new Error(`redis-server (cluster node) on port ${this.port} did not start:\n${logTail(log)}`);
  }

  async kill(): Promise<void> {
    if (this.#child?.pid !== undefined) process.kill(this.#child.pid, 'SIGKILL');
    await this.#exited;
  }

  async restart(): Promise<void> {
    await this.kill();
    await this.start();
  }
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
  const bin = findBinary('redis-server');
  const cli = findBinary('redis-cli');
  if (!bin || !cli) throw new Error('redis-server and redis-cli not found: apt-get install -y redis-server redis-tools');
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'concord-redis-cluster-'));
  const nodes: Node[] = [];
  for (let i = 0; i < 6; i++) {
    const dir = path.join(root, `node${String(i)}`);
    fs.mkdirSync(dir);
    nodes.push(new Node(await freePort(), dir, options.nodeTimeoutMs ?? 1000, bin));
  }
  const stop = async (): Promise<void> => {
    await Promise.all(nodes.map((n) => n.kill()));
    if (!process.env.CONCORD_KEEP_TMP) fs.rmSync(root, { recursive: true, force: true });
  };
  try {
    await Promise.all(nodes.map((n) => n.start()));
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
