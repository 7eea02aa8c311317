/**
 * The drivers the chaos campaign runs on: one entry each, saying how to start the backend, which faults apply, the
 * session TTL the clients use and how long a dead member may take to leave. Adding a driver is one entry here, e.g.
 *
 *   redis: served({ kind: 'redis', scheme: 'redis', start: () => startRedis({ persistence: true }), ttlMs: 1000, detectionMs: 500, serverFaults: ['restart-server', 'pause-server'] }),
 *
 * Every backend restarts durably: Redis runs with appendonly yes and appendfsync always, etcd and ZooKeeper keep their
 * data folders, SQLite is a file. Each client reaches a network backend through fault proxies of its own (one per
 * server), so cutting one client's link cuts nobody else's.
 */
import Database from 'better-sqlite3';
import * as path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { FaultProxy } from '../support/proxy.js';
import {
  mysqlUrl,
  postgresUrl,
  requireServer,
  startEtcdCluster,
  startRedis,
  startRedisReplica,
  startSentinel,
  startZooKeeperEnsemble,
  tcpExchange,
  type Availability,
  type ServerHandle,
  type ServerKind,
} from '../support/servers.js';
import { CLIENT_FAULTS, LINK_FAULTS, type FaultKind, type ServerFault } from './schedule.js';

/** A started backend, as the campaign and its nemesis use it. */
export interface Backend {
  /** Members of the ensemble (1 for a single server or a file). */
  readonly members: number;
  /** The URL client `index` connects with (through its own proxies, created on first use). */
  urlFor(index: number): Promise<string>;
  /** Client `index`'s fault proxies (none for a driver without a network). */
  links(index: number): readonly FaultProxy[];
  /** SIGKILL the server (every member), start it again after `downMs`. */
  restartServer?(downMs: number): Promise<void>;
  /** SIGSTOP the server for `ms`. */
  pauseServer?(ms: number): Promise<void>;
  /** SIGKILL one member (the leader, or the one at `pick`), restart it after `downMs`; says which. */
  killMember?(leader: boolean, pick: number, downMs: number): Promise<string>;
  /** SIGKILL the master, wait until the replica is promoted, restart the old master after `downMs` (as a replica). */
  failover?(downMs: number): Promise<string>;
  /** Hold the database's write lock for `ms`, as a slow writer in another process would. */
  stallDb?(ms: number): Promise<void>;
  close(): Promise<void>;
}

export interface DriverSpec {
  /** Servers in the backend's ensemble (1 for a single server or a file). */
  readonly members: number;
  /** Session TTL of the clients: short, to make many expiries, but at the backend's minimum or above. */
  readonly ttlMs: number;
  /** Worst extra delay, past the TTL, before a dead member's leave is published (as documented per driver). */
  readonly detectionMs: number;
  readonly faults: readonly FaultKind[];
  available(): Availability;
  /** Starts the backend; `dir` is the campaign's folder. */
  start(dir: string): Promise<Backend>;
}

/** Per-client proxies in front of every server of a network backend, and the URL through them. */
class Links {
  readonly #proxies = new Map<number, FaultProxy[]>();
  readonly #targets: () => ReadonlyArray<{ host: string; port: number }>;
  readonly #scheme: string;

  constructor(scheme: string, targets: () => ReadonlyArray<{ host: string; port: number }>) {
    this.#scheme = scheme;
    this.#targets = targets;
  }

  async urlFor(index: number): Promise<string> {
    let proxies = this.#proxies.get(index);
    if (!proxies) {
      proxies = await Promise.all(this.#targets().map((t) => FaultProxy.start({ host: t.host, port: t.port })));
      this.#proxies.set(index, proxies);
    }
    return `${this.#scheme}://${proxies.map((p) => `${p.host}:${p.port}`).join(',')}`;
  }

  links(index: number): readonly FaultProxy[] {
    return this.#proxies.get(index) ?? [];
  }

  async close(): Promise<void> {
    await Promise.all([...this.#proxies.values()].flat().map((p) => p.close()));
    this.#proxies.clear();
  }
}

interface ServedOptions {
  readonly kind: ServerKind;
  readonly scheme: string;
  readonly start: () => Promise<ServerHandle>;
  readonly ttlMs: number;
  readonly detectionMs: number;
  readonly serverFaults: readonly ServerFault[];
}

/** A driver whose backend is one server process the campaign starts. */
function served(options: ServedOptions): DriverSpec {
  return {
    members: 1,
    ttlMs: options.ttlMs,
    detectionMs: options.detectionMs,
    faults: [...CLIENT_FAULTS, ...LINK_FAULTS, ...options.serverFaults],
    available: () => requireServer(options.kind),
    async start() {
      const server = await options.start();
      const links = new Links(options.scheme, () => [server]);
      return {
        members: 1,
        urlFor: (index) => links.urlFor(index),
        links: (index) => links.links(index),
        async restartServer(downMs) {
          await server.kill();
          await sleep(downMs);
          await server.restart();
        },
        async pauseServer(ms) {
          server.pause();
          try {
            await sleep(ms);
          } finally {
            server.resume();
          }
        },
        async close() {
          await links.close();
          await server.stop();
        },
      };
    },
  };
}

/** A started ensemble (etcd's or ZooKeeper's), as the nemesis needs it. */
interface Quorum {
  readonly members: readonly ServerHandle[];
  /** Index of the member that leads now; waits while an election is in progress. */
  leader(): Promise<number>;
  stop(): Promise<void>;
}

interface EnsembleOptions {
  readonly kind: ServerKind;
  readonly scheme: string;
  readonly size: number;
  readonly start: (size: number) => Promise<Quorum>;
  readonly ttlMs: number;
  readonly detectionMs: number;
  readonly serverFaults: readonly ServerFault[];
}

/** A driver whose backend is an ensemble of servers (a quorum), each client with a proxy per member. */
function ensemble(options: EnsembleOptions): DriverSpec {
  return {
    members: options.size,
    ttlMs: options.ttlMs,
    detectionMs: options.detectionMs,
    faults: [...CLIENT_FAULTS, ...LINK_FAULTS, ...options.serverFaults],
    available: () => requireServer(options.kind),
    async start() {
      const cluster = await options.start(options.size);
      const links = new Links(options.scheme, () => cluster.members);
      return {
        members: cluster.members.length,
        urlFor: (index) => links.urlFor(index),
        links: (index) => links.links(index),
        async restartServer(downMs) {
          await Promise.all(cluster.members.map((m) => m.kill()));
          await sleep(downMs);
          // Together: no member is healthy before a quorum is back.
          await Promise.all(cluster.members.map((m) => m.restart()));
        },
        async killMember(leader, pick, downMs) {
          const index = leader ? await cluster.leader() : pick % cluster.members.length;
          const member = cluster.members[index];
          if (!member) throw new Error(`no member ${index}`);
          await member.kill();
          await sleep(downMs);
          await member.restart();
          return `member ${index}${leader ? ' (the leader)' : ''}`;
        },
        async close() {
          await links.close();
          await cluster.stop();
        },
      };
    },
  };
}

interface SharedOptions {
  readonly url: () => string;
  readonly defaultPort: number;
  readonly ttlMs: number;
  readonly detectionMs: number;
}

/**
 * A database server the machine already runs, shared with other tests (the campaign's namespace keeps it apart):
 * client and link faults only, since the server is not the campaign's to kill.
 */
function shared(options: SharedOptions): DriverSpec {
  return {
    members: 1,
    ttlMs: options.ttlMs,
    detectionMs: options.detectionMs,
    faults: [...CLIENT_FAULTS, ...LINK_FAULTS],
    available: () => ({ ok: true }),
    start() {
      const base = new URL(options.url());
      const proxies = new Map<number, FaultProxy>();
      return Promise.resolve({
        members: 1,
        async urlFor(index) {
          let proxy = proxies.get(index);
          if (!proxy) {
            proxy = await FaultProxy.start({ host: base.hostname, port: Number(base.port || options.defaultPort) });
            proxies.set(index, proxy);
          }
          const url = new URL(base.href);
          url.hostname = proxy.host;
          url.port = String(proxy.port);
          return url.href;
        },
        links: (index) => {
          const proxy = proxies.get(index);
          return proxy ? [proxy] : [];
        },
        async close() {
          await Promise.all([...proxies.values()].map((p) => p.close()));
          proxies.clear();
        },
      });
    },
  };
}

/** SQLite: a file in the campaign's folder; the "server" fault is another connection holding the write lock. */
const sqlite: DriverSpec = {
  members: 1,
  ttlMs: 1000,
  // A dead process's session is released as soon as another notices (pid check); a stopped one by its TTL + 50 ms.
  detectionMs: 100,
  faults: [...CLIENT_FAULTS, 'stall-db'],
  available: () => ({ ok: true }),
  start(dir) {
    const file = path.join(dir, 'chaos.db');
    return Promise.resolve({
      members: 1,
      urlFor: () => Promise.resolve(`sqlite://${file}`),
      links: () => [],
      async stallDb(ms) {
        // No busy timeout: a blocking wait would stop the harness (and its register) too. Retry instead.
        const db = new Database(file, { timeout: 0 });
        try {
          for (let attempt = 0; ; attempt++) {
            try {
              db.exec('BEGIN IMMEDIATE');
              break;
            } catch (error) {
              if (attempt >= 200) throw error;
              await sleep(5);
            }
          }
          await sleep(ms);
          db.exec('ROLLBACK');
        } finally {
          db.close();
        }
      },
      close: () => Promise.resolve(),
    });
  },
};

/** A RESP bulk string (or an error) has fully arrived. */
function bulkComplete(reply: string): boolean {
  if (reply.startsWith('-')) return reply.endsWith('\r\n');
  const header = /^\$(\d+)\r\n/.exec(reply);
  return header !== null && Buffer.byteLength(reply) >= header[0].length + Number(header[1]) + 2;
}

/** Re-checks until `check` holds; a nemesis step, bounded by `ms`. */
async function until(check: () => Promise<boolean>, ms: number, what: string): Promise<void> {
  const deadline = performance.now() + ms;
  while (!(await check())) {
    if (performance.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await sleep(100);
  }
}

/**
 * Redis behind Sentinel: a master (appendonly, appendfsync always), a replica and one Sentinel (quorum 1). The
 * failover fault kills whichever node is master, waits for Sentinel to promote the other, restarts the killed one as
 * a replica of the new master and waits until it replicates again (and Sentinel knows it), so that the next failover
 * has a replica in sync. Clients ask Sentinel for the master and connect to its own address, so no link fault applies.
 * Sentinel starts a failover of one master at most every 2 x failover-timeout: 2 s keeps episodes a few seconds apart.
 */
const redisSentinel: DriverSpec = {
  members: 2,
  ttlMs: 1000,
  detectionMs: 500,
  faults: [...CLIENT_FAULTS, 'failover'],
  available: () => requireServer('redis'),
  async start() {
    const name = 'chaos';
    const master = await startRedis({ persistence: true });
    const nodes: ServerHandle[] = [master];
    let sentinel: ServerHandle | undefined;
    try {
      nodes.push(await startRedisReplica({ host: master.host, port: master.port }));
      const watcher = await startSentinel(name, { host: master.host, port: master.port }, { downAfterMs: 1000, failoverTimeoutMs: 2000 });
      sentinel = watcher;
      // Sentinel learns of replicas and role changes by INFO every 10 s: much faster here, so failovers follow apace.
      const tuned = await tcpExchange(watcher.port, 'SENTINEL DEBUG info-period 250 ping-period 250\r\n', (r) => r.endsWith('\r\n'));
      if (!tuned.startsWith('+OK')) throw new Error(`Sentinel refused SENTINEL DEBUG: ${tuned.trim()}`);
      const masterPort = async (): Promise<number | undefined> => {
        const reply = await tcpExchange(watcher.port, `SENTINEL GET-MASTER-ADDR-BY-NAME ${name}\r\n`, (r) => r.split('\r\n').length >= 6);
        const port = Number(reply.split('\r\n')[4]);
        return Number.isInteger(port) && port > 0 ? port : undefined;
      };
      const replicating = async (node: ServerHandle): Promise<boolean> => {
        const info = await tcpExchange(node.port, 'INFO replication\r\n', bulkComplete);
        const known = await tcpExchange(watcher.port, `SENTINEL REPLICAS ${name}\r\n`, (r) => r.includes(`\r\n${node.port}\r\n`), 500);
        return info.includes('master_link_status:up') && known.includes(`\r\n${node.port}\r\n`);
      };
      const replica = nodes[1];
      if (replica) await until(() => replicating(replica), 60_000, 'the replica to sync and Sentinel to know it');
      return {
        members: 2,
        urlFor: () => Promise.resolve(watcher.url),
        links: () => [],
        async failover(downMs) {
          const before = await masterPort();
          const victim = nodes.find((n) => n.port === before);
          if (!victim) throw new Error(`Sentinel names no master of ours (port ${before})`);
          const killed = performance.now();
          await victim.kill();
          let after: number | undefined;
          await until(
            async () => {
              after = await masterPort();
              return after !== undefined && after !== before;
            },
            60_000,
            'Sentinel to promote the replica',
          );
          const promoted = performance.now();
          await sleep(downMs);
          await victim.restart();
          // As an operator would: Sentinel does the same, but only after watching the old master for several seconds.
          await tcpExchange(victim.port, `REPLICAOF ${master.host} ${after}\r\n`, (r) => r.endsWith('\r\n'));
          await until(() => replicating(victim), 60_000, 'the old master to replicate from the new one');
          const promotion = Math.round(promoted - killed);
          return `promoted after ${promotion} ms; the old master replicates again ${Math.round(performance.now() - promoted)} ms later`;
        },
        async close() {
          await watcher.stop();
          await Promise.all(nodes.map((n) => n.stop()));
        },
      };
    } catch (error) {
      await sentinel?.stop();
      await Promise.all(nodes.map((n) => n.stop()));
      throw error;
    }
  },
};

export const DRIVERS: Readonly<Record<string, DriverSpec>> = {
  sqlite,
  // Expired sessions are reaped on the keyspace notification, or else by a live member within a third of the TTL.
  redis: served({
    kind: 'redis',
    scheme: 'redis',
    start: () => startRedis({ persistence: true }),
    ttlMs: 1000,
    detectionMs: 500,
    serverFaults: ['restart-server', 'pause-server'],
  }),
  'redis-sentinel': redisSentinel,
  // Three members, so that one (or the leader) can die while the others keep a quorum. etcd's minimum lease is 2 s,
  // rounded up to whole seconds, expired within about 0.5 s more.
  etcd: ensemble({
    kind: 'etcd',
    scheme: 'etcd',
    size: 3,
    start: (size) => startEtcdCluster(size),
    ttlMs: 2000,
    detectionMs: 1000,
    serverFaults: ['restart-server', 'kill-member', 'kill-leader'],
  }),
  // Three members as for etcd; each client lists every member (through its own proxies) and moves to another when
  // its member dies. The ensemble grants sessions from 1 s, but the client gives each member a third of the session
  // timeout to answer a connect: 2 s leaves a loaded machine enough. A dead session goes at the leader's next expiry
  // check (a tickTime, 500 ms here); watchers hear of it from their next listing.
  zookeeper: ensemble({
    kind: 'zookeeper',
    scheme: 'zookeeper',
    size: 3,
    start: (size) => startZooKeeperEnsemble(size),
    ttlMs: 2000,
    detectionMs: 1000,
    serverFaults: ['restart-server', 'kill-member', 'kill-leader'],
  }),
  // Sessions are rows judged by the server's clock; a live waiter or watcher reaps an expired one at once, a renewal
  // within a third of the TTL.
  postgres: shared({ url: postgresUrl, defaultPort: 5432, ttlMs: 1000, detectionMs: 500 }),
  mysql: shared({ url: mysqlUrl, defaultPort: 3306, ttlMs: 1000, detectionMs: 500 }),
};
