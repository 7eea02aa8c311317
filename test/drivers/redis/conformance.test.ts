import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { inspect } from 'node:util';
import { Redis } from 'ioredis';
import { describe, expect, it } from 'vitest';
import { kCrash, kQueued, type CoordinatorImpl } from '../../../src/coordinator.js';
import { ConcordError, connect, type Coordinator } from '../../../src/index.js';
import { findBinary, freePort, requireServer, startRedis } from '../../support/servers.js';
import { deadline, eventually } from '../../support/wait.js';
import { driver } from '../../../drivers/redis/index.js';
import { PROBE, SCRIPTS, SCRIPT_COMMANDS } from '../../../drivers/redis/scripts.js';
import { servedTarget } from '../../conformance/served.js';
import { describeConformance } from '../../conformance/suite.js';

const availability = requireServer('redis');

describe.skipIf(!availability.ok)(`redis${availability.ok ? '' : ` (skipped: ${availability.reason})`}`, () => {
  describeConformance({
    ...servedTarget({
      name: 'redis',
      scheme: 'redis',
      start: () => startRedis(),
      // Expired session keys are reaped on the keyspace notification (Redis expires keys within ~100 ms), or else by
      // a live coordinator's next renewal (a third of its TTL).
      shortTtlMs: 750,
      detectionDelayMs: driver.crashDetection.delayMs,
    }),
    descriptor: driver,
  });
});

// ---- URLs: authentication, database index, TLS, Sentinel, bad input (servers started here with their own flags)

interface Spawned {
  readonly port: number;
  stop(): Promise<void>;
}

/** redis-server with extra flags, ready once it logs `readyLine`. */
async function spawnRedis(args: (port: number, dir: string) => string[], readyLine: RegExp): Promise<Spawned> {
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), 'concord-redis-url-'));
  const child = spawn(findBinary('redis-server') ?? 'redis-server', args(port, dir), { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
  let log = '';
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  await deadline(
    new Promise<void>((resolve, reject) => {
      const onData = (d: Buffer): void => {
        log += d.toString();
        if (readyLine.test(log)) resolve();
      };
      child.stdout.on('data', onData);
      child.stderr.on('data', onData);
      child.once('exit', () => reject(new Error(`redis-server exited: ${log.slice(-500)}`)));
    }),
    15_000,
    'redis-server to start',
  );
  return {
    port,
    stop: async () => {
      child.kill('SIGKILL');
      await exited;
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

const codeOf = async (promise: Promise<unknown>): Promise<[string | undefined, string]> => {
  try {
    const value = await promise;
    if (value && typeof (value as Coordinator).close === 'function') await (value as Coordinator).close();
    return [undefined, ''];
  } catch (error) {
    expect(error).toBeInstanceOf(ConcordError);
    return [(error as ConcordError).code, (error as Error).message];
  }
};

const READY = /Ready to accept connections/;

describe.skipIf(!availability.ok)('redis urls', () => {
  it('authenticates with a password or an ACL user, selects the database, and never shows the password', async () => {
    const server = await spawnRedis(
      (port) => ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--requirepass', 's3cret'],
      READY,
    );
    const admin = new Redis({ host: '127.0.0.1', port: server.port, password: 's3cret', lazyConnect: true });
    try {
      await admin.connect();
      await admin.call('ACL', 'SETUSER', 'alice', 'on', '>alice-pw', '~*', '&*', '+@all');
      const a = await connect(`redis://:s3cret@127.0.0.1:${server.port}/2`, { member: 'a', namespace: 'auth' });
      expect(a.url).not.toContain('s3cret');
      expect(a.url).toContain('***');
      await a.group('g').join({ create: true });
      await admin.select(2);
      expect(await admin.sismember('{auth}:groups', 'g')).toBe(1);
      await admin.select(0);
      expect(await admin.exists('{auth}:groups')).toBe(0);
      const b = await connect(`redis://alice:alice-pw@127.0.0.1:${server.port}/2`, { member: 'b', namespace: 'auth' });
      expect((await b.group('g').members()).map((m) => m.id)).toEqual(['a']);
      // The least an ACL user needs (no CLIENT, no CONFIG): locks, groups and watches still work.
      await admin.call(
        'ACL',
        'SETUSER',
        'bob',
        'on',
        '>bob-pw',
        '~{auth}:*',
        '&*',
        '+@read',
        '+@write',
        '+@scripting',
        '+@pubsub',
        '+@stream',
        '+@connection',
        '+time',
      );
      const bobC = await connect(`redis://bob:bob-pw@127.0.0.1:${server.port}/2`, { member: 'bob', namespace: 'auth' });
      const watch = bobC.group('g').watch();
      const seen: string[] = [];
      const collecting = (async () => {
        for await (const e of watch) seen.push(`${e.type} ${e.member}`);
      })();
      await eventually(
        () => seen,
        (e) => e.includes('join a'),
        10_000,
        'the snapshot',
      );
      await b.group('g').join();
      await eventually(
        () => seen,
        (e) => e.includes('join b'),
        10_000,
        'a live join',
      );
      const held = await bobC.lock('l').acquire();
      expect(await a.lock('l').holder()).toBe('bob');
      await held.release();
      await watch.close();
      await collecting;
      await Promise.all([a.close(), b.close(), bobC.close()]);
    } finally {
      admin.disconnect();
      await server.stop();
    }
  });

  it('refuses credentials the server rejects with ERR_REFUSED, naming the user and never the password', async () => {
    const server = await spawnRedis(
      (port) => ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--requirepass', 's3cret'],
      READY,
    );
    const admin = new Redis({ host: '127.0.0.1', port: server.port, password: 's3cret', lazyConnect: true });
    try {
      await admin.connect();
      await admin.call('ACL', 'SETUSER', 'alice', 'on', '>alice-pw', '~*', '&*', '+@all');
      const refusal = async (url: string): Promise<ConcordError> => {
        const error = await connect(url, { member: 'c', connectTimeoutMs: 5000 }).then(
          async (c) => {
            await c.close();
            throw new Error(`${url} was accepted`);
          },
          (e: unknown) => e,
        );
        expect(error).toBeInstanceOf(ConcordError);
        return error as ConcordError;
      };
      // A wrong password, for the default user and for an ACL user: what the server said, not "Connection is closed"
      // (as etcd refuses wrong credentials: retrying will not change them).
      for (const [url, user] of [
        [`redis://:wrong-pw@127.0.0.1:${server.port}`, 'default'],
        [`redis://alice:wrong-pw@127.0.0.1:${server.port}`, 'alice'],
      ] as const) {
        const error = await refusal(url);
        expect(error.code, url).toBe('ERR_REFUSED');
        expect(error.message, url).toContain('WRONGPASS');
        expect(error.message, url).toContain(`"${user}"`);
        // Nowhere: not in the message, the cause, or anything the error prints.
        expect(inspect(error, { depth: 10 }), url).not.toContain('wrong-pw');
      }
      // No password for a server that needs one.
      const missing = await refusal(`redis://127.0.0.1:${server.port}`);
      expect(missing.code).toBe('ERR_REFUSED');
      expect(missing.message).toContain('NOAUTH');
      // The right password still connects.
      await (await connect(`redis://alice:alice-pw@127.0.0.1:${server.port}`, { member: 'c' })).close();
    } finally {
      admin.disconnect();
      await server.stop();
    }
  });

  it.skipIf(findBinary('openssl') === undefined)('connects over TLS with a CA file (rediss://)', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'concord-tls-'));
    const cert = join(dir, 'cert.pem');
    const key = join(dir, 'key.pem');
    execFileSync(
      'openssl',
      [
        'req',
        '-x509',
        '-newkey',
        'rsa:2048',
        '-nodes',
        '-keyout',
        key,
        '-out',
        cert,
        '-days',
        '1',
        '-subj',
        '/CN=127.0.0.1',
        '-addext',
        'subjectAltName=IP:127.0.0.1',
      ],
      { stdio: 'ignore' },
    );
    const server = await spawnRedis(
      (port) => [
        '--port',
        '0',
        '--tls-port',
        String(port),
        '--bind',
        '127.0.0.1',
        '--save',
        '',
        '--tls-cert-file',
        cert,
        '--tls-key-file',
        key,
        '--tls-ca-cert-file',
        cert,
        '--tls-auth-clients',
        'no',
      ],
      READY,
    );
    try {
      const c = await connect(`rediss://127.0.0.1:${server.port}?ca=${encodeURIComponent(cert)}`, { member: 'tls', namespace: 'tls' });
      const held = await c.lock('l').acquire();
      expect(await c.lock('l').holder()).toBe('tls');
      await held.release();
      await c.close();
      // Without the CA the self-signed certificate is refused.
      expect((await codeOf(connect(`rediss://127.0.0.1:${server.port}`, { member: 'x' })))[0]).toBe('ERR_CONNECTION');
    } finally {
      await server.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('finds the master through Sentinel (redis+sentinel://h:p,h:p/MASTER), skipping a dead sentinel', async () => {
    const master = await startRedis();
    const sentinel = await spawnRedis((port, dir) => {
      const conf = join(dir, 'sentinel.conf');
      writeFileSync(
        conf,
        [`port ${port}`, 'bind 127.0.0.1', `dir ${dir}`, `sentinel monitor mymaster 127.0.0.1 ${master.port} 1`, ''].join('\n'),
      );
      return [conf, '--sentinel'];
    }, /\+monitor master mymaster/);
    const dead = await freePort();
    try {
      const c = await connect(`redis+sentinel://127.0.0.1:${dead},127.0.0.1:${sentinel.port}/mymaster`, {
        member: 's',
        namespace: 'sentinel',
      });
      await c.group('g').join({ create: true });
      const held = await c.lock('l').acquire();
      const direct = await connect(master.url, { member: 'd', namespace: 'sentinel' });
      expect(await direct.lock('l').holder()).toBe('s');
      expect((await direct.group('g').members()).map((m) => m.id)).toEqual(['s']);
      await held.release();
      await Promise.all([c.close(), direct.close()]);
    } finally {
      await sentinel.stop();
      await master.stop();
    }
  });

  it('rejects malformed URLs and unknown parameters before any I/O', async () => {
    const port = await freePort();
    for (const url of [
      `redis://127.0.0.1:${port}?bogus=1`,
      `redis://127.0.0.1:${port}/notadb`,
      `redis://127.0.0.1:${port}?ca=/nowhere.pem`,
      `redis://127.0.0.1:${port}?keyspaceEvents=maybe`,
      `redis://127.0.0.1:1,127.0.0.1:2`,
      `redis+sentinel://127.0.0.1:${port}`,
    ]) {
      expect((await codeOf(connect(url, { member: 'x' })))[0], url).toBe('ERR_INVALID_URL');
    }
    // Parameters that would be ignored (say, TLS asked for on a plaintext url that carries a password) are refused,
    // by name, before any I/O.
    for (const [url, parameter] of [
      [`redis://:pw@127.0.0.1:${port}?tls=true`, 'tls'],
      [`redis://127.0.0.1:${port}?sentinelPassword=x`, 'sentinelPassword'],
      [`rediss://127.0.0.1:${port}?sentinelUsername=u`, 'sentinelUsername'],
      [`redis://127.0.0.1:${port}?servername=x`, 'servername'],
      [`redis+sentinel://127.0.0.1:${port}/m?ca=/nowhere.pem`, 'ca'],
      [`redis+sentinel://127.0.0.1:${port}/m?tls=false&rejectUnauthorized=false`, 'rejectUnauthorized'],
    ] as const) {
      const [code, message] = await codeOf(connect(url, { member: 'x' }));
      expect(code, url).toBe('ERR_INVALID_URL');
      expect(message, url).toContain(parameter);
      expect(message, url).not.toContain('pw');
    }
    // Nothing listens there: a connection error, quickly.
    expect((await codeOf(connect(`redis://127.0.0.1:${port}`, { member: 'x' })))[0]).toBe('ERR_CONNECTION');
  });
});

describe('redis scripts', () => {
  it('the connect-time probe tries every command the scripts call, so a permission they need cannot go unchecked', () => {
    const called = new Set<string>();
    for (const script of Object.values(SCRIPTS)) {
      for (const match of script.source.matchAll(/redis\.call\('([A-Z]+)'/g)) called.add(match[1] ?? '');
    }
    const probed = new Set([...PROBE.source.matchAll(/try\('([A-Z]+)'/g)].map((match) => match[1] ?? ''));
    expect([...called].filter((command) => !probed.has(command))).toEqual([]);
    expect([...probed].sort()).toEqual([...SCRIPT_COMMANDS].sort());
  });
});

describe.skipIf(!availability.ok)('redis specifics', () => {
  it('refuses a server that may evict any key (allkeys-* with maxmemory) unless ?allowEviction=true', async () => {
    const own = await startRedis();
    const admin = new Redis({ host: own.host, port: own.port, lazyConnect: true });
    await admin.connect();
    try {
      await admin.call('CONFIG', 'SET', 'maxmemory', '512mb', 'maxmemory-policy', 'allkeys-lru');
      const [code, message] = await codeOf(connect(own.url, { member: 'x', namespace: 'evict' }));
      expect(code).toBe('ERR_CONNECTION');
      expect(message).toContain('maxmemory-policy');
      expect(message).toContain('allowEviction');
      const allowed = await connect(`${own.url}?allowEviction=true`, { member: 'x', namespace: 'evict' });
      await (await allowed.lock('l').acquire()).release();
      await allowed.close();
      // A volatile-* policy is only logged (the driver's notes say what it risks); without maxmemory nothing is evicted.
      await admin.call('CONFIG', 'SET', 'maxmemory-policy', 'volatile-lru');
      await (await connect(own.url, { member: 'x', namespace: 'evict' })).close();
      await admin.call('CONFIG', 'SET', 'maxmemory', '0', 'maxmemory-policy', 'allkeys-lru');
      await (await connect(own.url, { member: 'x', namespace: 'evict' })).close();
    } finally {
      admin.disconnect();
      await own.stop();
    }
  });

  it('a malformed entry in a group stream makes the watch resync instead of crashing the reader', async () => {
    const own = await startRedis();
    const admin = new Redis({ host: own.host, port: own.port, lazyConnect: true });
    await admin.connect();
    const c = await connect(own.url, { member: 'w', namespace: 'bad' });
    try {
      const driver = (c as unknown as CoordinatorImpl).driver;
      await c.group('g').create();
      const before = await driver.getMembers('g');
      let resynced = false;
      const events: string[] = [];
      const stop = await driver.watchGroup('g', before.revision, {
        event: (e) => events.push(e.type),
        resync: () => {
          resynced = true;
        },
      });
      // The next sequence number, so only the unreadable capabilities are wrong.
      const n = await admin.incr('{bad}:n:g');
      await admin.xadd('{bad}:x:g', '*', 'n', String(n), 't', 'j', 'm', 'intruder', 'c', '{not json');
      await eventually(
        () => resynced,
        (r) => r,
        10_000,
        'the resync request',
      );
      expect(events).toEqual([]);
      stop();
      // The reader carries on for other watches.
      const recent = await driver.getMembers('g');
      const later: string[] = [];
      const stop2 = await driver.watchGroup('g', recent.revision, {
        event: (e) => later.push(`${e.type} ${e.member}`),
        resync: () => undefined,
      });
      await c.group('g').join();
      await eventually(
        () => later,
        (e) => e.includes('join w'),
        10_000,
        'the join',
      );
      stop2();
    } finally {
      admin.disconnect();
      await c.close();
      await own.stop();
    }
  });

  it('an aborted or timed-out wait leaves no queue entry, and closing leaves only fencing counters (with a TTL)', async () => {
    const own = await startRedis();
    const admin = new Redis({ host: own.host, port: own.port, lazyConnect: true });
    await admin.connect();
    const a = await connect(own.url, { member: 'a', namespace: 'tidy' });
    const b = await connect(own.url, { member: 'b', namespace: 'tidy' });
    try {
      await a.group('g').join({ create: true, capabilities: { x: 1 } });
      const held = await a.lock('l').acquire();
      const controller = new AbortController();
      const queued = new Promise<void>((resolve) => {
        (b as unknown as { once(event: symbol, listener: () => void): void }).once(kQueued, resolve);
      });
      const waiting = b
        .lock('l')
        .acquire({ signal: controller.signal })
        .then(
          () => 'acquired',
          (error: unknown) => (error as ConcordError).code,
        );
      await queued;
      expect(await admin.llen('{tidy}:q:lock:l')).toBe(1);
      controller.abort();
      expect(await waiting).toBe('ERR_ABORTED');
      // The acquire rejects at the abort; its clean-up script follows on b's connection, which the admin may overtake.
      const queueKeys = (): Promise<number> => admin.exists('{tidy}:q:lock:l', '{tidy}:qt:lock:l', '{tidy}:qn:lock:l', '{tidy}:qs:lock:l');
      await eventually(queueKeys, (n) => n === 0, 10_000, 'the aborted wait to leave the queue');
      await expect(b.lock('l').acquire({ timeoutMs: 50 })).rejects.toMatchObject({ code: 'ERR_LOCK_TIMEOUT' });
      await eventually(queueKeys, (n) => n === 0, 10_000, 'the timed-out wait to leave the queue');
      await held.release();
      await a.group('g').leave();
      await a.group('g').delete();
      await Promise.all([a.close(), b.close()]);
      const left = (await admin.keys('{tidy}:*')).sort();
      // The fencing counter stays (so tokens keep growing) but lapses; the deleted group's history lapses too.
      expect(left).toEqual(['{tidy}:f:lock:l', '{tidy}:n:g', '{tidy}:x:g']);
      for (const key of left) expect(await admin.pttl(key)).toBeGreaterThan(0);
    } finally {
      admin.disconnect();
      await Promise.all([a.close(), b.close()]);
      await own.stop();
    }
  });

  it('a watch that starts behind a trimmed stream asks for a resync instead of skipping changes', async () => {
    const own = await startRedis();
    const c = await connect(own.url, { member: 'w', namespace: 'trim' });
    try {
      const driver = (c as unknown as CoordinatorImpl).driver;
      await c.group('g').create();
      const before = await driver.getMembers('g');
      // More changes than the stream keeps (2,000 entries, trimmed in blocks).
      for (let i = 0; i < 1300; i++) {
        await c.group('g').join();
        await c.group('g').leave();
      }
      const seen: string[] = [];
      let resynced = false;
      const stop = await driver.watchGroup('g', before.revision, {
        event: (e) => seen.push(e.type),
        resync: () => {
          resynced = true;
        },
      });
      await eventually(
        () => resynced,
        (r) => r,
        10_000,
        'the resync request',
      );
      expect(seen).toEqual([]);
      stop();
      // From a recent revision the same group is followed without a resync.
      const recent = await driver.getMembers('g');
      const events: string[] = [];
      let again = false;
      const stop2 = await driver.watchGroup('g', recent.revision, {
        event: (e) => events.push(`${e.type} ${e.member}`),
        resync: () => {
          again = true;
        },
      });
      await c.group('g').join();
      await eventually(
        () => events.length,
        (n) => n === 1,
        10_000,
        'the join',
      );
      expect(events).toEqual(['join w']);
      expect(again).toBe(false);
      stop2();
    } finally {
      await c.close();
      await own.stop();
    }
  });

  it('without keyspace notifications (keyspaceEvents=false) a crashed member is still reaped by the live ones', async () => {
    const own = await startRedis();
    const url = `${own.url}?keyspaceEvents=false`;
    const admin = new Redis({ host: own.host, port: own.port, lazyConnect: true });
    await admin.connect();
    const watcher = await connect(url, { member: 'watcher', namespace: 'nokse', sessionTtlMs: 750 });
    const victim = await connect(url, { member: 'victim', namespace: 'nokse', sessionTtlMs: 750 });
    try {
      await victim.group('g').join({ create: true });
      const held = await victim.lock('l').acquire();
      const watch = watcher.group('g').watch();
      const events: string[] = [];
      const collecting = (async () => {
        for await (const e of watch) events.push(`${e.type} ${e.member}`);
      })();
      await eventually(
        () => events.length,
        (n) => n === 1,
        10_000,
        'the snapshot',
      );
      const waiting = watcher.lock('l').acquire();
      (victim as unknown as { [kCrash](): void })[kCrash]();
      await eventually(
        () => events,
        (e) => e.includes('leave victim'),
        15_000,
        'the crashed member to leave',
      );
      const next = await deadline(waiting, 15_000, 'the lock of the crashed member');
      expect(next.token).toBeGreaterThan(held.token);
      await next.release();
      expect((await admin.call('CONFIG', 'GET', 'notify-keyspace-events')) as string[]).toEqual(['notify-keyspace-events', '']);
      await watch.close();
      await collecting;
    } finally {
      admin.disconnect();
      await watcher.close();
      await own.stop();
    }
  });
});
