/**
 * TLS for real: a private MariaDB server with --ssl-cert/--ssl-key/--ssl-ca from a throwaway CA (certificate for
 * DNS:localhost, IP:127.0.0.1), and one with TLS off. The concord user has a password and REQUIRE SSL, and the
 * server's per-thread status (performance_schema) confirms each of its connections is encrypted.
 */
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { inspect } from 'node:util';
import mysql from 'mysql2/promise';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConcordError, connect, type Coordinator } from '../../../src/index.js';
import { startMariadb, type ServerHandle } from '../../support/servers.js';
import { makeCertificates, otherLoopbackName, tlsAvailability, type TestCertificates } from '../../support/tls.js';

const availability = tlsAvailability('mysql');
const USER = 'concord_tls';
// Distinctive, so that finding it anywhere in an error's text is unambiguous.
const PASSWORD = `pw-${randomBytes(8).toString('hex')}`;

/** Everything an error would print: message, stack, and each cause's, with every property inspect shows. */
function printed(error: unknown): string {
  const parts: string[] = [inspect(error, { depth: 10, showHidden: true })];
  for (let e: unknown = error; e instanceof Error; e = e.cause) parts.push(e.message, e.stack ?? '');
  return parts.join('\n');
}

/** root on the server; over TLS when `ca` is given (require_secure_transport may be on). */
async function admin<T>(server: ServerHandle, fn: (connection: mysql.Connection) => Promise<T>, ca?: string): Promise<T> {
  const connection = await mysql.createConnection({
    host: server.host,
    port: server.port,
    user: 'root',
    database: 'test',
    ...(ca !== undefined ? { ssl: { ca: readFileSync(ca, 'utf8') } } : {}),
  });
  try {
    return await fn(connection);
  } finally {
    await connection.end();
  }
}

describe.skipIf(!availability.ok)(`mysql over TLS${availability.ok ? '' : ` (skipped: ${availability.reason})`}`, () => {
  let certs: TestCertificates | undefined;
  let tls: ServerHandle | undefined;
  let plain: ServerHandle | undefined;
  let mismatchedName: string | undefined;
  const open: Coordinator[] = [];

  const url = (host: string, query: string, server = tls): string =>
    `mysql://${USER}:${PASSWORD}@${host}:${String(server?.port)}/test?${query}`;

  /** Ssl_cipher of every connection of the concord user, as the server sees it ('' for a plain one). */
  const ciphersOfConnections = (): Promise<string[]> =>
    admin(tls!, async (connection) => {
      const [rows] = await connection.query<mysql.RowDataPacket[]>(
        `SELECT s.VARIABLE_VALUE AS cipher FROM performance_schema.status_by_thread s
           JOIN performance_schema.threads t USING (THREAD_ID)
          WHERE s.VARIABLE_NAME = 'Ssl_cipher' AND t.PROCESSLIST_USER = ?`,
        [USER],
      );
      return rows.map((r) => String(r.cipher ?? ''));
    });

  beforeAll(async () => {
    certs = makeCertificates();
    mismatchedName = await otherLoopbackName();
    const started = await Promise.allSettled([
      startMariadb({ tls: { ...certs.server, ca: certs.ca }, args: ['--performance-schema=ON'] }),
      startMariadb(),
    ]);
    [tls, plain] = started.map((s) => (s.status === 'fulfilled' ? s.value : undefined));
    const failed = started.find((s): s is PromiseRejectedResult => s.status === 'rejected');
    if (failed) throw failed.reason;
    for (const [server, requireSsl] of [
      [tls!, true],
      [plain!, false],
    ] as const) {
      await admin(server, async (connection) => {
        await connection.query(`CREATE USER '${USER}'@'127.0.0.1' IDENTIFIED BY '${PASSWORD}'${requireSsl ? ' REQUIRE SSL' : ''}`);
        await connection.query(`GRANT ALL PRIVILEGES ON test.* TO '${USER}'@'127.0.0.1'`);
      });
    }
  }, 180_000);

  afterAll(async () => {
    await Promise.all(open.splice(0).map((c) => c.close()));
    await Promise.all([tls?.stop(), plain?.stop()]);
    certs?.remove();
  });

  it('VERIFY_IDENTITY with the CA, host localhost: locks and groups work, and every connection is encrypted', async () => {
    const c = await connect(url('localhost', `ssl-mode=VERIFY_IDENTITY&ssl-ca=${certs!.ca}`), { member: 'a', namespace: 'full' });
    open.push(c);
    const held = await c.lock('l').acquire();
    expect(await c.lock('l').holder()).toBe('a');
    await held.release();
    expect(await c.lock('l').holder()).toBeUndefined();
    await c.group('g').join({ create: true });
    expect((await c.group('g').members()).map((m) => m.id)).toEqual(['a']);

    const ciphers = await ciphersOfConnections();
    expect(ciphers.length).toBeGreaterThanOrEqual(1);
    for (const cipher of ciphers) expect(cipher).not.toBe('');
    await c.close();
    open.splice(open.indexOf(c), 1);
  });

  it('VERIFY_IDENTITY by IP address, and ssl=true with the CA: the certificate names 127.0.0.1 too', async () => {
    for (const query of [`ssl-mode=VERIFY_IDENTITY&ssl-ca=${certs!.ca}`, `ssl=true&ssl-ca=${certs!.ca}`]) {
      const c = await connect(url('127.0.0.1', query), { member: 'b', namespace: 'ip' });
      open.push(c);
      expect(await c.lock('l').tryAcquire()).toBeDefined();
      await c.close();
      open.splice(open.indexOf(c), 1);
    }
  });

  it('a CA that did not sign the server certificate is refused: ERR_CONNECTION about the certificate, no password in it', async () => {
    for (const mode of ['VERIFY_IDENTITY', 'VERIFY_CA', 'REQUIRED']) {
      const started = performance.now();
      const error = await connect(url('localhost', `ssl-mode=${mode}&ssl-ca=${certs!.otherCa}`), { namespace: 'wrong' }).catch(
        (e: unknown) => e,
      );
      expect(error, mode).toBeInstanceOf(ConcordError);
      expect((error as ConcordError).code, mode).toBe('ERR_CONNECTION');
      expect((error as ConcordError).message, mode).toMatch(/certificate/i);
      expect((error as ConcordError).message, mode).not.toMatch(/within \d+ ms/); // refused, not timed out
      expect(performance.now() - started, mode).toBeLessThan(8000);
      const text = printed(error);
      expect(text, mode).not.toContain(PASSWORD);
    }
  });

  it('VERIFY_IDENTITY refuses a certificate for another name; VERIFY_CA accepts it', async (context) => {
    if (mismatchedName === undefined) {
      context.skip('no host name other than localhost resolves to 127.0.0.1 here');
      return;
    }
    const error = await connect(url(mismatchedName, `ssl-mode=VERIFY_IDENTITY&ssl-ca=${certs!.ca}`), { namespace: 'name' }).then(
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
    const c = await connect(url(mismatchedName, `ssl-mode=VERIFY_CA&ssl-ca=${certs!.ca}`), { namespace: 'name' });
    await c.close();
  });

  it('ssl-mode=REQUIRED without a CA encrypts without checking the certificate', async () => {
    const c = await connect(url('127.0.0.1', 'ssl-mode=REQUIRED'), { member: 'r', namespace: 'require' });
    open.push(c);
    const held = await c.lock('l').acquire();
    await held.release();
    const ciphers = await ciphersOfConnections();
    expect(ciphers.length).toBeGreaterThanOrEqual(1);
    for (const cipher of ciphers) expect(cipher).not.toBe('');
    await c.close();
    open.splice(open.indexOf(c), 1);
  });

  it('with require_secure_transport on, a plain connection is refused (ERR_REFUSED) and REQUIRED connects', async () => {
    await admin(tls!, (connection) => connection.query('SET GLOBAL require_secure_transport = ON'));
    try {
      // root needs no TLS of its own: only the transport decides here.
      const error = await connect(`mysql://root@127.0.0.1:${String(tls!.port)}/test`, { namespace: 'secure' }).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(ConcordError);
      expect((error as ConcordError).code).toBe('ERR_REFUSED');
      // MySQL says "insecure transport"; MariaDB (10.11) only "Access denied", and logs no more.
      expect((error as ConcordError).message).toMatch(/insecure transport|Access denied/i);
      const c = await connect(`mysql://root@127.0.0.1:${String(tls!.port)}/test?ssl-mode=REQUIRED`, { namespace: 'secure' });
      await c.close();
    } finally {
      await admin(tls!, (connection) => connection.query('SET GLOBAL require_secure_transport = OFF'), certs!.ca);
    }
  });

  it('ssl-mode=REQUIRED against a server with TLS off fails at once with a ConcordError saying so', async () => {
    const started = performance.now();
    const error = await connect(url('127.0.0.1', 'ssl-mode=REQUIRED', plain), { namespace: 'plain', connectTimeoutMs: 20_000 }).catch(
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(ConcordError);
    expect((error as ConcordError).code).toBe('ERR_CONNECTION');
    expect((error as ConcordError).message).toMatch(/SSL|TLS|secure/i);
    expect(performance.now() - started).toBeLessThan(8000);
    expect(printed(error)).not.toContain(PASSWORD);
    // The same server and user without TLS: it was the TLS that failed.
    const c = await connect(url('127.0.0.1', 'ssl-mode=DISABLED', plain), { namespace: 'plain' });
    await c.close();
  });
});
