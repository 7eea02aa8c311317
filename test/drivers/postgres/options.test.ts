/** postgres:// URL parameters: TLS with libpq's sslmode meanings, refused with ERR_INVALID_URL before any I/O. */
import { describe, expect, it } from 'vitest';
import { ConcordError, connect } from '../../../src/index.js';
import { parseTls, poolConfig, tlsOptions } from '../../../drivers/postgres/options.js';

const read = (path: string): string => `PEM of ${path}`;
const tls = (query: string): ReturnType<typeof tlsOptions> => tlsOptions(parseTls(new URLSearchParams(query)), read);

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

describe('postgres TLS parameters', () => {
  it('connects without TLS by default, and for disable, allow and prefer', () => {
    for (const query of ['', 'sslmode=disable', 'sslmode=allow', 'sslmode=prefer', 'ssl=false']) expect(tls(query), query).toBe(false);
  });

  it('require encrypts without checking the certificate; with sslrootcert it checks the CA, as libpq does', () => {
    expect(tls('sslmode=require')).toEqual({ rejectUnauthorized: false });
    expect(tls('ssl=true')).toEqual({ rejectUnauthorized: false });
    const withCa = tls('sslmode=require&sslrootcert=/etc/ca.pem');
    expect(withCa).toMatchObject({ ca: 'PEM of /etc/ca.pem', rejectUnauthorized: true });
    expect(withCa && typeof withCa.checkServerIdentity).toBe('function');
  });

  it('verify-ca checks the CA but not the host name; verify-full checks both', () => {
    const ca = tls('sslmode=verify-ca&sslrootcert=/etc/ca.pem');
    expect(ca).toMatchObject({ ca: 'PEM of /etc/ca.pem', rejectUnauthorized: true });
    expect(ca && ca.checkServerIdentity?.('db.example', {} as never)).toBeUndefined();
    const full = tls('sslmode=verify-full&sslrootcert=/etc/ca.pem');
    expect(full).toEqual({ ca: 'PEM of /etc/ca.pem', rejectUnauthorized: true });
    expect(tls('sslmode=verify-full')).toEqual({ rejectUnauthorized: true });
    expect(tls('sslrootcert=system')).toEqual({ rejectUnauthorized: true });
  });

  it('takes a client certificate and key', () => {
    expect(tls('sslmode=verify-full&sslcert=/c.pem&sslkey=/k.pem')).toEqual({
      cert: 'PEM of /c.pem',
      key: 'PEM of /k.pem',
      rejectUnauthorized: true,
    });
  });

  it('refuses what it cannot honour, naming the parameter', () => {
    invalid(
      () => parseTls(new URLSearchParams('sslmode=verify_full')),
      /sslmode must be one of disable, allow, prefer, require, verify-ca, verify-full, got "verify_full"/,
    );
    invalid(() => parseTls(new URLSearchParams('ssl=yes')), /ssl must be true or false/);
    invalid(() => parseTls(new URLSearchParams('sslmode=require&sslcert=/c.pem')), /sslcert and sslkey go together/);
    invalid(() => parseTls(new URLSearchParams('sslmode=require&sslrootcert=system')), /sslrootcert=system needs sslmode=verify-full/);
    invalid(
      () => tlsOptions(parseTls(new URLSearchParams('sslmode=verify-full&sslrootcert=/nonexistent/ca.pem'))),
      /sslrootcert "\/nonexistent\/ca.pem" cannot be read/,
    );
  });

  it('hands pg a connection string without the TLS parameters (pg would read them its own way) and keeps the rest', () => {
    const config = poolConfig({
      url: new URL('postgres://app:secret@db.example:6543/app'),
      params: new URLSearchParams('sslmode=verify-full&application_name=x'),
      sessionTtlMs: 10_000,
      connectTimeoutMs: 5000,
    });
    expect(config.connectionString).toBe('postgres://app:secret@db.example:6543/app?application_name=x');
    expect(config.ssl).toMatchObject({ rejectUnauthorized: true });
  });

  it('connect() refuses a bad sslmode before any I/O', async () => {
    // Port 1: nothing listens; the refusal must come from the URL, not from a connection attempt.
    await expect(connect('postgres://127.0.0.1:1/app?sslmode=on')).rejects.toMatchObject({
      code: 'ERR_INVALID_URL',
      message: expect.stringMatching(/sslmode/) as unknown,
    });
  });
});
