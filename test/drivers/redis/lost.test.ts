/**
 * The holder hears it from the backend: a lock key deleted from outside (with and without keyspace notifications), a
 * FLUSHALL, refusals that retrying will not fix (out of memory, a key of the wrong type, a read-only replica, a
 * permission taken away), and a long server stall that must cost one lost/restored cycle, not two.
 */
import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { CoordinatorImpl } from '../../../src/coordinator.js';
import { ConcordError, connect, type ConnectOptions, type Coordinator } from '../../../src/index.js';
import { requireServer, startRedis, startRedisReplica, type ServerHandle } from '../../support/servers.js';
import { aborted, deadline, eventually, once } from '../../support/wait.js';

const availability = requireServer('redis');

/** The rejection of `promise` (a test failure if it resolves). */
async function rejection(promise: Promise<unknown>, what: string, ms = 10_000): Promise<ConcordError> {
  const outcome = await deadline(
    promise.then(
      () => undefined,
      (error: unknown) => error,
    ),
    ms,
    what,
  );
  if (outcome === undefined) throw new Error(`${what}: resolved, expected a rejection`);
  expect(outcome).toBeInstanceOf(ConcordError);
  return outcome as ConcordError;
}

describe.skipIf(!availability.ok)(`redis: the holder hears it${availability.ok ? '' : ` (skipped: ${availability.reason})`}`, () => {
  let server: ServerHandle;
  let admin: Redis;
  let namespace = '';
  const open: Coordinator[] = [];

  beforeAll(async () => {
    server = await startRedis();
    admin = new Redis({ host: server.host, port: server.port, lazyConnect: true });
    await admin.connect();
  });
  afterAll(async () => {
    admin.disconnect();
    await server.stop();
  });
  afterEach(async () => {
    await Promise.all(open.splice(0).map((c) => c.close()));
  });

  const fresh = (): void => {
    namespace = `h${randomBytes(5).toString('hex')}`;
  };
  const coordinator = async (member: string, options: ConnectOptions = {}, url = server.url): Promise<Coordinator> => {
    const c = await connect(url, { member, namespace, ...options });
    open.push(c);
    return c;
  };
  const lockKey = (name: string): string => `{${namespace}}:l:lock:${name}`;
  /** The holder watches its lock key from the background: wait until the server counts that subscription. */
  const watched = (name: string): Promise<unknown> =>
    eventually(
      async () => (await admin.call('PUBSUB', 'NUMSUB', `__keyspace@0__:${lockKey(name)}`)) as [string, number],
      (reply) => reply[1] >= 1,
      10_000,
      "the holder's subscription to its lock key",
    );

  it('a lock key deleted from outside: the holder is told within 100 ms, long before its next renewal', async () => {
    fresh();
    // A renewal every 10 s: only the server's notification can tell the holder in time.
    const holder = await coordinator('holder', { sessionTtlMs: 30_000 });
    const other = await coordinator('other', { sessionTtlMs: 30_000 });
    const held = await holder.lock('l').acquire();
    await watched('l');
    const lost = aborted(held.signal, 20_000).then((reason) => ({ reason, at: performance.now() }));
    const deletedAt = performance.now();
    expect(await admin.del(lockKey('l'))).toBe(1);
    const { reason, at } = await lost;
    expect((reason as ConcordError).code).toBe('ERR_LOCK_LOST');
    const delayMs = at - deletedAt;
    console.log(`redis: the holder heard of an outside DEL of its lock key ${delayMs.toFixed(1)} ms after it`);
    // 100 ms is the target; the bound leaves room for a loaded machine and stays far below the renewal (10 s).
    expect(delayMs).toBeLessThan(1000);
    const next = await other.lock('l').acquire({ timeoutMs: 5000 });
    expect(next.token).toBeGreaterThan(held.token);
    // The stale holder's release deletes nothing.
    await held.release();
    expect(await other.lock('l').holder()).toBe('other');
    await next.release();
  });

  it('a lock key deleted right after the grant, before its key is watched: the holder is still told within 100 ms', async () => {
    fresh();
    const holder = await coordinator('holder', { sessionTtlMs: 30_000 });
    const held = await holder.lock('l').acquire();
    const lost = aborted(held.signal, 20_000).then(() => performance.now());
    const deletedAt = performance.now();
    expect(await admin.del(lockKey('l'))).toBe(1);
    const delayMs = (await lost) - deletedAt;
    console.log(`redis: the holder heard of a DEL made right after its grant ${delayMs.toFixed(1)} ms after it`);
    expect(delayMs).toBeLessThan(1000);
  });

  it('a session holding 100 watched locks renews without looking at them (sessions are renewed, not locks), and still hears a deletion', async () => {
    fresh();
    const holder = await coordinator('holder', { sessionTtlMs: 900 });
    const names = Array.from({ length: 100 }, (_, i) => `k${String(i)}`);
    const held = await Promise.all(names.map((name) => holder.lock(name).acquire()));
    await Promise.all(names.map((name) => watched(name)));
    const stats = async (): Promise<Map<string, number>> => {
      const info = (await admin.call('INFO', 'commandstats')) as string;
      return new Map([...info.matchAll(/^cmdstat_(\w+):calls=(\d+)/gm)].map((m) => [m[1] ?? '', Number(m[2])]));
    };
    /** Waits for `count` renewals (each PEXPIREs the session key) counted since the last CONFIG RESETSTAT. */
    const renewals = (count: number): Promise<unknown> =>
      eventually(stats, (s) => (s.get('pexpire') ?? 0) >= count, 10_000, `${String(count)} renewals`);
    // The first watch checks may still be on their way: let one renewal pass, then count from zero.
    await admin.call('CONFIG', 'RESETSTAT');
    await renewals(1);
    await admin.call('CONFIG', 'RESETSTAT');
    await renewals(3);
    const counted = await stats();
    // Before: every renewal ran one HMGET per held lock (300 here).
    expect(counted.get('hmget') ?? 0).toBe(0);
    expect(counted.get('hget') ?? 0).toBe(0);
    const lost = aborted(held[42]!.signal, 10_000);
    expect(await admin.del(lockKey('k42'))).toBe(1);
    expect(((await lost) as ConcordError).code).toBe('ERR_LOCK_LOST');
    for (const [i, lock] of held.entries()) if (i !== 42) expect(lock.signal.aborted).toBe(false);
    await Promise.all(held.map((lock) => lock.release()));
  });

  it('a lock key deleted from outside with keyspace notifications off: the holder is told at its next renewal', async () => {
    fresh();
    const ttl = 1500;
    const url = `${server.url}?keyspaceEvents=false`;
    await admin.call('CONFIG', 'SET', 'notify-keyspace-events', '');
    const holder = await coordinator('holder', { sessionTtlMs: ttl }, url);
    const held = await holder.lock('l').acquire();
    const lost = aborted(held.signal, 20_000).then((reason) => ({ reason, at: performance.now() }));
    const deletedAt = performance.now();
    expect(await admin.del(lockKey('l'))).toBe(1);
    const { reason, at } = await lost;
    expect((reason as ConcordError).code).toBe('ERR_LOCK_LOST');
    // A renewal comes every ttl/3; one may be late on a loaded machine.
    expect(at - deletedAt).toBeLessThan(ttl);
    expect(holder.session.state).toBe('connected');
    expect((await admin.call('CONFIG', 'GET', 'notify-keyspace-events')) as string[]).toEqual(['notify-keyspace-events', '']);
  });

  it('FLUSHALL: the holder is told before a new member holds the lock', async () => {
    fresh();
    const holder = await coordinator('holder', { sessionTtlMs: 30_000 });
    const held = await holder.lock('l').acquire();
    const order: string[] = [];
    let toldAt = 0;
    held.signal.addEventListener('abort', () => {
      toldAt = performance.now();
      order.push('holder told');
    });
    const restored = once(holder, 'restored', 20_000);
    const flushedAt = performance.now();
    await admin.flushall();
    const newcomer = await coordinator('newcomer', { sessionTtlMs: 30_000 });
    const next = await newcomer.lock('l').acquire({ timeoutMs: 10_000 });
    order.push('newcomer holds');
    await aborted(held.signal, 20_000);
    expect(order).toEqual(['holder told', 'newcomer holds']);
    expect((held.signal.reason as ConcordError).code).toBe('ERR_LOCK_LOST');
    console.log(`redis: the holder heard of a FLUSHALL ${(toldAt - flushedAt).toFixed(1)} ms after it`);
    expect(next.token).toBeGreaterThan(held.token);
    await restored;
    await next.release();
  });

  it('out of memory: a waiting acquire (with or without a timeout), tryAcquire and join end with ERR_REFUSED and the cause', async () => {
    fresh();
    const c = await coordinator('c', { sessionTtlMs: 30_000 });
    await admin.call('CONFIG', 'SET', 'maxmemory', '1');
    try {
      const attempts: Array<[string, () => Promise<unknown>]> = [
        ['acquire with a timeout', () => c.lock('l').acquire({ timeoutMs: 5000 })],
        ['acquire without a timeout', () => c.lock('l').acquire()],
        ['tryAcquire', () => c.lock('l').tryAcquire()],
        ['join', () => c.group('g').join({ create: true })],
      ];
      for (const [what, attempt] of attempts) {
        const startedAt = performance.now();
        const error = await rejection(attempt(), what);
        expect(error.code, what).toBe('ERR_REFUSED');
        expect(error.message, what).toContain('OOM');
        expect(error.cause, what).toBeDefined();
        // Not the timeout ending it.
        expect(performance.now() - startedAt, what).toBeLessThan(4000);
      }
    } finally {
      await admin.call('CONFIG', 'SET', 'maxmemory', '0');
    }
    // Nothing was half-written: the lock and the group are there for the taking once memory is back.
    expect(await admin.exists(lockKey('l'), `{${namespace}}:q:lock:l`, `{${namespace}}:g:g`)).toBe(0);
    const held = await c.lock('l').acquire({ timeoutMs: 5000 });
    await c.group('g').join({ create: true });
    await held.release();
  });

  it('a lock key of the wrong type: acquire() ends with ERR_REFUSED (WRONGTYPE) instead of waiting forever', async () => {
    fresh();
    const c = await coordinator('c');
    await admin.set(lockKey('w'), 'not a lock');
    const error = await rejection(c.lock('w').acquire(), 'acquire on a key of the wrong type');
    expect(error.code).toBe('ERR_REFUSED');
    expect(error.message).toContain('WRONGTYPE');
    await admin.del(lockKey('w'));
    await (await c.lock('w').acquire({ timeoutMs: 5000 })).release();
  });

  it('a permission taken away after connecting: the waiting acquire ends with ERR_REFUSED (NOPERM)', async () => {
    fresh();
    await admin.call('ACL', 'SETUSER', 'later', 'reset', 'on', '>later-secret', '~*', '&*', '+@all');
    const c = await coordinator('c', {}, `redis://later:later-secret@127.0.0.1:${server.port}`);
    try {
      await admin.call('ACL', 'SETUSER', 'later', '-evalsha', '-eval');
      const error = await rejection(c.lock('p').acquire(), 'acquire without EVAL and EVALSHA');
      expect(error.code).toBe('ERR_REFUSED');
      expect(error.message).toContain('NOPERM');
      expect(error.message).not.toContain('later-secret');
    } finally {
      await admin.call('ACL', 'SETUSER', 'later', '+@all');
    }
  });

  it('a read-only replica: connect() is refused with ERR_REFUSED carrying READONLY', async () => {
    fresh();
    const replica = await startRedisReplica({ host: server.host, port: server.port });
    try {
      const error = await rejection(connect(replica.url, { member: 'r', namespace }), 'connecting to a replica');
      expect(error.code).toBe('ERR_REFUSED');
      expect(error.message).toContain('READONLY');
    } finally {
      await replica.stop();
    }
  });

  it('a long server stall (DEBUG SLEEP 3, TTL 2 s): one lost/restored cycle, and the new session then renews', async () => {
    fresh();
    const c = await coordinator('stalled', { sessionTtlMs: 2000 });
    const driver = (c as unknown as CoordinatorImpl).driver;
    const renew = driver.renewSession.bind(driver);
    let restoredYet = false;
    let renewedAfterRestore: () => void = () => undefined;
    const renewed = new Promise<void>((resolve) => {
      renewedAfterRestore = resolve;
    });
    Object.assign(driver, {
      renewSession: async (id: string) => {
        const alive = await renew(id);
        if (alive && restoredYet) renewedAfterRestore();
        return alive;
      },
    });
    const events: string[] = [];
    for (const event of ['suspended', 'reconnected', 'lost', 'restored'] as const) c.on(event, () => events.push(event));
    const restored = once(c, 'restored', 20_000).then(() => {
      restoredYet = true;
    });
    const stall = new Redis({ host: server.host, port: server.port, lazyConnect: true });
    await stall.connect();
    try {
      await stall.call('DEBUG', 'SLEEP', '3');
    } finally {
      stall.disconnect();
    }
    await restored;
    let stopListening: () => void = () => undefined;
    const lostAgain = new Promise<string>((resolve) => {
      const listener = (): void => {
        resolve('lost again');
      };
      c.on('lost', listener);
      stopListening = () => c.off('lost', listener);
    });
    const outcome = await deadline(Promise.race([renewed.then(() => 'renewed'), lostAgain]), 20_000, 'a renewal or a second loss');
    stopListening();
    expect(outcome, `events: ${events.join(', ')}`).toBe('renewed');
    expect(events.filter((e) => e === 'lost')).toHaveLength(1);
    expect(c.session.state).toBe('connected');
  });
});
