import { once, type EventEmitter } from 'node:events';
import * as fs from 'node:fs';
import { createRequire } from 'node:module';
import * as net from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { Etcd3 } from 'etcd3';
import { Redis, type RedisOptions } from 'ioredis';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { FaultProxy } from './proxy.js';
import {
  fourLetterWord,
  freePort,
  isReachable,
  mysqlUrl,
  postgresUrl,
  requireBinary,
  requireServer,
  startEtcd,
  startEtcdCluster,
  startRedis,
  startZooKeeper,
  startZooKeeperEnsemble,
  type Availability,
  type EtcdCluster,
  type ServerHandle,
  type ZooKeeperEnsemble,
} from './servers.js';

// node-zookeeper-client ships no types: declare the little used here.
interface ZkClient extends EventEmitter {
  connect(): void;
  close(): void;
  getState(): { name: string };
  getChildren(path: string, cb: (err: Error | null, children: string[]) => void): void;
  create(path: string, data: Buffer, cb: (err: Error | null, path: string) => void): void;
  exists(path: string, cb: (err: Error | null, stat: unknown) => void): void;
}
interface ZkModule {
  createClient(connection: string, options?: { sessionTimeout?: number; spinDelay?: number; retries?: number }): ZkClient;
}
const zookeeper = createRequire(import.meta.url)('node-zookeeper-client') as ZkModule;

const LONG = 60_000;

/** Suite title that carries the skip reason, so a skipped suite says what to install. */
const title = (name: string, a: Availability): string => (a.ok ? name : `${name} (skipped: ${a.reason})`);

/**
 * 'pending' when `p` has not settled after `ms`, else how it settled (so a failure says what happened). A lower
 * bound only: nothing here asserts how fast things are.
 */
async function stateAfter(p: Promise<unknown>, ms: number): Promise<string> {
  let state = 'pending';
  p.then(
    (value) => (state = `resolved: ${String(value)}`),
    (err: unknown) => (state = `rejected: ${String(err)}`),
  );
  await sleep(ms);
  return state;
}

/** Resolves on the next `event`; unlike events.once it does not reject when the emitter reports an 'error'. */
function next(emitter: EventEmitter, event: string): Promise<void> {
  return new Promise((resolve) => emitter.once(event, () => resolve()));
}

async function eventually<T>(what: string, fn: () => Promise<T>, timeoutMs = 10_000): Promise<T> {
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    try {
      return await fn();
    } catch (err) {
      if (performance.now() > deadline) {
        throw new Error(`${what}: still failing after ${timeoutMs} ms: ${String(err)}`, { cause: err });
      }
      await sleep(100);
    }
  }
}

function zkCall<T>(call: (cb: (err: Error | null, value: T) => void) => void): Promise<T> {
  return new Promise((resolve, reject) => call((err, value) => (err ? reject(err) : resolve(value))));
}

async function zkConnect(port: number): Promise<ZkClient> {
  const client = zookeeper.createClient(`127.0.0.1:${port}`, { sessionTimeout: 4000, spinDelay: 100, retries: 0 });
  const connected = next(client, 'connected');
  client.connect();
  await connected;
  return client;
}

async function zkClose(client: ZkClient): Promise<void> {
  // close() queues CLOSE_SESSION; the server then closes the socket and the client reports 'disconnected'.
  if (client.getState().name !== 'SYNC_CONNECTED') {
    client.close();
    return;
  }
  const disconnected = next(client, 'disconnected');
  client.close();
  await Promise.race([disconnected, sleep(3000)]);
}

// ---------------------------------------------------------------------------------------------------------------

describe('freePort / isReachable', () => {
  it('hands out distinct bindable ports', async () => {
    const ports = await Promise.all([freePort(), freePort(), freePort(), freePort()]);
    expect(new Set(ports).size).toBe(4);
    expect(await isReachable('127.0.0.1', ports[0] ?? 0, 500)).toBe(false);
    const server = net.createServer();
    await new Promise<void>((resolve) => server.listen(ports[0], '127.0.0.1', resolve));
    try {
      expect(await isReachable('127.0.0.1', ports[0] ?? 0)).toBe(true);
    } finally {
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
  });

  it('requireBinary skips locally and fails under CI, with the same message', () => {
    const saved = process.env.CI;
    try {
      delete process.env.CI;
      expect(requireBinary('no-such-binary-concord', 'apt-get install nothing')).toEqual({
        ok: false,
        reason: 'no-such-binary-concord not found: apt-get install nothing',
      });
      expect(requireBinary('sh', 'apt-get install dash')).toEqual({ ok: true });
      process.env.CI = 'true';
      expect(() => requireBinary('no-such-binary-concord', 'apt-get install nothing')).toThrow(
        'no-such-binary-concord not found: apt-get install nothing',
      );
    } finally {
      if (saved === undefined) delete process.env.CI;
      else process.env.CI = saved;
    }
  });

  it('gives the already-running PostgreSQL and MariaDB URLs', () => {
    expect(postgresUrl()).toMatch(/^postgres(ql)?:\/\//);
    expect(mysqlUrl()).toMatch(/^mysql:\/\//);
  });
});

// ---------------------------------------------------------------------------------------------------------------

describe('FaultProxy (against a local echo server)', () => {
  let echo: net.Server;
  let proxy: FaultProxy;
  const sockets: net.Socket[] = [];

  beforeAll(async () => {
    echo = net.createServer((s) => {
      s.on('error', () => undefined);
      s.pipe(s);
    });
    await new Promise<void>((resolve) => echo.listen(0, '127.0.0.1', resolve));
  });

  afterEach(async () => {
    for (const s of sockets.splice(0)) s.destroy();
    await proxy.close();
  });

  afterAll(async () => {
    await new Promise<void>((resolve) => echo.close(() => resolve()));
  });

  const startProxy = async (): Promise<FaultProxy> => {
    const address = echo.address();
    if (typeof address !== 'object' || address === null) throw new Error('echo server has no port');
    proxy = await FaultProxy.start({ host: '127.0.0.1', port: address.port });
    return proxy;
  };

  /** Connects through the proxy and collects what comes back. */
  const open = async (): Promise<{ socket: net.Socket; received: () => string; closed: Promise<void> }> => {
    const socket = net.connect({ host: proxy.host, port: proxy.port });
    socket.on('error', () => undefined);
    sockets.push(socket);
    let data = '';
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => (data += chunk));
    const closed = next(socket, 'close');
    await once(socket, 'connect');
    return { socket, received: () => data, closed };
  };

  const until = async (cond: () => boolean, timeoutMs = 5000): Promise<void> => {
    const deadline = performance.now() + timeoutMs;
    while (!cond()) {
      if (performance.now() > deadline) throw new Error('condition not met in time');
      await sleep(5);
    }
  };

  it('passes data both ways and counts connections', async () => {
    await startProxy();
    const a = await open();
    a.socket.write('hello');
    await until(() => a.received() === 'hello');
    await until(() => proxy.connections === 1);
    a.socket.end();
    await a.closed;
    await until(() => proxy.connections === 0);
  });

  it('delay adds latency in each direction', async () => {
    await startProxy();
    const a = await open();
    proxy.delay(50);
    const t0 = performance.now();
    a.socket.write('x');
    await until(() => a.received() === 'x');
    expect(performance.now() - t0).toBeGreaterThanOrEqual(90); // 50 ms there + 50 ms back
  });

  it('keeps byte order when the delay is lowered mid-flight', async () => {
    await startProxy();
    const a = await open();
    proxy.delay(100);
    a.socket.write('first-');
    await sleep(10);
    proxy.pass();
    a.socket.write('second');
    await until(() => a.received().length === 'first-second'.length);
    expect(a.received()).toBe('first-second');
  });

  it('blackhole holds the connection open and discards data; pass delivers new data only', async () => {
    await startProxy();
    const a = await open();
    proxy.blackhole();
    a.socket.write('lost');
    await sleep(300);
    expect(a.received()).toBe('');
    expect(a.socket.destroyed).toBe(false);
    expect(proxy.connections).toBe(1);
    // New connections are accepted during a blackhole, but nothing goes through them either.
    const b = await open();
    b.socket.write('lost too');
    await sleep(100);
    expect(b.received()).toBe('');
    proxy.pass();
    a.socket.write('after');
    await until(() => a.received() === 'after');
    b.socket.write('b-after');
    await until(() => b.received() === 'b-after');
  });

  it('cut resets open connections and refuses new ones until pass', async () => {
    await startProxy();
    const a = await open();
    proxy.cut();
    await a.closed;
    expect(proxy.connections).toBe(0);
    // Accepted, then reset at once.
    const b = net.connect({ host: proxy.host, port: proxy.port });
    b.on('error', () => undefined);
    sockets.push(b);
    await next(b, 'close');
    proxy.pass();
    const c = await open();
    c.socket.write('back');
    await until(() => c.received() === 'back');
  });

  it('close() ends every connection and the listener', async () => {
    await startProxy();
    const a = await open();
    await proxy.close();
    await a.closed;
    expect(await isReachable(proxy.host, proxy.port, 500)).toBe(false);
  });
});

// ---------------------------------------------------------------------------------------------------------------

const redisAvailable = requireServer('redis');

describe.skipIf(!redisAvailable.ok)(title('redis-server', redisAvailable), () => {
  let server: ServerHandle | undefined;
  const servers: ServerHandle[] = [];
  const clients: Redis[] = [];
  const proxies: FaultProxy[] = [];

  const connect = (port: number, options: RedisOptions = {}): Redis => {
    // Fast reconnects, and commands wait (never fail) while disconnected: the tests decide what a fault looks like.
    const client = new Redis({ host: '127.0.0.1', port, retryStrategy: () => 50, maxRetriesPerRequest: null, ...options });
    client.on('error', () => undefined); // connection errors are expected here
    clients.push(client);
    return client;
  };

  beforeAll(async () => {
    const t0 = performance.now();
    server = await startRedis();
    servers.push(server);
    console.log(`redis-server ready in ${(performance.now() - t0).toFixed(0)} ms at ${server.url}`);
  }, LONG);

  afterAll(async () => {
    for (const c of clients) c.disconnect();
    await Promise.all(proxies.map((p) => p.close()));
    await Promise.all(servers.map((s) => s.stop()));
  }, LONG);

  const srv = (): ServerHandle => {
    if (!server) throw new Error('redis not started');
    return server;
  };

  it('answers PING', async () => {
    const s = srv();
    expect(s.url).toBe(`redis://127.0.0.1:${s.port}`);
    expect(s.pid).toBeGreaterThan(0);
    expect(fs.existsSync(s.logFile)).toBe(true);
    expect(await connect(s.port).ping()).toBe('PONG');
  });

  it('kill -> restart on the same port; without persistence the data is gone', { timeout: LONG }, async () => {
    const s = srv();
    const client = connect(s.port);
    await client.set('k', 'v');
    const oldPid = s.pid;
    await s.kill();
    expect(s.running).toBe(false);
    expect(await isReachable('127.0.0.1', s.port, 500)).toBe(false);
    const t0 = performance.now();
    await s.restart();
    console.log(`redis-server restart in ${(performance.now() - t0).toFixed(0)} ms`);
    expect(s.pid).not.toBe(oldPid);
    expect(s.running).toBe(true);
    expect(await client.ping()).toBe('PONG'); // the same client reconnects to the same port
    expect(await client.get('k')).toBeNull();
  });

  it('with persistence, acknowledged writes survive kill -> restart', { timeout: LONG }, async () => {
    const s = await startRedis({ persistence: true });
    servers.push(s);
    const client = connect(s.port);
    await client.set('k', 'kept');
    await s.kill();
    await s.restart();
    expect(await client.get('k')).toBe('kept');
  });

  it('pause holds replies until resume', { timeout: LONG }, async () => {
    const s = srv();
    const client = connect(s.port);
    await client.ping();
    s.pause();
    const reply = client.ping();
    try {
      expect(await stateAfter(reply, 300)).toBe('pending');
    } finally {
      s.resume();
    }
    expect(await reply).toBe('PONG');
  });

  it('stop is graceful, idempotent, removes the folder; restart after stop starts empty', { timeout: LONG }, async () => {
    const s = await startRedis();
    servers.push(s);
    await s.stop();
    await s.stop();
    expect(fs.existsSync(s.dir)).toBe(false);
    expect(await isReachable('127.0.0.1', s.port, 500)).toBe(false);
    await s.restart();
    expect(await connect(s.port).ping()).toBe('PONG');
    await s.stop();
  });

  describe('through a FaultProxy', () => {
    const viaProxy = async (): Promise<{ proxy: FaultProxy; client: Redis }> => {
      const proxy = await FaultProxy.start({ host: srv().host, port: srv().port });
      proxies.push(proxy);
      const client = connect(proxy.port);
      expect(await client.ping()).toBe('PONG');
      return { proxy, client };
    };

    it('delay(100) makes a round trip take at least 90 ms', async () => {
      const { proxy, client } = await viaProxy();
      proxy.delay(100);
      const t0 = performance.now();
      expect(await client.ping()).toBe('PONG');
      expect(performance.now() - t0).toBeGreaterThanOrEqual(90);
      proxy.pass();
      expect(await client.ping()).toBe('PONG');
    });

    it('blackhole makes a command hang; after pass it is answered once the client resends it', { timeout: LONG }, async () => {
      const { proxy, client } = await viaProxy();
      proxy.blackhole();
      const reply = client.ping();
      expect(await stateAfter(reply, 300)).toBe('pending');
      proxy.pass();
      // The request was dropped, not delayed: healing the partition alone does not answer it.
      expect(await stateAfter(reply, 200)).toBe('pending');
      // A reconnect makes ioredis resend unanswered commands.
      client.disconnect(true);
      expect(await reply).toBe('PONG');
    });

    it('cut drops the connection; the client reconnects after pass', { timeout: LONG }, async () => {
      const { proxy, client } = await viaProxy();
      let reconnects = 0;
      client.on('reconnecting', () => reconnects++);
      const closed = next(client, 'close');
      proxy.cut();
      await closed;
      expect(proxy.connections).toBe(0);
      const reply = client.ping();
      expect(await stateAfter(reply, 300)).toBe('pending');
      expect(reconnects).toBeGreaterThanOrEqual(1);
      proxy.pass();
      expect(await reply).toBe('PONG');
      expect(proxy.connections).toBe(1);
    });

    it('cut makes a command fail when the client does not retry', { timeout: LONG }, async () => {
      const proxy = await FaultProxy.start({ host: srv().host, port: srv().port });
      proxies.push(proxy);
      const client = connect(proxy.port, { retryStrategy: () => null, maxRetriesPerRequest: 0 });
      expect(await client.ping()).toBe('PONG');
      const closed = next(client, 'end');
      proxy.cut();
      await closed;
      await expect(client.ping()).rejects.toThrow();
    });
  });
});

// ---------------------------------------------------------------------------------------------------------------

const etcdAvailable = requireServer('etcd');

describe.skipIf(!etcdAvailable.ok)(title('etcd', etcdAvailable), () => {
  let server: ServerHandle | undefined;
  const clients: Etcd3[] = [];

  const connect = (hosts: string | string[]): Etcd3 => {
    const client = new Etcd3({ hosts });
    clients.push(client);
    return client;
  };

  beforeAll(async () => {
    const t0 = performance.now();
    server = await startEtcd();
    console.log(`etcd ready in ${(performance.now() - t0).toFixed(0)} ms at ${server.url}`);
  }, LONG);

  afterAll(async () => {
    for (const c of clients) c.close();
    await server?.stop();
  }, LONG);

  const srv = (): ServerHandle => {
    if (!server) throw new Error('etcd not started');
    return server;
  };

  it('serves put/get', async () => {
    const s = srv();
    expect(s.url).toBe(`etcd://127.0.0.1:${s.port}`);
    const client = connect(`http://127.0.0.1:${s.port}`);
    await client.put('concord/test').value('v1');
    expect(await client.get('concord/test').string()).toBe('v1');
  });

  it('kill -> restart on the same port keeps the data', { timeout: LONG }, async () => {
    const s = srv();
    const before = connect(`http://127.0.0.1:${s.port}`);
    await before.put('concord/durable').value('kept');
    before.close();
    await s.kill();
    const t0 = performance.now();
    await s.restart();
    console.log(`etcd restart in ${(performance.now() - t0).toFixed(0)} ms`);
    const after = connect(`http://127.0.0.1:${s.port}`);
    expect(await after.get('concord/durable').string()).toBe('kept');
  });

  it('pause holds requests until resume', { timeout: LONG }, async () => {
    const s = srv();
    const client = connect(`http://127.0.0.1:${s.port}`);
    await client.put('concord/p').value('1');
    s.pause();
    const reply = client.get('concord/p').string();
    try {
      expect(await stateAfter(reply, 300)).toBe('pending');
    } finally {
      s.resume();
    }
    expect(await reply).toBe('1');
  });
});

describe.skipIf(!etcdAvailable.ok)(title('etcd cluster of 3', etcdAvailable), () => {
  let cluster: EtcdCluster | undefined;
  const clients: Etcd3[] = [];

  const connect = (hosts: string[]): Etcd3 => {
    const client = new Etcd3({ hosts });
    clients.push(client);
    return client;
  };

  beforeAll(async () => {
    const t0 = performance.now();
    cluster = await startEtcdCluster(3);
    console.log(`etcd cluster of 3 ready in ${(performance.now() - t0).toFixed(0)} ms at ${cluster.url}`);
  }, LONG);

  afterAll(async () => {
    for (const c of clients) c.close();
    await cluster?.stop();
  }, LONG);

  it('survives losing its leader, and the old leader rejoins', { timeout: LONG }, async () => {
    if (!cluster) throw new Error('cluster not started');
    const c = cluster;
    expect(c.url).toMatch(/^etcd:\/\/127\.0\.0\.1:\d+,127\.0\.0\.1:\d+,127\.0\.0\.1:\d+$/);
    expect(c.members).toHaveLength(3);

    await connect([...c.endpoints])
      .put('concord/cluster')
      .value('before');
    const leader = await c.leader();
    const old = c.members[leader];
    if (!old) throw new Error('no such member');
    await old.kill();

    // Only the survivors: the etcd3 client would otherwise keep trying the dead member.
    const survivors = c.endpoints.filter((_, i) => i !== leader);
    const client = connect(survivors);
    const t0 = performance.now();
    // Wait for the new leader first: a put sent before the followers notice the loss is forwarded to the dead leader
    // and only fails after etcd's request timeout (5 s + 2 election timeouts).
    const newLeader = await c.leader();
    expect(newLeader).not.toBe(leader);
    const elected = performance.now() - t0;
    await eventually('put after the leader died', async () => {
      await client.put('concord/cluster').value('after');
    });
    const served = performance.now() - t0;
    console.log(`etcd cluster: new leader after ${elected.toFixed(0)} ms, put served after ${served.toFixed(0)} ms`);

    const t1 = performance.now();
    await old.restart();
    console.log(`etcd cluster: old leader rejoined in ${(performance.now() - t1).toFixed(0)} ms`);
    const rejoined = connect([c.endpoints[leader] ?? '']);
    expect(await rejoined.get('concord/cluster').string()).toBe('after');
  });
});

// ---------------------------------------------------------------------------------------------------------------

const zookeeperAvailable = requireServer('zookeeper');

describe.skipIf(!zookeeperAvailable.ok)(title('zookeeper', zookeeperAvailable), () => {
  let server: ServerHandle | undefined;
  const clients: ZkClient[] = [];

  const connect = async (port: number): Promise<ZkClient> => {
    const client = await zkConnect(port);
    clients.push(client);
    return client;
  };

  beforeAll(async () => {
    const t0 = performance.now();
    server = await startZooKeeper();
    console.log(`zookeeper ready in ${(performance.now() - t0).toFixed(0)} ms at ${server.url}`);
  }, LONG);

  afterAll(async () => {
    await Promise.all(clients.map((c) => zkClose(c)));
    await server?.stop();
  }, LONG);

  const srv = (): ServerHandle => {
    if (!server) throw new Error('zookeeper not started');
    return server;
  };

  it('serves getChildren and four-letter words', async () => {
    const s = srv();
    expect(s.url).toBe(`zookeeper://127.0.0.1:${s.port}`);
    const client = await connect(s.port);
    expect(await zkCall<string[]>((cb) => client.getChildren('/', cb))).toContain('zookeeper');
    expect(await fourLetterWord(s.port, 'ruok')).toBe('imok');
    expect(await fourLetterWord(s.port, 'srvr')).toMatch(/^Mode: standalone$/m);
  });

  it('kill -> restart on the same port keeps the data', { timeout: LONG }, async () => {
    const s = srv();
    const before = await zkConnect(s.port);
    await zkCall<string>((cb) => before.create('/concord-durable', Buffer.from('x'), cb));
    await zkClose(before);
    await s.kill();
    const t0 = performance.now();
    await s.restart();
    console.log(`zookeeper restart in ${(performance.now() - t0).toFixed(0)} ms`);
    const after = await connect(s.port);
    expect(await zkCall<unknown>((cb) => after.exists('/concord-durable', cb))).toBeTruthy();
  });

  it('pause holds requests until resume', { timeout: LONG }, async () => {
    const s = srv();
    const client = await connect(s.port);
    s.pause();
    const reply = zkCall<string[]>((cb) => client.getChildren('/', cb));
    try {
      expect(await stateAfter(reply, 300)).toBe('pending');
    } finally {
      s.resume();
    }
    expect(await reply).toContain('zookeeper');
  });
});

describe.skipIf(!zookeeperAvailable.ok)(title('zookeeper ensemble', zookeeperAvailable), () => {
  let ensemble: ZooKeeperEnsemble | undefined;

  beforeAll(async () => {
    const t0 = performance.now();
    ensemble = await startZooKeeperEnsemble(3);
    console.log(`zookeeper ensemble ready in ${(performance.now() - t0).toFixed(0)} ms at ${ensemble.url}`);
  }, LONG);

  afterAll(async () => {
    await ensemble?.stop();
  }, LONG);

  it('elects a leader; a killed leader is replaced, and it rejoins as a follower with the data', { timeout: LONG }, async () => {
    if (!ensemble) throw new Error('ensemble not started');
    expect(ensemble.url).toMatch(/^zookeeper:\/\/127\.0\.0\.1:\d+(,127\.0\.0\.1:\d+){2}$/);
    const leader = await ensemble.leader();
    const old = ensemble.members[leader];
    const other = ensemble.members[(leader + 1) % 3];
    if (!old || !other) throw new Error('no members');
    const writer = await zkConnect(other.port);
    try {
      await zkCall<string>((cb) => writer.create('/concord-replicated', Buffer.from('x'), cb));
    } finally {
      await zkClose(writer);
    }
    await old.kill();
    const next = await ensemble.leader();
    expect(next).not.toBe(leader);
    await old.restart();
    expect(await fourLetterWord(old.port, 'srvr')).toMatch(/^Mode: follower$/m);
    const reader = await zkConnect(old.port);
    try {
      expect(await zkCall<unknown>((cb) => reader.exists('/concord-replicated', cb))).toBeTruthy();
    } finally {
      await zkClose(reader);
    }
  });
});
