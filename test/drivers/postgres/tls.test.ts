/**
 * TLS for real: a private PostgreSQL server with ssl=on and a throwaway CA's certificate (DNS:localhost,
 * IP:127.0.0.1), and one with TLS off. The concord user has a password and may only connect over TLS (pg_hba), and
 * the server's pg_stat_ssl confirms each of its connections is encrypted.
 */
import { randomBytes } from 'node:crypto';
import { inspect } from 'node:util';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConcordError, connect, type Coordinator } from '../../../src/index.js';
import { startPostgres, type ServerHandle } from '../../support/servers.js';
import { makeCertificates, otherLoopbackName, tlsAvailability, type TestCertificates } from '../../support/tls.js';

const availability = tlsAvailability('postgres');
const USER = 'concord_tls';
// Distinctive, so that finding it anywhere in an error's text is unambiguous.
const PASSWORD = `pw-${randomBytes(8).toString('hex')}`;

/** Everything an error would print: message, stack, and each cause's, with every property inspect shows. */
function printed(error: unknown): string {
  const parts: string[] = [inspect(error, { depth: 10, showHidden: true })];
  for (let e: unknown = error; e instanceof Error; e = e.cause) parts.push(e.message, e.stack ?? '');
  return parts.join('\n');
}

async function admin<T>(server: ServerHandle, fn: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: server.url });
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end();
  }
}

describe.skipIf(!availability.ok)(`postgres over TLS${availability.ok ? '' : ` (skipped: ${availability.reason})`}`, () => {
  let certs: TestCertificates | undefined;
  let tls: ServerHandle | undefined;
  let plain: ServerHandle | undefined;
  let mismatchedName: string | undefined;
  const open: Coordinator[] = [];

  const url = (host: string, query: string, server = tls): string =>
    `postgres://${USER}:${PASSWORD}@${host}:${String(server?.port)}/${USER}?${query}`;

  /** ssl of every backend of the concord user, as the server sees it. */
  const sslOfConnections = (): Promise<boolean[]> =>
    admin(tls!, async (client) => {
      const { rows } = await client.query<{ ssl: boolean }>(
        'SELECT s.ssl FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid) WHERE a.usename = $1',
        [USER],
      );
      return rows.map((r) => r.ssl);
    });

  beforeAll(async () => {
    certs = makeCertificates();
    mismatchedName = await otherLoopbackName();
    const started = await Promise.allSettled([
      startPostgres({
        tls: certs.server,
        // The concord user: a password (scram), and over TLS only.
        hba: [`hostssl all ${USER} 127.0.0.1/32 scram-sha-256`, `host all ${USER} 127.0.0.1/32 reject`],
      }),
      startPostgres(),
    ]);
    [tls, plain] = started.map((s) => (s.status === 'fulfilled' ? s.value : undefined));
    const failed = started.find((s): s is PromiseRejectedResult => s.status === 'rejected');
    if (failed) throw failed.reason;
    for (const server of [tls!, plain!]) {
      await admin(server, async (client) => {
        await client.query(`CREATE ROLE ${USER} LOGIN PASSWORD '${PASSWORD}'`);
        // Its own database: the owner may create tables in its public schema (PostgreSQL 15 no longer lets anyone).
        await client.query(`CREATE DATABASE ${USER} OWNER ${USER}`);
      });
    }
  }, 180_000);

  afterAll(async () => {
    await Promise.all(open.splice(0).map((c) => c.close()));
    await Promise.all([tls?.stop(), plain?.stop()]);
    certs?.remove();
  });

  it('verify-full with the CA, host localhost: locks and groups work, and every connection is encrypted', async () => {
    const c = await connect(url('localhost', `sslmode=verify-full&sslrootcert=${certs!.ca}`), { member: 'a', namespace: 'full' });
    open.push(c);
    const held = await c.lock('l').acquire();
    expect(await c.lock('l').holder()).toBe('a');
    await held.release();
    expect(await c.lock('l').holder()).toBeUndefined();
    await c.group('g').join({ create: true });
    expect((await c.group('g').members()).map((m) => m.id)).toEqual(['a']);

    const ssl = await sslOfConnections();
    expect(ssl.length).toBeGreaterThanOrEqual(2); // the pool's and the LISTEN connection
    expect(ssl.every((s) => s)).toBe(true);
    await c.close();
    open.splice(open.indexOf(c), 1);
  });

  it('verify-full by IP address: the certificate names 127.0.0.1 too', async () => {
    const c = await connect(url('127.0.0.1', `sslmode=verify-full&sslrootcert=${certs!.ca}`), { member: 'b', namespace: 'ip' });
    open.push(c);
    expect(await c.lock('l').tryAcquire()).toBeDefined();
    await c.close();
    open.splice(open.indexOf(c), 1);
  });

  it('a CA that did not sign the server certificate is refused: ERR_CONNECTION about the certificate, no password in it', async () => {
    const started = performance.now();
    const error = await connect(url('localhost', `sslmode=verify-full&sslrootcert=${certs!.otherCa}`), { namespace: 'wrong' }).catch(
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(ConcordError);
    expect((error as ConcordError).code).toBe('ERR_CONNECTION');
    expect((error as ConcordError).message).toMatch(/certificate/i);
    expect((error as ConcordError).message).not.toMatch(/within \d+ ms/); // refused, not timed out
    expect(performance.now() - started).toBeLessThan(8000);
    const text = printed(error);
    expect(text).toContain('certificate');
    expect(text).not.toContain(PASSWORD);
    // verify-ca with the wrong CA is refused the same way.
    const ca = await connect(url('localhost', `sslmode=verify-ca&sslrootcert=${certs!.otherCa}`), { namespace: 'wrong' }).catch(
      (e: unknown) => e,
    );
    expect((ca as ConcordError).code).toBe('ERR_CONNECTION');
    expect(printed(ca)).not.toContain(PASSWORD);
  });

  it('verify-full refuses a certificate for another name; verify-ca accepts it', async (context) => {
    if (mismatchedName === undefined) {
      context.skip('no host name other than localhost resolves to 127.0.0.1 here');
      return;
    }
    const error = await connect(url(mismatchedName, `sslmode=verify-full&sslrootcert=${certs!.ca}`), { namespace: 'name' }).then(
      async (c) => {
        await c.close();
        return new Error(`connected to ${mismatchedName} with a certificate for localhost and 127.0.0.1`);
      },
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(ConcordError);
    expect((error as ConcordError).code).toBe('ERR_CONNECTION');
    expect((error as ConcordError).message).toMatch(
      new RegExp(`${mismatchedName}.*(altnames|certificate)|certificate.*${mismatchedName}`, 'i'),
    );
    expect(printed(error)).not.toContain(PASSWORD);
    const c = await connect(url(mismatchedName, `sslmode=verify-ca&sslrootcert=${certs!.ca}`), { namespace: 'name' });
    await c.close();
  });

  it('sslmode=require without a CA encrypts without checking the certificate', async () => {
    const c = await connect(url('127.0.0.1', 'sslmode=require'), { member: 'r', namespace: 'require' });
    open.push(c);
    const held = await c.lock('l').acquire();
    await held.release();
    const ssl = await sslOfConnections();
    expect(ssl.length).toBeGreaterThanOrEqual(1);
    expect(ssl.every((s) => s)).toBe(true);
    await c.close();
    open.splice(open.indexOf(c), 1);
  });

  it('sslmode=require against a server with TLS off fails at once with a ConcordError saying so', async () => {
    const started = performance.now();
    const error = await connect(url('127.0.0.1', 'sslmode=require', plain), { namespace: 'plain', connectTimeoutMs: 20_000 }).catch(
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(ConcordError);
    expect((error as ConcordError).code).toBe('ERR_CONNECTION');
    expect((error as ConcordError).message).toMatch(/SSL|TLS/);
    expect(performance.now() - started).toBeLessThan(8000);
    expect(printed(error)).not.toContain(PASSWORD);
    // The same server and user without TLS: it was the TLS that failed.
    const c = await connect(url('127.0.0.1', 'sslmode=disable', plain), { namespace: 'plain' });
    await c.close();
  });
});
