/**
 * etcd under faults, on a three-member cluster on loopback ports: a killed leader, a lost quorum, a paused and a
 * killed lock holder (separate processes), and four processes contending for one lock.
 */
import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { ConcordError, connect, type ConnectOptions, type Coordinator, type GroupEvent } from '../../../src/index.js';
import { Child } from '../../support/child.js';
import { checkIntervals, type HoldInterval } from '../../support/history.js';
import { requireServer, startEtcdCluster, type EtcdCluster } from '../../support/servers.js';
import { Collector, deadline, eventually, once } from '../../support/wait.js';

const CHILD = fileURLToPath(new URL('../../support/lock-child.ts', import.meta.url));
const availability = requireServer('etcd');

describe.skipIf(!availability.ok)(`etcd faults${availability.ok ? '' : ` (skipped: ${availability.reason})`}`, () => {
  let cluster: EtcdCluster;
  let namespace = '';
  const open: Coordinator[] = [];
  const children: Child[] = [];

  beforeAll(async () => {
    cluster = await startEtcdCluster(3);
  });
  afterAll(async () => {
    await cluster.stop();
  });
  afterEach(async () => {
    for (const child of children.splice(0)) await child.kill();
    await Promise.all(open.splice(0).map((c) => c.close()));
    // Every member up again for the next test.
    await Promise.all(cluster.members.filter((m) => !m.running).map((m) => m.restart()));
    for (const m of cluster.members) m.resume();
  });

  const fresh = (): void => {
    namespace = `f${randomBytes(5).toString('hex')}`;
  };
  const coordinator = async (member: string, options: ConnectOptions = {}): Promise<Coordinator> => {
    const c = await connect(cluster.url, { member, namespace, ...options });
    open.push(c);
    return c;
  };
  const child = (...args: string[]): Child => {
    const c = new Child(CHILD, args);
    children.push(c);
    return c;
  };
  /** Retries a call that may fail while the cluster elects a leader. */
  const retrying = async <T>(call: () => Promise<T>, accept: (error: ConcordError) => boolean = () => false): Promise<T | undefined> => {
    const end = performance.now() + 30_000;
    for (;;) {
      try {
        return await call();
      } catch (error) {
        if (!(error instanceof ConcordError)) throw error;
        if (accept(error)) return undefined;
        if (error.code !== 'ERR_CONNECTION' || performance.now() > end) throw error;
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
    }
  };

  it('keeps a held lock and a gapless watch through the loss of the leader; new acquisitions work', async () => {
    fresh();
    const holder = await coordinator('holder', { sessionTtlMs: 6000 });
    const watcher = await coordinator('watcher', { sessionTtlMs: 6000 });
    const joiners = await Promise.all(Array.from({ length: 9 }, (_v, i) => coordinator(`m${i}`, { sessionTtlMs: 6000 })));
    await watcher.group('g').create();
    const events = new Collector(watcher.group('g').watch());
    const held = await holder.lock('l').acquire();
    const join = (i: number): Promise<unknown> =>
      retrying(
        () => joiners[i]?.group('g').join({ capabilities: { i } }) ?? Promise.resolve(),
        (e) => e.code === 'ERR_MEMBER_EXISTS',
      );
    // Joins before, during and after the election.
    await Promise.all([0, 1, 2].map(join));
    const leader = await cluster.leader();
    const killed = cluster.members[leader];
    if (!killed) throw new Error('no leader');
    const during = Promise.all([3, 4, 5].map(join));
    await killed.kill();
    await during;
    await cluster.leader();
    await Promise.all([6, 7, 8].map(join));

    const names = joiners.map((j) => j.member);
    await events.until((items) => names.every((n) => items.some((e) => e.type === 'join' && e.member === n)), 'every join', 30_000);
    // No gap (every join seen) and no duplicate (each exactly once, nothing left).
    const joins = events.items.filter((e): e is Extract<GroupEvent, { type: 'join' }> => e.type === 'join').map((e) => e.member);
    expect(joins.sort()).toEqual([...names].sort());
    expect(events.items.filter((e) => e.type === 'leave')).toEqual([]);

    // The lock was kept all along.
    expect(held.signal.aborted).toBe(false);
    expect(await retrying(() => watcher.lock('l').holder())).toBe('holder');
    expect(await retrying(() => watcher.lock('l').tryAcquire())).toBeUndefined();
    // New acquisitions work, and the held lock hands over with a larger token.
    const other = await watcher.lock('other').acquire({ timeoutMs: 20_000 });
    await other.release();
    const waiting = watcher.lock('l').acquire({ timeoutMs: 20_000 });
    await retrying(() => held.release());
    const next = await waiting;
    expect(next.token).toBeGreaterThan(held.token);
    expect(held.signal.reason).toMatchObject({ code: 'ERR_ABORTED' });
    await next.release();
  }, 90_000);

  it('losing quorum: suspended, then lost after the TTL, then restored with the group re-joined', async () => {
    fresh();
    const c = await coordinator('a', { sessionTtlMs: 3000 });
    await c.group('g').join({ create: true, capabilities: { keep: 1 } });
    const seen: string[] = [];
    for (const e of ['suspended', 'reconnected', 'lost', 'restored'] as const) c.on(e, () => seen.push(e));
    const suspended = once(c, 'suspended', 30_000);
    const lost = once(c, 'lost', 30_000);
    const stopped = cluster.members.slice(0, 2);
    await Promise.all(stopped.map((m) => m.kill()));
    await suspended;
    await lost;
    expect(c.session.state).toBe('lost');
    const restored = once(c, 'restored', 60_000);
    await Promise.all(stopped.map((m) => m.restart()));
    await restored;
    expect(seen.slice(0, 2)).toEqual(['suspended', 'lost']);
    expect(seen.indexOf('restored')).toBeGreaterThan(seen.indexOf('lost'));
    const observer = await coordinator('observer');
    await eventually(
      () => observer.group('g').members(),
      (m) => m.length === 1,
      30_000,
      'the re-join',
    );
    expect(await observer.group('g').members()).toEqual([{ id: 'a', capabilities: { keep: 1 } }]);
  }, 120_000);

  it('a holder paused past its TTL: the waiter gets a larger token, the holder sees LOST first, its release deletes nothing', async () => {
    fresh();
    const holder = child('hold', cluster.url, namespace, 'paused', 'l', '2000');
    const first = await holder.next((m) => m.acquired === true, 'the child to acquire');
    const waiter = await coordinator('waiter');
    const waiting = waiter.lock('l').acquire();
    holder.process.kill('SIGSTOP');
    const next = await deadline(waiting, 30_000, 'the waiter to acquire after the expiry');
    expect(next.token).toBeGreaterThan(BigInt(first.token as string));
    holder.process.kill('SIGCONT');
    holder.send('touch');
    const touched = await holder.next((m) => m.touched === true, 'the resumed holder to check its signal');
    expect(touched).toMatchObject({ aborted: true, code: 'ERR_LOCK_LOST' });
    holder.send('release');
    const released = await holder.next((m) => m.released === true, 'the stale release');
    expect(released.holder).toBe('waiter');
    expect(await waiter.lock('l').holder()).toBe('waiter');
    expect(next.signal.aborted).toBe(false);
    holder.send('exit');
    expect(await deadline(holder.exited, 30_000, 'the child to exit')).toBe(0);
    await next.release();
  }, 60_000);

  it('a holder killed with SIGKILL: the waiter acquires after the lease expires, with a larger token', async () => {
    fresh();
    const holder = child('hold', cluster.url, namespace, 'killed', 'l', '2000');
    const first = await holder.next((m) => m.acquired === true, 'the child to acquire');
    const waiter = await coordinator('waiter');
    let acquired = false;
    const waiting = waiter
      .lock('l')
      .acquire()
      .then((h) => {
        acquired = true;
        return h;
      });
    expect(await waiter.lock('l').holder()).toBe('killed');
    expect(acquired).toBe(false);
    await holder.kill();
    const next = await deadline(waiting, 30_000, 'the waiter to acquire after the expiry');
    expect(next.token).toBeGreaterThan(BigInt(first.token as string));
    await next.release();
  }, 60_000);

  it('4 processes x 500 acquisitions: no two holds overlap and tokens strictly increase', async () => {
    fresh();
    const workers = [0, 1, 2, 3].map((i) => child('work', cluster.url, namespace, `w${i}`, 'contended', '500'));
    await Promise.all(workers.map((w) => w.next((m) => m.done === true, 'the worker to finish', 180_000)));
    const intervals: HoldInterval[] = workers.flatMap((w, i) =>
      w.messages
        .filter((m) => m.start !== undefined)
        .map((m) => ({
          client: `w${i}`,
          token: BigInt(m.token as string),
          start: BigInt(m.start as string),
          end: BigInt(m.end as string),
        })),
    );
    expect(intervals).toHaveLength(2000);
    expect(checkIntervals(intervals)).toEqual({ ok: true, violations: [] });
    for (const w of workers) expect(await deadline(w.exited, 30_000, 'the worker to exit')).toBe(0);
  }, 200_000);
});
