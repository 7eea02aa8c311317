/**
 * Races between the session machine, user calls and backend answers. Each case once broke a promise of the public API:
 * the test fails if the fix is undone.
 */
import { describe, expect, it } from 'vitest';
import { ConcordError, connect, type Coordinator } from '../../src/index.js';
import { kQueued } from '../../src/coordinator.js';
import { memoryFaults } from '../../drivers/memory/index.js';
import { MemoryServer } from '../../drivers/memory/server.js';
import { redact } from '../../src/url.js';
import { Collector, deadline, eventually, once } from '../support/wait.js';

let n = 0;
const fresh = (): string => `memory://races-${++n}`;

describe('races', () => {
  it('a holder whose renewals hang unanswered is told lost before the waiter acquires (5 rounds)', async () => {
    for (let round = 0; round < 5; round++) {
      const url = fresh();
      const a = await connect(url, { member: 'a', sessionTtlMs: 300 });
      const b = await connect(url, { member: 'b' });
      const held = await a.lock('l').acquire();
      const log: string[] = [];
      held.signal.addEventListener('abort', () => log.push('a lost'));
      const next = b
        .lock('l')
        .acquire()
        .then((h) => {
          log.push('b acquired');
          return h;
        });
      memoryFaults(a).blackhole();
      await deadline(next, 10_000, 'b to acquire');
      expect(log).toEqual(['a lost', 'b acquired']);
      memoryFaults(a).reconnect();
      await Promise.all([a.close(), b.close()]);
    }
  });

  it('a watch converges when its history is trimmed while its first snapshot is being taken', async () => {
    const url = fresh();
    const a = await connect(url, { member: 'a' });
    await a.group('g').join({ create: true, capabilities: { v: -1 } });
    const events = new Collector(a.group('g').watch());
    // More changes than the memory server keeps, racing the watch's first sync.
    for (let v = 0; v < 300; v++) void a.group('g').updateCapabilities({ v });
    await events.until((e) => e.some((x) => x.type !== 'leave' && x.capabilities.v === 299), 'the last value', 10_000);
    await a.close();
  });

  it('a leave issued while the session is being replaced is not undone by the re-join', async () => {
    const url = fresh();
    const a = await connect(url, { member: 'a' });
    const b = await connect(url, { member: 'b' });
    await a.group('A').join({ create: true });
    await a.group('B').join({ create: true });
    const restored = once(a, 'restored');
    let left: Promise<unknown> = Promise.resolve();
    a.on('lost', () => {
      left = new Promise((resolve) => setImmediate(resolve)).then(() =>
        a
          .group('B')
          .leave()
          .catch((e: unknown) => e),
      );
    });
    memoryFaults(a).expire();
    await restored;
    await left;
    expect((await b.group('A').members()).map((m) => m.id)).toEqual(['a']);
    expect(await b.group('B').members()).toEqual([]);
    await Promise.all([a.close(), b.close()]);
  });

  it('close() during a session replacement leaves no session behind', async () => {
    const url = fresh();
    const a = await connect(url, { member: 'a' });
    const b = await connect(url, { member: 'b' });
    await a.group('g').join({ create: true });
    let closing: Promise<void> = Promise.resolve();
    a.on('lost', () => {
      closing = a.close();
    });
    memoryFaults(a).expire();
    await closing;
    const server = MemoryServer.find(url.slice('memory://'.length), 'concord');
    await eventually(
      () => server?.sessionCount,
      (count) => count === 1,
      5000,
      'only b to have a session',
    );
    expect(await b.group('g').members()).toEqual([]);
    await b.close();
  });

  it('a partitioner opened as the coordinator closes settles with ERR_CLOSED', async () => {
    const a = await connect(fresh(), { member: 'a' });
    const opening = a
      .group('g')
      .partitioner()
      .then(
        () => undefined,
        (e: unknown) => e,
      );
    await a.close();
    const error = await deadline(opening, 5000, 'the partitioner to settle');
    expect(error).toMatchObject({ code: 'ERR_CLOSED' });
  });

  it('a leader watch started while disconnected subscribes once the link is back', async () => {
    const url = fresh();
    const a = await connect(url, { member: 'a', sessionTtlMs: 3000 });
    const b = await connect(url, { member: 'b' });
    memoryFaults(a).disconnect();
    const leaders = new Collector(a.group('g').watchLeader());
    memoryFaults(a).reconnect();
    await leaders.until((e) => e.length >= 1, 'the first read');
    const lead = await b.group('g').campaign();
    await leaders.until((e) => e.some((x) => x.leader === 'b'), 'b to lead');
    await lead.resign();
    await leaders.until((e) => e.at(-1)?.leader === undefined && e.length >= 3, 'the resignation');
    await Promise.all([a.close(), b.close()]);
  });

  it('close() does not wait for reads the backend never answers', async () => {
    const url = fresh();
    const a = await connect(url, { member: 'a', sessionTtlMs: 500 });
    await a.group('g').join({ create: true });
    const events = new Collector(a.group('g').watch());
    await events.until((e) => e.length === 1, 'the snapshot');
    memoryFaults(a).blackhole();
    // The reconnect resync now waits on a snapshot that never comes.
    memoryFaults(a).reconnect();
    memoryFaults(a).blackhole();
    await deadline(a.close(), 5000, 'close to return');
    expect(a.session.state).toBe('closed');
  });

  it('a listener that throws does not stop the session machine', async () => {
    const a = await connect(fresh(), { member: 'a' });
    const thrown: unknown[] = [];
    const onUncaught = (error: unknown): void => {
      thrown.push(error);
    };
    process.on('uncaughtException', onUncaught);
    try {
      a.on('lost', () => {
        throw new Error('listener bug');
      });
      const restored = once(a, 'restored');
      memoryFaults(a).expire();
      await restored;
      expect(a.session.state).toBe('connected');
      await eventually(
        () => thrown.length,
        (count) => count === 1,
        5000,
        'the error to surface',
      );
    } finally {
      process.off('uncaughtException', onUncaught);
    }
    await a.close();
  });

  it('a timeout longer than a timer can measure waits instead of failing at once', async () => {
    const url = fresh();
    const a = await connect(url, { member: 'a' });
    const b: Coordinator = await connect(url, { member: 'b' });
    const held = await b.lock('l').acquire();
    const queued = once(a, kQueued);
    const waiting = a.lock('l').acquire({ timeoutMs: Number.MAX_SAFE_INTEGER });
    await queued;
    await held.release();
    const got = await waiting;
    expect(got.token).toBeGreaterThan(held.token);
    await expect(connect(url, { sessionTtlMs: 2 ** 31 })).rejects.toMatchObject({ code: 'ERR_INVALID_ARGUMENT' });
    await Promise.all([a.close(), b.close()]);
  });

  it('an acquire bounded by a timeout gives up on an attempt that never returns', async () => {
    const url = fresh();
    const a = await connect(url, { member: 'a', sessionTtlMs: 5000 });
    memoryFaults(a).blackhole();
    const error = await deadline(
      a
        .lock('l')
        .acquire({ timeoutMs: 50 })
        .catch((e: unknown) => e),
      5000,
      'the timeout',
    );
    expect(error).toBeInstanceOf(ConcordError);
    expect((error as ConcordError).code).toBe('ERR_LOCK_TIMEOUT');
    const controller = new AbortController();
    const waiting = a
      .lock('m')
      .acquire({ signal: controller.signal })
      .catch((e: unknown) => e);
    controller.abort();
    expect(await deadline(waiting, 5000, 'the abort')).toMatchObject({ code: 'ERR_ABORTED' });
    memoryFaults(a).reconnect();
    await a.close();
  });

  it('masks a password that itself contains @, and secret query parameters', () => {
    expect(redact('redis://u:p@ss@127.0.0.1:1/0')).toBe('redis://u:***@127.0.0.1:1/0');
    expect(redact('redis+sentinel://:pw@h1:1,h2:2/m?sentinelPassword=SENT&db=1')).toBe(
      'redis+sentinel://:***@h1:1,h2:2/m?sentinelPassword=***&db=1',
    );
    expect(redact('rediss://h/0?key=/etc/k.pem&authToken=t0k')).toBe('rediss://h/0?key=/etc/k.pem&authToken=***');
  });

  it('a wait abandoned while the link was down is cleaned up: the lock is not left granted to nobody', async () => {
    const url = fresh();
    const holder = await connect(url, { member: 'holder' });
    const waiter = await connect(url, { member: 'waiter', sessionTtlMs: 3000 });
    const third = await connect(url, { member: 'third' });
    const held = await holder.lock('l').acquire();
    const queued = once(waiter, kQueued);
    const waiting = waiter
      .lock('l')
      .acquire({ timeoutMs: 200 })
      .catch((e: unknown) => e);
    await queued;
    const suspended = once(waiter, 'suspended');
    memoryFaults(waiter).disconnect();
    expect(await waiting).toMatchObject({ code: 'ERR_LOCK_TIMEOUT' });
    // The backend still queues the abandoned wait: the release grants it the lock.
    await held.release();
    await suspended;
    const reconnected = once(waiter, 'reconnected');
    memoryFaults(waiter).reconnect();
    await reconnected;
    const next = await third.lock('l').acquire({ timeoutMs: 10_000 });
    expect(next.token).toBeGreaterThan(held.token);
    await Promise.all([holder.close(), waiter.close(), third.close()]);
  });
});
