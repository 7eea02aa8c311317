/**
 * A Redis server restarted without persistence forgets every session. A coordinator that was idle meanwhile (no
 * renewal has failed yet) and then acquires must not fail with ERR_SESSION_LOST, since it never waited in the old
 * session: the acquisition carries on in the replacement session. Real redis-server, restarted by the test.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connect, type HeldLock } from '../../../src/index.js';
import { requireServer, startRedis, type ServerHandle } from '../../support/servers.js';
import { deadline } from '../../support/wait.js';

const available = requireServer('redis');
let server: ServerHandle | undefined;

beforeAll(async () => {
  if (available.ok) server = await startRedis();
});

afterAll(async () => {
  await server?.stop();
});

describe.skipIf(!available.ok)('an idle coordinator after a restart that lost the data', () => {
  it('an acquire issued right after the restart runs on the replacement session', async () => {
    if (!server) throw new Error('redis is not running');
    // A long TTL: no renewal notices the restart before the acquire does.
    const a = await connect(server.url, { member: 'a', sessionTtlMs: 30_000, namespace: 'idle' });
    const b = await connect(server.url, { member: 'b', sessionTtlMs: 30_000, namespace: 'idle' });
    try {
      const before = a.session.id;
      await server.restart();
      const held = await deadline(a.lock('l').acquire({ timeoutMs: 20_000 }), 25_000, 'the acquire after the restart');
      expect(a.session.id).not.toBe(before);
      // Asked by a coordinator connected after the restart: b's own session was lost too, and a request of b's in
      // flight when b hears of that is rejected with ERR_SESSION_LOST, whatever the request.
      const c = await connect(server.url, { member: 'c', namespace: 'idle' });
      try {
        expect(await c.lock('l').holder()).toBe('a');
      } finally {
        await c.close();
      }
      await held.release();
    } finally {
      await Promise.all([a.close(), b.close()]);
    }
  });

  it('an acquire issued the moment the coordinator hears of it (session lost, not yet replaced) runs on the replacement', async () => {
    if (!server) throw new Error('redis is not running');
    const a = await connect(server.url, { member: 'a', sessionTtlMs: 30_000, namespace: 'idle2' });
    const b = await connect(server.url, { member: 'b', sessionTtlMs: 30_000, namespace: 'idle2' });
    try {
      const acquired = new Promise<HeldLock>((resolve, reject) => {
        a.once('lost', () => {
          a.lock('l').acquire({ timeoutMs: 20_000 }).then(resolve, reject);
        });
      });
      await server.restart();
      const held = await deadline(acquired, 25_000, 'the acquire after the restart');
      expect(held.signal.aborted).toBe(false);
      // b's session was lost too: ask from a coordinator connected after the restart (see above).
      const c = await connect(server.url, { member: 'c', namespace: 'idle2' });
      try {
        expect(await c.lock('l').holder()).toBe('a');
      } finally {
        await c.close();
      }
      await held.release();
    } finally {
      await Promise.all([a.close(), b.close()]);
    }
  });
});
