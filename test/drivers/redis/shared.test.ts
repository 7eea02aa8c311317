/**
 * Redis specifics of shared locks and semaphores: a line that moves without a release (a waiter leaving) is served at
 * once, and nothing is left on the server but fencing counters once every hold and wait has ended.
 */
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { kQueued } from '../../../src/coordinator.js';
import { connect, type Coordinator, type HeldLock } from '../../../src/index.js';
import { requireServer, startRedis, type ServerHandle } from '../../support/servers.js';
import { deadline } from '../../support/wait.js';

const availability = requireServer('redis');

/** Starts an acquire and resolves once it waits in the line on the server. */
async function enqueue(c: Coordinator, start: () => Promise<HeldLock>): Promise<{ pending: Promise<HeldLock> }> {
  const queued = new Promise<void>((resolve) => {
    (c as unknown as { once(event: symbol, listener: () => void): void }).once(kQueued, resolve);
  });
  const pending = start();
  pending.catch(() => undefined);
  await queued;
  return { pending };
}

describe.skipIf(!availability.ok)(`redis shared locks and semaphores${availability.ok ? '' : ` (skipped: ${availability.reason})`}`, () => {
  let server: ServerHandle;
  let admin: Redis;

  beforeAll(async () => {
    server = await startRedis();
    admin = new Redis({ host: server.host, port: server.port, lazyConnect: true });
    await admin.connect();
  });
  afterAll(async () => {
    await admin.quit();
    await server.stop();
  });

  it('an exclusive waiter that gives up lets the shared waiters behind it join the shared holders at once', async () => {
    const [r, w, s] = await Promise.all(['r', 'w', 's'].map((m) => connect(server.url, { member: m, namespace: 'leave' })));
    if (!r || !w || !s) throw new Error('unreachable');
    try {
      const reader = await r.lock('l').acquire({ shared: true });
      const controller = new AbortController();
      const writing = (await enqueue(w, () => w.lock('l').acquire({ signal: controller.signal }))).pending;
      const sharing = (await enqueue(s, () => s.lock('l').acquire({ shared: true }))).pending;
      controller.abort();
      await expect(writing).rejects.toMatchObject({ code: 'ERR_ABORTED' });
      // Well within a waiter's periodic re-check (a third of the TTL): the abandoning script served the line.
      const joined = await deadline(sharing, 1000, 'the shared waiter to join');
      expect((await r.lock('l').holders()).map((h) => h.member)).toEqual(['r', 's']);
      await Promise.all([reader.release(), joined.release()]);
    } finally {
      await Promise.all([r.close(), w.close(), s.close()]);
    }
  });

  it('holds, waits and permits leave only fencing counters (with a TTL) once they end', async () => {
    const [a, b] = await Promise.all(['a', 'b'].map((m) => connect(server.url, { member: m, namespace: 'tidy' })));
    if (!a || !b) throw new Error('unreachable');
    try {
      const permits = await Promise.all([a, a, b].map((c) => c.semaphore('s', { limit: 3 }).acquire()));
      const waiting = (await enqueue(b, () => b.semaphore('s', { limit: 3 }).acquire())).pending;
      const shared = await Promise.all([a, b].map((c) => c.lock('l').acquire({ shared: true })));
      const exclusive = (await enqueue(a, () => a.lock('l').acquire())).pending;
      await permits[0]?.release();
      await (await waiting).release();
      await Promise.all([...permits.slice(1), ...shared].map((held) => held.release()));
      await (await exclusive).release();
      expect(await a.locks()).toEqual([]);
      // A permit still held when its coordinator closes goes with the session.
      await b.semaphore('s', { limit: 3 }).acquire();
      await b.close();
      expect(await a.semaphore('s', { limit: 3 }).holders()).toEqual([]);
      await a.close();
      const left = (await admin.keys('{tidy}:*')).sort();
      expect(left).toEqual(['{tidy}:f:lock:l', '{tidy}:f:semaphore:s']);
      for (const key of left) expect(await admin.pttl(key)).toBeGreaterThan(0);
    } finally {
      await Promise.all([a.close(), b.close()]);
    }
  });
});
