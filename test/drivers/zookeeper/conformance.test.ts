import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConcordError, connect } from '../../../src/index.js';
import { driver } from '../../../drivers/zookeeper/index.js';
import { servedTarget } from '../../conformance/served.js';
import { describeConformance } from '../../conformance/suite.js';
import { requireServer, startZooKeeper, type ServerHandle } from '../../support/servers.js';
import { Collector, aborted } from '../../support/wait.js';
import { rawClient } from './raw.js';

const availability = requireServer('zookeeper');

describe.skipIf(!availability.ok)(`zookeeper${availability.ok ? '' : ` (skipped: ${availability.reason})`}`, () => {
  describeConformance({
    ...servedTarget({
      name: 'zookeeper',
      scheme: 'zookeeper',
      // tickTime 500 ms: sessions of 1..30 s (minSessionTimeout pinned to 1 s).
      start: () => startZooKeeper(),
      shortTtlMs: 1000,
      // The leader expires sessions in tickTime buckets; the deletions then reach watchers as ordinary events.
      detectionDelayMs: 1000,
    }),
    descriptor: driver,
  });
});

// ---------------------------------------------------------------------------------------------------------------
// What only the ZooKeeper driver has: the session timeout range, chroot and digest auth, nodes deleted from outside.

describe.skipIf(!availability.ok)('zookeeper driver specifics', () => {
  let server: ServerHandle | undefined;
  beforeAll(async () => {
    server = await startZooKeeper();
  });
  afterAll(async () => {
    await server?.stop();
  });
  const running = (): ServerHandle => {
    if (!server) throw new Error('zookeeper is not running');
    return server;
  };

  it('refuses a sessionTtlMs the server would not grant, naming the bound, and honours one it grants', async () => {
    // The test server: tickTime 500 ms, minSessionTimeout 1000, maxSessionTimeout 60000.
    const short = await connect(running().url, { sessionTtlMs: 600 }).catch((e: unknown) => e);
    expect(short).toBeInstanceOf(ConcordError);
    expect((short as ConcordError).code).toBe('ERR_INVALID_ARGUMENT');
    expect((short as ConcordError).message).toMatch(/sessionTtlMs must be at least 1000 ms on this ZooKeeper ensemble .*got 600/);
    const long = await connect(running().url, { sessionTtlMs: 90_000 }).catch((e: unknown) => e);
    expect((long as ConcordError).message).toMatch(/sessionTtlMs must be at most 60000 ms/);
    const c = await connect(`${running().url}?sessionTtlMs=1500`, { member: 'a', namespace: 'ttl' });
    try {
      expect(c.session.ttlMs).toBe(1500);
    } finally {
      await c.close();
    }
  });

  it('rejects malformed URLs before any I/O', async () => {
    await expect(connect('zookeeper://127.0.0.1:1/a//b')).rejects.toMatchObject({ code: 'ERR_INVALID_URL' });
    await expect(connect('zookeeper://127.0.0.1:1?nonsense=1')).rejects.toMatchObject({ code: 'ERR_INVALID_URL' });
    await expect(connect('zookeeper://:pw@127.0.0.1:1')).rejects.toMatchObject({ code: 'ERR_INVALID_URL' });
  });

  it('lives under the chroot, creating it, and keeps names with slashes apart', async () => {
    const url = `${running().url},127.0.0.1:${running().port}/apps/billing`;
    const a = await connect(url, { member: 'm/1', namespace: 'ns/with/slashes' });
    const elsewhere = await connect(running().url, { member: 'x', namespace: 'ns/with/slashes' });
    try {
      await a.group('a').create();
      await a.group('a/b').join({ create: true, capabilities: { k: 'v' } });
      expect(await a.group('a').members()).toEqual([]);
      expect(await a.group('a/b').members()).toEqual([{ id: 'm/1', capabilities: { k: 'v' } }]);
      expect(await a.groups()).toEqual(['a', 'a/b']);
      const held = await a.lock('x/y').acquire();
      expect(await a.lock('x').holder()).toBeUndefined();
      expect(await a.lock('x/y').holder()).toBe('m/1');
      // The same namespace outside the chroot is another place.
      expect(await elsewhere.groups()).toEqual([]);
      expect(await elsewhere.lock('x/y').holder()).toBeUndefined();
      await held.release();
      const tree = await rawClient(running().port);
      try {
        expect(await tree.children('/apps/billing')).toEqual(['ns%2Fwith%2Fslashes']);
      } finally {
        tree.close();
      }
    } finally {
      await a.close();
      await elsewhere.close();
    }
  });

  it("logs in with the URL's user and password (digest), never shows the password, and refuses another user", async () => {
    const password = 'pa:ss/w@rd-7c1';
    const host = `127.0.0.1:${running().port}`;
    const url = `zookeeper://app:${encodeURIComponent(password)}@${host}`;
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
    for (const other of [`zookeeper://app:not-${encodeURIComponent(password)}@${host}`, `zookeeper://${host}`]) {
      const refused = await connect(other, { namespace: 'auth' }).catch((e: unknown) => e);
      expect(refused).toBeInstanceOf(ConcordError);
      expect((refused as ConcordError).code).toBe('ERR_REFUSED');
      expect((refused as ConcordError).message).not.toContain(password);
      expect((refused as ConcordError).message).not.toContain(encodeURIComponent(password));
    }
  });

  it('a held node deleted from outside aborts the holder with ERR_LOCK_LOST, and the next holder gets a larger token', async () => {
    const a = await connect(running().url, { member: 'a', namespace: 'outside' });
    const b = await connect(running().url, { member: 'b', namespace: 'outside' });
    const tree = await rawClient(running().port);
    try {
      const held = await a.lock('l').acquire();
      const waiting = b.lock('l').acquire();
      const [first] = await tree.children('/outside/locks/l');
      await tree.remove(`/outside/locks/l/${first ?? ''}`);
      await aborted(held.signal);
      expect((held.signal.reason as ConcordError).code).toBe('ERR_LOCK_LOST');
      const next = await waiting;
      expect(next.token).toBeGreaterThan(held.token);
      // The old holder's release deletes nothing of the new holder's.
      await held.release();
      expect(await a.lock('l').holder()).toBe('b');
      await next.release();
    } finally {
      tree.close();
      await a.close();
      await b.close();
    }
  });

  it('a session that held a lock alone waits when another entered the line since, or the lock node was made anew', async () => {
    const a = await connect(running().url, { member: 'a', namespace: 'chain' });
    const b = await connect(running().url, { member: 'b', namespace: 'chain' });
    const tree = await rawClient(running().port);
    try {
      // Another session entered since a's last hold: a's next node is not numbered as a expects.
      await (await a.lock('l').acquire()).release();
      const theirs = await b.lock('l').acquire();
      expect(await a.lock('l').tryAcquire()).toBeUndefined();
      const waiting = a.lock('l').acquire();
      await theirs.release();
      const mine = await waiting;
      expect(mine.token).toBeGreaterThan(theirs.token);
      await mine.release();
      // The lock node removed and made anew: b's node there is numbered 0, and a's next one is numbered as a expects
      // (one past its node 0 in the old node), so only the watch on the lock node tells a that b is ahead.
      const first = await a.lock('r').acquire();
      const [old] = await tree.children('/chain/locks/r');
      expect(old).toMatch(/-0000000000$/);
      await first.release();
      await tree.remove('/chain/locks/r');
      await tree.create('/chain/locks/r');
      const held = await b.lock('r').acquire();
      expect(await a.lock('r').tryAcquire()).toBeUndefined();
      expect(await a.lock('r').holder()).toBe('b');
      await held.release();
      await (await a.lock('r').acquire()).release();
    } finally {
      tree.close();
      await a.close();
      await b.close();
    }
  });

  it('a held node deleted from outside is lost whether or not the line changed since it was entered', async () => {
    const a = await connect(running().url, { member: 'a', namespace: 'outside2' });
    const b = await connect(running().url, { member: 'b', namespace: 'outside2' });
    const tree = await rawClient(running().port);
    try {
      // Uncontended: the watch left by the listing that entered it is the only one on the node.
      const alone = await a.lock('alone').acquire();
      const [node] = await tree.children('/outside2/locks/alone');
      await tree.remove(`/outside2/locks/alone/${node ?? ''}`);
      expect(((await aborted(alone.signal)) as ConcordError).code).toBe('ERR_LOCK_LOST');
      // The line changed (a tryAcquire came and went) before the deletion: the node's own watch tells.
      const busy = await a.lock('busy').acquire();
      expect(await b.lock('busy').tryAcquire()).toBeUndefined();
      const [held] = await tree.children('/outside2/locks/busy');
      await tree.remove(`/outside2/locks/busy/${held ?? ''}`);
      expect(((await aborted(busy.signal)) as ConcordError).code).toBe('ERR_LOCK_LOST');
      const next = await b.lock('busy').acquire();
      expect(next.token).toBeGreaterThan(busy.token);
      await next.release();
    } finally {
      tree.close();
      await a.close();
      await b.close();
    }
  });
});
