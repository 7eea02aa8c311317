import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { rmSync } from 'node:fs';
import { request } from 'node:http';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConcordError, connect } from '../../../src/index.js';
import { driver as etcd } from '../../../drivers/etcd/index.js';
import { FaultProxy } from '../../support/proxy.js';
import { makeCertificates } from '../../support/tls.js';
import { etcdctlBinary, freePort, isReachable, requireServer, startEtcd, type ServerHandle } from '../../support/servers.js';
import { Collector, deadline, eventually, once } from '../../support/wait.js';
import { servedTarget } from '../../conformance/served.js';
import { describeConformance } from '../../conformance/suite.js';

const availability = requireServer('etcd');

describe.skipIf(!availability.ok)(`etcd${availability.ok ? '' : ` (skipped: ${availability.reason})`}`, () => {
  describeConformance({
    ...servedTarget({
      name: 'etcd',
      scheme: 'etcd',
      start: () => startEtcd(),
      // etcd's minimum lease; lease expiry is checked every 500 ms by etcd's lessor, then pushed to watchers.
      shortTtlMs: 2000,
      detectionDelayMs: 1000,
    }),
    descriptor: etcd,
  });
});

// ---------------------------------------------------------------------------------------------------------------
// What only the etcd driver has: its URL forms, the minimum TTL, TLS with client certificates, password auth.

const sh = (file: string, args: string[], cwd?: string): string =>
  execFileSync(file, args, { cwd, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });

describe.skipIf(!availability.ok)('etcd driver specifics', () => {
  describe('URLs and options', () => {
    let plain: ServerHandle | undefined;
    beforeAll(async () => {
      plain = await startEtcd();
    });
    afterAll(async () => {
      await plain?.stop();
    });

    it("rejects a sessionTtlMs under etcd's 2 s minimum lease, naming it and why, before connecting", async () => {
      // Port 1 has no etcd: any I/O would fail differently.
      const error = await connect('etcd://127.0.0.1:1', { sessionTtlMs: 1500 }).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(ConcordError);
      expect((error as ConcordError).code).toBe('ERR_INVALID_ARGUMENT');
      expect((error as ConcordError).message).toMatch(/sessionTtlMs must be at least 2000 ms \(the shortest session etcd can keep\)/);
      await expect(connect('etcd://127.0.0.1:1?sessionTtlMs=1999')).rejects.toMatchObject({ code: 'ERR_INVALID_ARGUMENT' });
    });

    it('rejects malformed host lists and TLS files on etcd://', async () => {
      await expect(connect('etcd://127.0.0.1:99999')).rejects.toMatchObject({ code: 'ERR_INVALID_URL' });
      await expect(connect('etcd://127.0.0.1:2379,:x')).rejects.toMatchObject({ code: 'ERR_INVALID_URL' });
      await expect(connect('etcd://127.0.0.1:2379?ca=/etc/hostname')).rejects.toMatchObject({ code: 'ERR_INVALID_URL' });
      await expect(connect('etcds://127.0.0.1:2379?ca=/nonexistent/ca.pem')).rejects.toMatchObject({ code: 'ERR_INVALID_URL' });
      await expect(connect('etcd://127.0.0.1:2379/some/path')).rejects.toMatchObject({ code: 'ERR_INVALID_URL' });
    });

    it('keeps names with slashes apart: group "a" never sees the members of "a/b", nor lock "x" the holder of "x/y"', async () => {
      if (!plain) throw new Error('etcd is not running');
      const a = await connect(plain.url, { member: 'm/1', namespace: 'ns/with/slashes' });
      const other = await connect(plain.url, { member: 'm', namespace: 'ns' });
      try {
        await a.group('a').create();
        await a.group('a/b').join({ create: true });
        expect(await a.group('a').members()).toEqual([]);
        expect(await a.group('a/b').members()).toEqual([{ id: 'm/1', capabilities: {} }]);
        expect(await a.groups()).toEqual(['a', 'a/b']);
        await a.group('a').delete();
        const held = await a.lock('x/y').acquire();
        expect(await a.lock('x').holder()).toBeUndefined();
        expect(await a.lock('x/y').holder()).toBe('m/1');
        expect(await other.groups()).toEqual([]);
        expect(await other.lock('x/y').holder()).toBeUndefined();
        await held.release();
      } finally {
        await a.close();
        await other.close();
      }
    });

    it('works through a host list whose first host is down', async () => {
      if (!plain) throw new Error('etcd is not running');
      const dead = await freePort();
      const url = `etcd://127.0.0.1:${dead},127.0.0.1:${plain.port}`;
      const a = await connect(url, { member: 'a', namespace: 'hosts' });
      const b = await connect(url, { member: 'b', namespace: 'hosts' });
      try {
        for (let i = 0; i < 5; i++) {
          await a.group('g').join({ create: true });
          const held = await a.lock('l').acquire();
          expect(await b.lock('l').holder()).toBe('a');
          await held.release();
          await a.group('g').leave();
        }
        expect(a.features).toEqual(etcd.features);
      } finally {
        await a.close();
        await b.close();
      }
    });
  });

  describe('password auth', () => {
    let server: ServerHandle | undefined;
    const password = 'pa:ss/w@rd-7c1';
    beforeAll(async () => {
      server = await startEtcd();
      const ctl = etcdctlBinary();
      if (!ctl) throw new Error('etcdctl not found: apt-get install -y etcd-client');
      const endpoint = ['--endpoints', `http://127.0.0.1:${server.port}`];
      sh(ctl, [...endpoint, 'user', 'add', `root:${password}`, '--interactive=false']);
      sh(ctl, [...endpoint, 'user', 'grant-role', 'root', 'root']);
      sh(ctl, [...endpoint, 'auth', 'enable']);
    });
    afterAll(async () => {
      await server?.stop();
    });

    it("connects with the URL's user and password, and never shows the password", async () => {
      if (!server) throw new Error('etcd is not running');
      const url = `etcd://root:${encodeURIComponent(password)}@127.0.0.1:${server.port}`;
      const a = await connect(url, { member: 'a', namespace: 'auth' });
      const b = await connect(url, { member: 'b', namespace: 'auth' });
      try {
        expect(a.url).not.toContain(encodeURIComponent(password));
        expect(a.url).toContain('***');
        const events = new Collector(b.group('g').watch());
        await a.group('g').join({ create: true, capabilities: { x: 1 } });
        await events.until((e) => e.some((x) => x.type === 'join' && x.member === 'a'), 'the join');
        const held = await a.lock('l').acquire();
        expect(await b.lock('l').holder()).toBe('a');
        await held.release();
      } finally {
        await a.close();
        await b.close();
      }
      const wrong = await connect(`etcd://root:not-${encodeURIComponent(password)}@127.0.0.1:${server.port}`, { namespace: 'auth' }).catch(
        (e: unknown) => e,
      );
      expect(wrong).toBeInstanceOf(ConcordError);
      // Retrying cannot fix a wrong password: refused, naming the user, never showing the password.
      expect((wrong as ConcordError).code).toBe('ERR_REFUSED');
      expect((wrong as ConcordError).message).toContain('"root"');
      expect((wrong as ConcordError).message).not.toContain(password);
      expect((wrong as ConcordError).message).not.toContain(encodeURIComponent(password));
      // etcd grants leases without authentication, but the namespace's keys are not readable: refused at connect.
      const anonymous = await connect(`etcd://127.0.0.1:${server.port}`, { namespace: 'auth' }).catch((e: unknown) => e);
      expect(anonymous).toMatchObject({ code: 'ERR_REFUSED' });
      expect((anonymous as ConcordError).message).toMatch(/names no user/);
    });
  });

  describe('TLS (etcds://) with a client certificate', () => {
    let dir = '';
    let etcd: ChildProcess | undefined;
    let port = 0;
    beforeAll(async () => {
      // A CA, a server certificate for 127.0.0.1 and localhost, and a client certificate (CN root) it signed.
      dir = makeCertificates({ client: 'root' }).dir;
      port = await freePort();
      const peer = await freePort();
      etcd = spawn(
        '/usr/bin/etcd',
        [
          '--name',
          'tls',
          '--data-dir',
          join(dir, 'data'),
          '--listen-client-urls',
          `https://127.0.0.1:${port}`,
          '--advertise-client-urls',
          `https://127.0.0.1:${port}`,
          '--listen-peer-urls',
          `http://127.0.0.1:${peer}`,
          '--initial-advertise-peer-urls',
          `http://127.0.0.1:${peer}`,
          '--initial-cluster',
          `tls=http://127.0.0.1:${peer}`,
          '--cert-file',
          join(dir, 'server.pem'),
          '--key-file',
          join(dir, 'server.key'),
          '--trusted-ca-file',
          join(dir, 'ca.pem'),
          '--client-cert-auth',
          '--log-level',
          'warn',
        ],
        { stdio: 'ignore', env: Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('ETCD_'))) },
      );
      await eventually(
        () => isReachable('127.0.0.1', port),
        (up) => up,
        20_000,
        'etcd with TLS to listen',
      );
    });
    afterAll(async () => {
      if (etcd && etcd.exitCode === null) {
        const exited = new Promise((resolve) => etcd?.once('exit', resolve));
        etcd.kill('SIGKILL');
        await exited;
      }
      if (dir) rmSync(dir, { recursive: true, force: true });
    });

    it('an IP address as the host: connects before Node 26, which refuses it as a TLS server name (ERR_INVALID_URL, saying why)', async () => {
      const files = `ca=${join(dir, 'ca.pem')}&cert=${join(dir, 'client.pem')}&key=${join(dir, 'client.key')}`;
      const byIp = connect(`etcds://127.0.0.1:${port}?${files}`, { member: 'ip', namespace: 'tls' });
      if (Number(process.versions.node.split('.')[0]) >= 26) {
        await expect(byIp).rejects.toMatchObject({ code: 'ERR_INVALID_URL', message: expect.stringMatching(/TLS server name/) as string });
      } else {
        const c = await byIp;
        expect(c.session.state).toBe('connected');
        await c.close();
      }
    });

    it('connects with ca, cert and key from the URL, and is refused without the client certificate', async () => {
      const files = `ca=${join(dir, 'ca.pem')}&cert=${join(dir, 'client.pem')}&key=${join(dir, 'client.key')}`;
      const url = `etcds://localhost:${port}?${files}`;
      const a = await eventually(
        () => connect(url, { member: 'a', namespace: 'tls' }).catch(() => undefined),
        (c) => c !== undefined,
        20_000,
        'a TLS connection',
      );
      if (!a) throw new Error('no TLS connection');
      try {
        await a.group('g').join({ create: true });
        expect((await a.group('g').members()).map((m) => m.id)).toEqual(['a']);
        const held = await a.lock('l').acquire();
        expect(await a.lock('l').holder()).toBe('a');
        await held.release();
      } finally {
        await a.close();
      }
      const refused = await connect(`etcds://localhost:${port}?ca=${join(dir, 'ca.pem')}`, { namespace: 'tls' }).catch((e: unknown) => e);
      expect((refused as ConcordError).code).toBe('ERR_CONNECTION');
      await expect(connect(`etcds://127.0.0.1:${port}?ca=${join(dir, 'ca.pem')}&cert=${join(dir, 'client.pem')}`)).rejects.toMatchObject({
        code: 'ERR_INVALID_URL',
      });
    });
  });

  describe('abandoned acquisitions and watches leave nothing behind', () => {
    let plain: ServerHandle | undefined;
    beforeAll(async () => {
      plain = await startEtcd();
    });
    afterAll(async () => {
      await plain?.stop();
    });

    it('a lock put whose answer is lost: tryAcquire fails with ERR_CONNECTION, and once the link is back the key is gone', async () => {
      if (!plain) throw new Error('etcd is not running');
      const link = await FaultProxy.start({ host: plain.host, port: plain.port });
      // A long TTL: the key must go because it is cancelled, not because the session expires.
      const a = await connect(`etcd://127.0.0.1:${link.port}`, { member: 'a', namespace: 'cancel', sessionTtlMs: 20_000 });
      const b = await connect(plain.url, { member: 'b', namespace: 'cancel' });
      try {
        const seen: string[] = [];
        for (const e of ['suspended', 'reconnected', 'lost'] as const) a.on(e, () => seen.push(e));
        link.dropReplies();
        const attempt = a
          .lock('l')
          .tryAcquire()
          .then(
            () => undefined,
            (error: unknown) => error,
          );
        // The put reached etcd; its answer did not reach us.
        await eventually(
          () => b.lock('l').holder(),
          (h) => h === 'a',
          30_000,
          'the put to land',
        );
        const suspended = once(a, 'suspended', 30_000);
        link.cut();
        expect(await deadline(attempt, 30_000, 'the attempt to fail')).toMatchObject({ code: 'ERR_CONNECTION' });
        // The cancel that follows fails too (the link is down); the core retries it on reconnection.
        await suspended;
        expect(await b.lock('l').holder()).toBe('a');
        const reconnected = once(a, 'reconnected', 30_000);
        link.pass();
        await reconnected;
        await eventually(
          () => b.lock('l').holder(),
          (h) => h === undefined,
          30_000,
          'the leftover key to be cancelled',
        );
        const held = await b.lock('l').acquire({ timeoutMs: 30_000 });
        expect(seen).not.toContain('lost');
        expect(a.session.state).not.toBe('lost');
        await held.release();
        // And the coordinator whose answer was lost acquires normally.
        const again = await a.lock('l').tryAcquire();
        expect(again).toBeDefined();
        await again?.release();
      } finally {
        await a.close();
        await b.close();
        await link.close();
      }
    }, 120_000);

    it('a leftover own key: tryAcquire of the same coordinator is not told that someone else holds it', async () => {
      if (!plain) throw new Error('etcd is not running');
      const driver = await etcd.create({
        url: new URL(plain.url),
        rawUrl: plain.url,
        params: new URLSearchParams(),
        namespace: 'leftover',
        member: 'a',
        sessionTtlMs: 10_000,
        connectTimeoutMs: 10_000,
        signal: new AbortController().signal,
        events: { sessionExpired: () => undefined, lockLost: () => undefined },
      });
      try {
        const session = await driver.openSession(10_000);
        const token = await driver.tryLock('lock', 'l', session, 'a');
        if (token === undefined) throw new Error('not acquired');
        // As if the answer had been lost: the same attempt again finds its own key, the lowest.
        expect(await driver.tryLock('lock', 'l', session, 'a')).toBe(token);
        await driver.cancelLock('lock', 'l', session);
        expect(await driver.lockHolder('lock', 'l')).toBeUndefined();
        // Idempotent, and never another session's key.
        await driver.cancelLock('lock', 'l', session);
        const other = await driver.openSession(10_000);
        const theirs = await driver.tryLock('lock', 'l', other, 'b');
        expect(theirs).toBeDefined();
        await driver.cancelLock('lock', 'l', session);
        expect(await driver.lockHolder('lock', 'l')).toEqual({ member: 'b', token: theirs });
        await driver.closeSession(other);
        await driver.closeSession(session);
      } finally {
        await driver.close();
      }
    }, 60_000);

    it('a lock watch unsubscribed before etcd confirmed it is cancelled on the server', async () => {
      if (!plain) throw new Error('etcd is not running');
      const server = plain;
      const watchers = (): Promise<number> => metric(server.port, 'etcd_debugging_mvcc_watcher_total');
      const before = await watchers();
      const driver = await etcd.create({
        url: new URL(plain.url),
        rawUrl: plain.url,
        params: new URLSearchParams(),
        namespace: 'watchleak',
        member: 'a',
        sessionTtlMs: 10_000,
        connectTimeoutMs: 10_000,
        signal: new AbortController().signal,
        events: { sessionExpired: () => undefined, lockLost: () => undefined },
      });
      try {
        // A read first: watchLock then starts from a known revision and returns before etcd confirms the watch.
        await driver.lockHolder('lock', 'l');
        // One watch that stays, so the stream is up and its count is known.
        let kept = 0;
        const keep = await driver.watchLock('lock', 'kept', () => kept++);
        await eventually(watchers, (n) => n === before + 1, 30_000, 'the kept watch to be created');
        for (let i = 0; i < 50; i++) {
          const unsubscribe = await driver.watchLock('lock', `l${i}`, () => undefined);
          unsubscribe();
        }
        await eventually(watchers, (n) => n === before + 1, 30_000, 'the removed watches to be cancelled on the server');
        keep();
        await eventually(watchers, (n) => n === before, 30_000, 'the kept watch to be cancelled');
      } finally {
        await driver.close();
      }
    }, 120_000);
  });
});

/** One value of etcd's Prometheus metrics (summed over label sets), read over a connection closed afterwards. */
function metric(port: number, name: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path: '/metrics', agent: false, headers: { connection: 'close' } }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (body += chunk));
      res.on('end', () => {
        let total = 0;
        for (const line of body.split('\n')) {
          if (line.startsWith(`${name} `) || line.startsWith(`${name}{`)) total += Number(line.slice(line.lastIndexOf(' ') + 1));
        }
        resolve(total);
      });
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end();
  });
}
