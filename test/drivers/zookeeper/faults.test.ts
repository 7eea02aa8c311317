/**
 * ZooKeeper under faults, on a three-member ensemble on loopback ports: the leader killed, quorum lost, a lock holder
 * paused past its session timeout and one killed (separate processes), a client cut off for less and for more than
 * its timeout (a fault proxy in front of every member), and four processes contending for one lock.
 */
import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { ConcordError, connect, type ConnectOptions, type Coordinator, type GroupEvent } from '../../../src/index.js';
import { Child } from '../../support/child.js';
import { checkIntervals, type HoldInterval } from '../../support/history.js';
import { FaultProxy } from '../../support/proxy.js';
import { requireServer, startZooKeeperEnsemble, type ZooKeeperEnsemble } from '../../support/servers.js';
import { Collector, aborted, deadline, eventually, once } from '../../support/wait.js';

const CHILD = fileURLToPath(new URL('../../support/lock-child.ts', import.meta.url));
const availability = requireServer('zookeeper');

describe.skipIf(!availability.ok)(`zookeeper faults${availability.ok ? '' : ` (skipped: ${availability.reason})`}`, () => {
  let ensemble: ZooKeeperEnsemble;
  let namespace = '';
  const open: Coordinator[] = [];
  const children: Child[] = [];
  const proxies: FaultProxy[] = [];

  beforeAll(async () => {
    ensemble = await startZooKeeperEnsemble(3);
  });
  afterAll(async () => {
    await ensemble.stop();
  });
  afterEach(async () => {
    for (const child of children.splice(0)) await child.kill();
    for (const proxy of proxies) proxy.pass();
    await Promise.all(open.splice(0).map((c) => c.close()));
    await Promise.all(proxies.splice(0).map((p) => p.close()));
    // Every member up again for the next test.
    await Promise.all(ensemble.members.filter((m) => !m.running).map((m) => m.restart()));
    for (const m of ensemble.members) m.resume();
    await ensemble.leader();
  });

  const fresh = (): void => {
    namespace = `f${randomBytes(5).toString('hex')}`;
  };
  const coordinator = async (member: string, options: ConnectOptions = {}, url = ensemble.url): Promise<Coordinator> => {
    const c = await connect(url, { member, namespace, ...options });
    open.push(c);
    return c;
  };
  const child = (...args: string[]): Child => {
    const c = new Child(CHILD, args);
    children.push(c);
    return c;
  };
  /** A URL that reaches every member through a fault proxy of its own. */
  const proxied = async (): Promise<{ url: string; links: FaultProxy[] }> => {
    const links = await Promise.all(ensemble.members.map((m) => FaultProxy.start({ host: m.host, port: m.port })));
    proxies.push(...links);
    return { url: `zookeeper://${links.map((l) => `127.0.0.1:${l.port}`).join(',')}`, links };
  };
  /** Retries a call that may fail while the client finds another member or the ensemble elects a leader. */
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

  it('keeps a held lock and a gapless watch through the loss of the leader; nobody else holds it; new acquisitions work', async () => {
    fresh();
    const holder = await coordinator('holder', { sessionTtlMs: 6000 });
    const watcher = await coordinator('watcher', { sessionTtlMs: 6000 });
    const joiners = await Promise.all(Array.from({ length: 9 }, (_v, i) => coordinator(`m${i}`, { sessionTtlMs: 6000 })));
    await watcher.group('g').create();
    const events = new Collector(watcher.group('g').watch());
    const held = await holder.lock('l').acquire();
    const lost: string[] = [];
    for (const c of [holder, watcher, ...joiners]) c.on('lost', () => lost.push(c.member));
    // A contender that waits through the election: it must not get the lock while the holder keeps it.
    const contender = await coordinator('contender', { sessionTtlMs: 6000 });
    let contended = false;
    const contending = contender
      .lock('l')
      .acquire({ timeoutMs: 60_000 })
      .then((h) => {
        contended = true;
        return h;
      });
    const join = (i: number): Promise<unknown> =>
      retrying(
        () => joiners[i]?.group('g').join({ capabilities: { i } }) ?? Promise.resolve(),
        (e) => e.code === 'ERR_MEMBER_EXISTS',
      );
    // Joins before, during and after the election.
    await Promise.all([0, 1, 2].map(join));
    const leader = await ensemble.leader();
    const killed = ensemble.members[leader];
    if (!killed) throw new Error('no leader');
    const during = Promise.all([3, 4, 5].map(join));
    await killed.kill();
    await during;
    await ensemble.leader();
    await Promise.all([6, 7, 8].map(join));

    const names = joiners.map((j) => j.member);
    await events.until((items) => names.every((n) => items.some((e) => e.type === 'join' && e.member === n)), 'every join', 30_000);
    // No gap (every join seen) and no duplicate (each exactly once, nothing left).
    const joins = events.items.filter((e): e is Extract<GroupEvent, { type: 'join' }> => e.type === 'join').map((e) => e.member);
    expect(joins.sort()).toEqual([...names].sort());
    expect(events.items.filter((e) => e.type === 'leave')).toEqual([]);

    // The lock was kept all along, and nobody else got it.
    expect(held.signal.aborted).toBe(false);
    expect(contended).toBe(false);
    expect(lost).toEqual([]);
    expect(await retrying(() => watcher.lock('l').holder())).toBe('holder');
    expect(await retrying(() => watcher.lock('l').tryAcquire())).toBeUndefined();
    const other = await watcher.lock('other').acquire({ timeoutMs: 20_000 });
    await other.release();
    // The held lock hands over to the waiting contender, with a larger token.
    await retrying(() => held.release());
    const next = await contending;
    expect(next.token).toBeGreaterThan(held.token);
    expect(held.signal.reason).toMatchObject({ code: 'ERR_ABORTED' });
    await next.release();
  }, 120_000);

  it('losing quorum: suspended, then lost after the TTL, then restored with the group re-joined', async () => {
    fresh();
    const c = await coordinator('a', { sessionTtlMs: 3000 });
    await c.group('g').join({ create: true, capabilities: { keep: 1 } });
    const held = await c.lock('l').acquire();
    const seen: string[] = [];
    for (const e of ['suspended', 'reconnected', 'lost', 'restored'] as const) c.on(e, () => seen.push(e));
    const suspended = once(c, 'suspended', 30_000);
    const lost = once(c, 'lost', 30_000);
    const stopped = ensemble.members.slice(0, 2);
    await Promise.all(stopped.map((m) => m.kill()));
    await suspended;
    await lost;
    expect(c.session.state).toBe('lost');
    expect((held.signal.reason as ConcordError).code).toBe('ERR_LOCK_LOST');
    const restored = once(c, 'restored', 60_000);
    await Promise.all(stopped.map((m) => m.restart()));
    await restored;
    expect(seen.slice(0, 2)).toEqual(['suspended', 'lost']);
    expect(seen.indexOf('restored')).toBeGreaterThan(seen.indexOf('lost'));
    const observer = await coordinator('observer');
    // The old session may outlive the outage on the servers (a new leader renews every session): its membership is
    // replaced by the new session's, never duplicated.
    await eventually(
      () => observer.group('g').members(),
      (m) => m.length === 1,
      30_000,
      'the re-join',
    );
    expect(await observer.group('g').members()).toEqual([{ id: 'a', capabilities: { keep: 1 } }]);
    const again = await c.lock('l').acquire({ timeoutMs: 30_000 });
    expect(again.token).toBeGreaterThan(held.token);
    await again.release();
  }, 120_000);

  it('a holder paused past its session timeout: the waiter gets a larger token, the holder sees LOST first, its release deletes nothing', async () => {
    fresh();
    const holder = child('hold', ensemble.url, namespace, 'paused', 'l', '2000');
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

  it('a holder killed with SIGKILL: the waiter acquires once its session expires, with a larger token', async () => {
    fresh();
    const holder = child('hold', ensemble.url, namespace, 'killed', 'l', '2000');
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

  it('a client cut off for less than its timeout: suspended, then reconnected, with its lock and membership kept', async () => {
    fresh();
    const { url, links } = await proxied();
    const c = await coordinator('a', { sessionTtlMs: 6000 }, url);
    const observer = await coordinator('observer');
    await c.group('g').join({ create: true, capabilities: { keep: 1 } });
    const held = await c.lock('l').acquire();
    const seen: string[] = [];
    for (const e of ['suspended', 'reconnected', 'lost', 'restored'] as const) c.on(e, () => seen.push(e));
    const suspended = once(c, 'suspended', 30_000);
    for (const link of links) link.cut();
    await suspended;
    const reconnected = once(c, 'reconnected', 30_000);
    for (const link of links) link.pass();
    await reconnected;
    expect(seen).toEqual(['suspended', 'reconnected']);
    expect(held.signal.aborted).toBe(false);
    expect(await observer.lock('l').holder()).toBe('a');
    expect(await observer.group('g').members()).toEqual([{ id: 'a', capabilities: { keep: 1 } }]);
    await held.release();
  }, 60_000);

  it('a client cut off for longer than its timeout: lost before anyone else holds its lock, then restored', async () => {
    fresh();
    const { url, links } = await proxied();
    const c = await coordinator('a', { sessionTtlMs: 2000 }, url);
    const observer = await coordinator('observer');
    await c.group('g').join({ create: true, capabilities: { keep: 1 } });
    const held = await c.lock('l').acquire();
    const events = new Collector(observer.group('g').watch());
    await events.until((e) => e.length === 1, 'the snapshot');
    const seen: string[] = [];
    for (const e of ['suspended', 'reconnected', 'lost', 'restored'] as const) c.on(e, () => seen.push(e));
    let lostFirst: boolean | undefined;
    const waiting = observer
      .lock('l')
      .acquire()
      .then((h) => {
        lostFirst ??= held.signal.aborted;
        return h;
      });
    for (const link of links) link.cut();
    await aborted(held.signal, 30_000);
    lostFirst ??= true;
    const next = await deadline(waiting, 30_000, 'the waiter to acquire after the expiry');
    expect(lostFirst).toBe(true);
    expect((held.signal.reason as ConcordError).code).toBe('ERR_LOCK_LOST');
    expect(next.token).toBeGreaterThan(held.token);
    // The expired member left every watcher's view.
    await events.until((e) => e.some((x) => x.type === 'leave' && x.member === 'a'), 'the leave');
    const restored = once(c, 'restored', 60_000);
    for (const link of links) link.pass();
    await restored;
    expect(seen.slice(0, 2)).toEqual(['suspended', 'lost']);
    await events.until((e) => e.filter((x) => x.type === 'join' && x.member === 'a').length === 2, 'the re-join');
    expect(await observer.group('g').members()).toEqual([{ id: 'a', capabilities: { keep: 1 } }]);
    // Its stale release deletes nothing of the new holder's.
    await held.release();
    expect(await observer.lock('l').holder()).toBe('observer');
    await next.release();
  }, 90_000);

  it('4 processes x 500 acquisitions: no two holds overlap and tokens strictly increase', async () => {
    fresh();
    const workers = [0, 1, 2, 3].map((i) => child('work', ensemble.url, namespace, `w${i}`, 'contended', '500'));
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
