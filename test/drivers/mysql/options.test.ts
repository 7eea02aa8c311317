/** mysql:// URL parameters: TLS with the MySQL client's ssl-mode meanings, refused with ERR_INVALID_URL before any I/O. */
import { describe, expect, it } from 'vitest';
import { ConcordError, connect } from '../../../src/index.js';
import { parseTls, poolOptions, sslOptions } from '../../../drivers/mysql/options.js';

const read = (path: string): string => `PEM of ${path}`;
const ssl = (query: string): ReturnType<typeof sslOptions> => sslOptions(parseTls(new URLSearchParams(query)), read);

function invalid(fn: () => unknown, pattern: RegExp): void {
  try {
    fn();
  } catch (error) {
    expect(error).toBeInstanceOf(ConcordError);
    expect((error as ConcordError).code).toBe('ERR_INVALID_URL');
    expect((error as Error).message).toMatch(pattern);
    return;
  }
  throw new Error('expected ERR_INVALID_URL');
}

describe('mysql TLS parameters', () => {
  it('connects without TLS by default, and for DISABLED and PREFERRED', () => {
    for (const query of ['', 'ssl-mode=DISABLED', 'ssl-mode=preferred', 'ssl=false']) expect(ssl(query), query).toBeUndefined();
  });

  it('REQUIRED encrypts without checking the certificate; with a CA it checks it, as the mysql client does', () => {
    expect(ssl('ssl-mode=REQUIRED')).toEqual({ rejectUnauthorized: false });
    expect(ssl('ssl=true&sslverify=false')).toEqual({ rejectUnauthorized: false });
    expect(parseTls(new URLSearchParams('ssl-mode=REQUIRED&ssl-ca=/ca.pem')).mode).toBe('verify_ca');
    expect(ssl('ssl-mode=REQUIRED&ssl-ca=/ca.pem')).toEqual({ ca: 'PEM of /ca.pem', rejectUnauthorized: true });
  });

  it('VERIFY_CA checks the certificate, VERIFY_IDENTITY the host name too; ssl=true is VERIFY_IDENTITY', () => {
    expect(ssl('ssl-mode=VERIFY_IDENTITY&ssl-ca=/ca.pem')).toEqual({
      ca: 'PEM of /ca.pem',
      rejectUnauthorized: true,
      verifyIdentity: true,
    });
    expect(ssl('sslmode=verify-ca')).toEqual({ rejectUnauthorized: true });
    expect(ssl('ssl=true')).toEqual({ rejectUnauthorized: true, verifyIdentity: true });
    expect(ssl('ssl=true&sslca=/ca.pem')).toEqual({ ca: 'PEM of /ca.pem', rejectUnauthorized: true, verifyIdentity: true });
  });

  it('takes a client certificate and key, under either spelling', () => {
    expect(ssl('ssl-mode=VERIFY_IDENTITY&ssl_cert=/c.pem&sslkey=/k.pem')).toEqual({
      cert: 'PEM of /c.pem',
      key: 'PEM of /k.pem',
      rejectUnauthorized: true,
      verifyIdentity: true,
    });
  });

  it('refuses what it cannot honour, naming the parameter', () => {
    invalid(
      () => parseTls(new URLSearchParams('ssl-mode=ON')),
      /ssl-mode must be one of DISABLED, PREFERRED, REQUIRED, VERIFY_CA, VERIFY_IDENTITY, got "ON"/,
    );
    invalid(() => parseTls(new URLSearchParams('ssl=required')), /ssl must be true or false/);
    invalid(() => parseTls(new URLSearchParams('ssl=true&sslverify=no')), /sslverify must be true or false/);
    invalid(() => parseTls(new URLSearchParams('ssl-mode=REQUIRED&ssl-key=/k.pem')), /ssl-cert and ssl-key go together/);
    invalid(
      () => sslOptions(parseTls(new URLSearchParams('ssl-mode=REQUIRED&ssl-ca=/nonexistent/ca.pem'))),
      /ssl-ca "\/nonexistent\/ca.pem" cannot be read/,
    );
    invalid(
      () => poolOptions({ url: new URL('mysql://root@db.example:3306'), params: new URLSearchParams(), connectTimeoutMs: 1000 }),
      /must name the database/,
    );
  });

  it('reads user, password, host, port and database from the URL', () => {
    const options = poolOptions({
      url: new URL('mysql://app:p%40ss@db.example:3307/my%20db'),
      params: new URLSearchParams('ssl-mode=REQUIRED'),
      connectTimeoutMs: 5000,
    });
    expect(options).toMatchObject({
      host: 'db.example',
      port: 3307,
      user: 'app',
      password: 'p@ss',
      database: 'my db',
      ssl: { rejectUnauthorized: false },
    });
  });

  it('connect() refuses a bad ssl-mode before any I/O', async () => {
    await expect(connect('mysql://root@127.0.0.1:1/test?ssl-mode=ON')).rejects.toMatchObject({
      code: 'ERR_INVALID_URL',
      message: expect.stringMatching(/ssl-mode/) as unknown,
    });
  });
});
