import { describe, expect, it } from 'vitest';
import { ConcordError, connect, isConcordError } from '../../src/index.js';
import { importClient } from '../../src/client.js';
import { hostList, parseUrl, redact } from '../../src/url.js';

describe('ConcordError', () => {
  it('carries a code and a cause, and instanceof works across copies of the package', () => {
    const cause = new Error('socket hang up');
    const error = new ConcordError('ERR_CONNECTION', 'no backend', { cause });
    expect(error.code).toBe('ERR_CONNECTION');
    expect(error.cause).toBe(cause);
    expect(error.name).toBe('ConcordError');
    expect(error).toBeInstanceOf(Error);
    // Another copy of the class (a second install of the package) brands its instances the same way.
    const foreign = Object.assign(new Error('x'), { code: 'ERR_CLOSED' });
    Object.defineProperty(foreign, Symbol.for('concord.ConcordError'), { value: true });
    expect(foreign).toBeInstanceOf(ConcordError);
    expect(new Error('plain')).not.toBeInstanceOf(ConcordError);
    expect(isConcordError(error, 'ERR_CONNECTION')).toBe(true);
    expect(isConcordError(error, 'ERR_CLOSED')).toBe(false);
  });
});

describe('URLs', () => {
  it('masks passwords, also in URLs that do not parse', () => {
    expect(redact('redis://:secret@127.0.0.1:6379/0')).toBe('redis://:***@127.0.0.1:6379/0');
    expect(redact('postgres://app:pw@db/app')).toBe('postgres://app:***@db/app');
    expect(redact('etcd://u:p@a:1,b:2')).toBe('etcd://u:***@a:1,b:2');
    expect(redact('memory://plain')).toBe('memory://plain');
  });

  it('never shows a password in an error or in coordinator.url', async () => {
    for (const bad of ['redis://:hunter2@[::1', 'gopher://u:hunter2@x', 'memory://u:hunter2@x?sessionTtlMs=abc']) {
      const error = await connect(bad).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(ConcordError);
      expect((error as Error).message).not.toContain('hunter2');
      expect(JSON.stringify(error)).not.toContain('hunter2');
      expect(String((error as Error).cause)).not.toContain('hunter2');
      expect(JSON.stringify((error as Error).cause ?? null)).not.toContain('hunter2');
    }
    const c = await connect('memory://u:hunter2@redacted');
    expect(c.url).toBe('memory://u:***@redacted');
    await c.close();
  });

  it('parses multi-host lists', () => {
    expect(hostList('etcd://a:1,b,[::1]:3/x', 2379)).toEqual([
      { host: 'a', port: 1 },
      { host: 'b', port: 2379 },
      { host: '::1', port: 3 },
    ]);
    expect(parseUrl('etcd://a:1,b:2/x?namespace=n').searchParams.get('namespace')).toBe('n');
    expect(() => hostList('etcd://a:99999', 2379)).toThrow(expect.objectContaining({ code: 'ERR_INVALID_URL' }) as Error);
  });

  it('takes options from the query, with explicit options winning, and refuses bad query values', async () => {
    const c = await connect('memory://q?member=from-query&sessionTtlMs=5000&namespace=qns&rejoin=false');
    expect(c.member).toBe('from-query');
    expect(c.session.ttlMs).toBe(5000);
    await c.close();
    const d = await connect('memory://q?member=from-query&sessionTtlMs=5000', { member: 'explicit', sessionTtlMs: 7000 });
    expect(d.member).toBe('explicit');
    expect(d.session.ttlMs).toBe(7000);
    await d.close();
    for (const bad of ['memory://q?sessionTtlMs=abc', 'memory://q?rejoin=maybe']) {
      await expect(connect(bad)).rejects.toMatchObject({ code: 'ERR_INVALID_URL' });
    }
    await expect(connect('memory://q?sessionTtlMs=-1')).rejects.toMatchObject({
      code: 'ERR_INVALID_ARGUMENT',
      message: expect.stringContaining('sessionTtlMs') as string,
    });
  });

  it('an aborted signal stops connect before any I/O', async () => {
    const controller = new AbortController();
    controller.abort();
    await expect(connect('memory://q', { signal: controller.signal })).rejects.toMatchObject({ code: 'ERR_ABORTED' });
  });
});

describe('driver client libraries', () => {
  it('a missing client library is ERR_DRIVER_UNAVAILABLE naming the package to install', async () => {
    const error = await importClient('concord-no-such-client', 'nosuch').catch((e: unknown) => e);
    expect(error).toMatchObject({ code: 'ERR_DRIVER_UNAVAILABLE' });
    expect((error as Error).message).toContain('npm install concord-no-such-client');
  });
});
