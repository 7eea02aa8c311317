/**
 * The conformance suite: one set of assertions every driver runs against a real backend. A driver joins by
 * calling describeConformance(target) from test/conformance/<driver>.test.ts.
 */
import { randomBytes } from 'node:crypto';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import {
  ConcordError,
  connect,
  type ConnectOptions,
  type Coordinator,
  type GroupEvent,
  type HeldLock,
  type Partitioner,
} from '../../src/index.js';
import { kCrash, kQueued } from '../../src/coordinator.js';
import { checkHistory, type LockEvent } from '../support/history.js';
import { aborted, Collector, deadline, eventually, once } from '../support/wait.js';
import { describeShared } from './shared.js';
import type { ConformanceTarget, FaultyCoordinator } from './target.js';

const EXIT_CHECK = fileURLToPath(new URL('../support/exit-check.ts', import.meta.url));

export function describeConformance(target: ConformanceTarget): void {
  describe(`conformance: ${target.name}`, () => {
    let namespace = '';
    const open: Coordinator[] = [];

    beforeAll(() => target.setup());
    afterAll(() => target.teardown());
    afterEach(async () => {
      await Promise.all(open.splice(0).map((c) => c.close()));
    });

    const fresh = (): void => {
      namespace = `t${randomBytes(5).toString('hex')}`;
    };
    const coordinator = async (member: string, options: ConnectOptions = {}): Promise<Coordinator> => {
      const c = await connect(target.url(), { member, namespace, ...options });
      open.push(c);
      return c;
    };
    const faulty = async (member: string, options: ConnectOptions = {}): Promise<FaultyCoordinator> => {
      const f = await target.connectFaulty({ member, namespace, ...options });
      open.push(f.coordinator);
      return f;
    };
    const codeOf = async (promise: Promise<unknown>): Promise<string | undefined> => {
      try {
        await promise;
        return undefined;
      } catch (error) {
        expect(error).toBeInstanceOf(ConcordError);
        return (error as ConcordError).code;
      }
    };
    const ttl = target.shortTtlMs;
    // How long anything that depends on a TTL running out may take: generous, so a loaded machine stays green.
    const expiryWait = ttl * 4 + target.detectionDelayMs + 10_000;

    describe('connect', () => {
      it('reports its member, features and a connected session', async () => {
        fresh();
        const c = await coordinator('alpha');
        expect(c.member).toBe('alpha');
        expect(c.session.state).toBe('connected');
        expect(c.session.id).not.toBe('');
        expect(['process', 'host', 'cluster']).toContain(c.features.scope);
        expect(['push', 'poll']).toContain(c.features.watch);
        expect(c.features.groups && c.features.election && c.features.fencing).toBe(true);
        if (target.descriptor) expect(c.features).toEqual(target.descriptor.features);
      });

      it('gives a default member id of host, pid and random hex', async () => {
        fresh();
        const c = await connect(target.url(), { namespace });
        open.push(c);
        expect(c.member).toMatch(new RegExp(`-${process.pid}-[0-9a-f]{6}$`));
      });

      it('keeps namespaces apart', async () => {
        fresh();
        const a = await coordinator('a');
        const other = await connect(target.url(), { member: 'b', namespace: `${namespace}x` });
        open.push(other);
        await a.group('g').create();
        expect(await a.groups()).toEqual(['g']);
        expect(await other.groups()).toEqual([]);
        await a.lock('l').acquire();
        expect(await other.lock('l').holder()).toBeUndefined();
      });
    });

    describe('groups', () => {
      it('creates, lists sorted, and deletes groups with the right errors', async () => {
        fresh();
        const c = await coordinator('a');
        await c.group('beta').create();
        await c.group('alpha').create();
        expect(await c.groups()).toEqual(['alpha', 'beta']);
        expect(await codeOf(c.group('alpha').create())).toBe('ERR_GROUP_EXISTS');
        await c.group('alpha').delete();
        expect(await codeOf(c.group('alpha').delete())).toBe('ERR_GROUP_NOT_FOUND');
        expect(await c.groups()).toEqual(['beta']);
      });

      it('joins, lists members sorted with capabilities, updates and leaves', async () => {
        fresh();
        const b = await coordinator('b');
        const a = await coordinator('a');
        await a.group('g').create();
        await b.group('g').join({ capabilities: { zone: 'z1', n: [1, 2, { deep: true }] } });
        await a.group('g').join();
        expect(await a.group('g').members()).toEqual([
          { id: 'a', capabilities: {} },
          { id: 'b', capabilities: { zone: 'z1', n: [1, 2, { deep: true }] } },
        ]);
        await a.group('g').updateCapabilities({ weight: 2 });
        expect((await b.group('g').members())[0]).toEqual({ id: 'a', capabilities: { weight: 2 } });
        await a.group('g').leave();
        expect((await b.group('g').members()).map((m) => m.id)).toEqual(['b']);
      });

      it('raises every group error code', async () => {
        fresh();
        const a = await coordinator('a');
        const b = await coordinator('b');
        expect(await codeOf(a.group('nope').join())).toBe('ERR_GROUP_NOT_FOUND');
        expect(await codeOf(a.group('nope').leave())).toBe('ERR_GROUP_NOT_FOUND');
        expect(await codeOf(a.group('nope').members())).toBe('ERR_GROUP_NOT_FOUND');
        expect(await codeOf(a.group('nope').delete())).toBe('ERR_GROUP_NOT_FOUND');
        await a.group('g').join({ create: true });
        expect(await codeOf(a.group('g').join())).toBe('ERR_MEMBER_EXISTS');
        expect(await codeOf(b.group('g').leave())).toBe('ERR_MEMBER_NOT_JOINED');
        expect(await codeOf(b.group('g').updateCapabilities({ x: 1 }))).toBe('ERR_MEMBER_NOT_JOINED');
        expect(await codeOf(a.group('g').delete())).toBe('ERR_GROUP_NOT_EMPTY');
        expect(await codeOf(a.group('g').create())).toBe('ERR_GROUP_EXISTS');
        await a.group('g').leave();
        await a.group('g').delete();
        expect(await a.groups()).toEqual([]);
      });

      it('removes a crashed member after its session expires, and tells watchers', async () => {
        fresh();
        const watcher = await coordinator('watcher');
        const crashing = await coordinator('crashing', { sessionTtlMs: ttl });
        await crashing.group('g').join({ create: true });
        const events = new Collector(watcher.group('g').watch());
        await events.until((e) => e.some((x) => x.type === 'join' && x.member === 'crashing'), 'the initial join');
        (crashing as unknown as { [kCrash](): void })[kCrash]();
        await events.until((e) => e.some((x) => x.type === 'leave' && x.member === 'crashing'), 'the crashed member to leave', expiryWait);
        expect(await watcher.group('g').members()).toEqual([]);
      });
    });

    describe('watch', () => {
      const view = (events: GroupEvent[]): Map<string, unknown> => {
        const members = new Map<string, unknown>();
        for (const e of events) {
          if (e.type === 'leave') members.delete(e.member);
          else members.set(e.member, e.capabilities);
        }
        return members;
      };
      const asMap = (members: Array<{ id: string; capabilities: unknown }>): Map<string, unknown> =>
        new Map(members.map((m) => [m.id, m.capabilities]));

      it('starts with the current members, then live events, without gap or duplicate', async () => {
        fresh();
        const owner = await coordinator('owner');
        await owner.group('g').create();
        const joiners = await Promise.all(['m0', 'm1', 'm2', 'm3', 'm4', 'm5'].map((m) => coordinator(m)));
        await joiners[0]?.group('g').join({ capabilities: { i: 0 } });
        await joiners[1]?.group('g').join({ capabilities: { i: 1 } });
        const watch = owner.group('g').watch();
        const events = new Collector(watch);
        // Joins racing the watch's start: each must appear exactly once.
        await Promise.all(joiners.slice(2).map((j, i) => j.group('g').join({ capabilities: { i: i + 2 } })));
        await events.until((e) => view(e).size === 6, 'six members');
        const joins = events.items
          .filter((e) => e.type === 'join')
          .map((e) => e.member)
          .sort();
        expect(joins).toEqual(['m0', 'm1', 'm2', 'm3', 'm4', 'm5']);
        const initial = events.items.filter((e) => e.type === 'join' && e.initial).map((e) => e.member);
        expect(initial).toEqual(expect.arrayContaining(['m0', 'm1']));
        expect(events.items.slice(0, 2).every((e) => e.type === 'join' && e.initial)).toBe(true);
        expect(view(events.items)).toEqual(asMap(await owner.group('g').members()));
        await watch.close();
        await events.done;
      });

      it("delivers one member's join, updates and leave in order; initial: false skips the snapshot", async () => {
        fresh();
        const a = await coordinator('a');
        const b = await coordinator('b');
        await a.group('g').join({ create: true, capabilities: { v: 0 } });
        const events = new Collector(a.group('g').watch({ initial: false }));
        // The watch is live once it reports a's own change (separate connections are not ordered on every backend).
        await a.group('g').updateCapabilities({ v: 'ready' });
        await events.until((e) => e.length >= 1, 'the marker update');
        await b.group('g').join({ capabilities: { v: 0 } });
        for (let v = 1; v <= 5; v++) await b.group('g').updateCapabilities({ v });
        await b.group('g').leave();
        await events.until((e) => e.some((x) => x.type === 'leave'), 'the leave');
        expect(events.items[0]).toEqual({ type: 'update', group: 'g', member: 'a', capabilities: { v: 'ready' } });
        expect(events.items.slice(1)).toEqual([
          { type: 'join', group: 'g', member: 'b', capabilities: { v: 0 }, initial: false },
          ...[1, 2, 3, 4, 5].map((v) => ({ type: 'update', group: 'g', member: 'b', capabilities: { v } })),
          { type: 'leave', group: 'g', member: 'b' },
        ]);
      });

      it('watches a group that does not exist yet and sees it fill', async () => {
        fresh();
        const a = await coordinator('a');
        const events = new Collector(a.group('later').watch());
        await a.group('later').join({ create: true });
        await events.until((e) => e.length === 1, 'the join');
        // Whether the snapshot was taken before or after the join, it is reported exactly once.
        expect(events.items[0]).toMatchObject({ type: 'join', member: 'a' });
      });

      it('ends when its signal aborts or it is closed, leaving nothing open', async () => {
        fresh();
        const a = await coordinator('a');
        await a.group('g').join({ create: true });
        const controller = new AbortController();
        const events = new Collector(a.group('g').watch({ signal: controller.signal }));
        await events.until((e) => e.length === 1, 'the snapshot');
        controller.abort();
        await deadline(events.done, 5000, 'the watch to end');
        expect(events.error).toBeUndefined();
        const w = a.group('g').watch();
        const iterator = w[Symbol.asyncIterator]();
        expect((await iterator.next()).value).toMatchObject({ member: 'a' });
        await w[Symbol.asyncDispose]();
        expect((await iterator.next()).done).toBe(true);
      });

      it('converges to members() after the watcher was cut off while the group changed', async () => {
        fresh();
        const f = await faulty('watcher');
        const other = await coordinator('other');
        const stay = await coordinator('stay');
        await stay.group('g').join({ create: true, capabilities: { v: 1 } });
        await other.group('g').join();
        const events = new Collector(f.coordinator.group('g').watch());
        await events.until((e) => view(e).size === 2, 'the snapshot');
        await f.disconnect();
        await other.group('g').leave();
        await stay.group('g').updateCapabilities({ v: 2 });
        const late = await coordinator('late');
        await late.group('g').join({ capabilities: { late: true } });
        await f.reconnect();
        const expected = asMap(await stay.group('g').members());
        await events.until(
          (e) => JSON.stringify([...view(e)].sort()) === JSON.stringify([...expected].sort()),
          'the view to converge',
          expiryWait,
        );
        expect(view(events.items)).toEqual(expected);
      });
    });

    describe('locks', () => {
      it('is exclusive with strictly increasing tokens across many contenders (history checked)', async () => {
        fresh();
        const clients = await Promise.all(['c0', 'c1', 'c2'].map((m) => coordinator(m)));
        const history: LockEvent[] = [];
        let tick = 0;
        const work = async (c: Coordinator, label: string): Promise<void> => {
          for (let i = 0; i < 4; i++) {
            const held = await c.lock('shared').acquire();
            history.push({ client: label, kind: 'acquired', token: held.token, at: ++tick });
            await new Promise((resolve) => setImmediate(resolve));
            history.push({ client: label, kind: 'released', token: held.token, at: ++tick });
            await held.release();
          }
        };
        // Three coordinators, each with three concurrent local contenders.
        await Promise.all(clients.flatMap((c, ci) => [0, 1, 2].map((k) => work(c, `c${ci}.${k}`))));
        expect(history.length).toBe(72);
        expect(checkHistory(history)).toEqual({ ok: true, violations: [] });
      });

      it('the history checker catches an overlap and a token that does not grow (negative control)', () => {
        const overlap: LockEvent[] = [
          { client: 'a', kind: 'acquired', token: 1n, at: 1 },
          { client: 'b', kind: 'acquired', token: 2n, at: 2 },
          { client: 'a', kind: 'released', token: 1n, at: 3 },
          { client: 'b', kind: 'released', token: 2n, at: 4 },
        ];
        expect(checkHistory(overlap).ok).toBe(false);
        const stale: LockEvent[] = [
          { client: 'a', kind: 'acquired', token: 5n, at: 1 },
          { client: 'a', kind: 'released', token: 5n, at: 2 },
          { client: 'b', kind: 'acquired', token: 5n, at: 3 },
          { client: 'b', kind: 'released', token: 5n, at: 4 },
        ];
        expect(checkHistory(stale).ok).toBe(false);
      });

      it('reports the holder, and tryAcquire / timeoutMs 0 make one attempt', async () => {
        fresh();
        const a = await coordinator('a');
        const b = await coordinator('b');
        expect(await b.lock('l').holder()).toBeUndefined();
        const held = await a.lock('l').acquire();
        expect(held.name).toBe('l');
        expect(typeof held.token).toBe('bigint');
        expect(await b.lock('l').holder()).toBe('a');
        expect(await b.lock('l').tryAcquire()).toBeUndefined();
        expect(await codeOf(b.lock('l').acquire({ timeoutMs: 0 }))).toBe('ERR_LOCK_TIMEOUT');
        await held.release();
        const next = await b.lock('l').tryAcquire();
        expect(next?.token).toBeGreaterThan(held.token);
        expect(await a.lock('l').holder()).toBe('b');
      });

      it('locks() names the oldest waiter of a lock and of a leadership, and how long it has waited', async () => {
        fresh();
        const a = await coordinator('a');
        const b = await coordinator('b');
        const c = await coordinator('c');
        const held = await a.lock('l').acquire();
        const leadership = await a.group('g').campaign();
        let queued = once(b, kQueued);
        const entered = performance.now();
        const bWaits = b.lock('l').acquire();
        await queued;
        queued = once(c, kQueued);
        const cWaits = c.lock('l').acquire();
        await queued;
        queued = once(c, kQueued);
        const cCampaigns = c.group('g').campaign();
        await queued;
        // Some time passes for the clocks to show (read again until it does; no fixed sleep).
        const listed = await eventually(
          () => a.locks(),
          (locks) => (locks.find((l) => l.kind === 'lock')?.oldestWaiter?.waitedMs ?? -1) >= 30,
          expiryWait,
          "b's wait to show 30 ms",
        );
        const lock = listed.find((l) => l.kind === 'lock');
        const elapsed = performance.now() - entered;
        expect(lock?.waiting).toBe(2);
        expect(lock?.oldestWaiter?.member).toBe('b'); // entered before c, however long c has waited too
        // No longer than b has been in line here, give or take the backend's clock granularity.
        expect(lock?.oldestWaiter?.waitedMs).toBeLessThanOrEqual(elapsed + 100);
        const leader = listed.find((l) => l.kind === 'leader');
        expect(leader?.oldestWaiter?.member).toBe('c');
        expect(leader?.oldestWaiter?.waitedMs).toBeGreaterThanOrEqual(0);
        await held.release();
        const bHeld = await bWaits;
        const after = await b.locks({ kind: 'lock' });
        expect(after[0]?.oldestWaiter?.member).toBe('c');
        await bHeld.release();
        await (await cWaits).release();
        await leadership.resign();
        await (await cCampaigns).resign();
        await eventually(
          () => c.locks(),
          (locks) => locks.every((l) => l.oldestWaiter === undefined),
          expiryWait,
          'no waiter listed once all are released',
        );
      });

      it('locks() lists who holds what and how many wait, by kind and prefix', async () => {
        fresh();
        const a = await coordinator('a');
        const b = await coordinator('b');
        const c = await coordinator('c');
        expect(await a.locks()).toEqual([]);
        const job = await a.lock('jobs/1').acquire();
        const other = await a.lock('other').acquire();
        const queued = once(b, kQueued);
        const waiting = b.lock('jobs/1').acquire();
        await queued;
        const leadership = await c.group('g').campaign();
        expect(await b.locks()).toEqual([
          {
            kind: 'lock',
            name: 'jobs/1',
            holders: [{ member: 'a', token: job.token, shared: false }],
            waiting: 1,
            oldestWaiter: { member: 'b', waitedMs: expect.any(Number) as number },
          },
          { kind: 'lock', name: 'other', holders: [{ member: 'a', token: other.token, shared: false }], waiting: 0 },
          { kind: 'leader', name: 'g', holders: [{ member: 'c', token: leadership.term, shared: false }], waiting: 0 },
        ]);
        expect((await c.locks({ prefix: 'jobs/' })).map((l) => l.name)).toEqual(['jobs/1']);
        expect((await c.locks({ kind: 'leader' })).map((l) => l.name)).toEqual(['g']);
        expect(await c.locks({ kind: 'leader', prefix: 'jobs/' })).toEqual([]);
        await job.release();
        const next = await waiting;
        const listed = await c.locks({ prefix: 'jobs/' });
        expect(listed).toEqual([
          { kind: 'lock', name: 'jobs/1', holders: [{ member: 'b', token: next.token, shared: false }], waiting: 0 },
        ]);
        await Promise.all([next.release(), other.release(), leadership.resign()]);
        // A release is done when it resolves; a backend that tidies a queue entry later may show it briefly.
        await eventually(
          () => c.locks(),
          (locks) => locks.length === 0,
          expiryWait,
          'no lock listed once all are released',
        );
        expect(await codeOf(c.locks({ kind: 'semaphores' as 'lock' }))).toBe('ERR_INVALID_ARGUMENT');
        expect(await codeOf(c.locks({ prefix: 5 as unknown as string }))).toBe('ERR_INVALID_ARGUMENT');
      });

      it('is not reentrant: a second acquire by the same coordinator waits', async () => {
        fresh();
        const a = await coordinator('a');
        const first = await a.lock('l').acquire();
        expect(await a.lock('l').tryAcquire()).toBeUndefined();
        expect(await codeOf(a.lock('l').acquire({ timeoutMs: 50 }))).toBe('ERR_LOCK_TIMEOUT');
        const second = a.lock('l').acquire();
        await first.release();
        const held = await second;
        expect(held.token).toBeGreaterThan(first.token);
      });

      it('a timed-out or aborted wait leaves no waiter behind', async () => {
        fresh();
        const a = await coordinator('a');
        const b = await coordinator('b');
        const c = await coordinator('c');
        const held = await a.lock('l').acquire();
        expect(await codeOf(b.lock('l').acquire({ timeoutMs: 100 }))).toBe('ERR_LOCK_TIMEOUT');
        const controller = new AbortController();
        const queued = once(b, kQueued);
        const waiting = codeOf(b.lock('l').acquire({ signal: controller.signal }));
        await queued;
        controller.abort(new Error('changed my mind'));
        expect(await waiting).toBe('ERR_ABORTED');
        await held.release();
        // Were a stale queue entry left, this attempt would never get the lock. The abort settles the caller at once;
        // its clean-up reaches the backend a moment later, over its own connection.
        const got = await eventually(
          () => c.lock('l').tryAcquire(),
          (h) => h !== undefined,
          expiryWait,
          'the lock to be free of the aborted waiter',
        );
        expect(got).toBeDefined();
        expect(await c.lock('l').holder()).toBe('c');
      });

      it('an already aborted signal rejects with ERR_ABORTED before any I/O', async () => {
        fresh();
        const a = await coordinator('a');
        const controller = new AbortController();
        controller.abort();
        expect(await codeOf(a.lock('l').acquire({ signal: controller.signal }))).toBe('ERR_ABORTED');
        expect(await codeOf(a.group('g').campaign({ signal: controller.signal }))).toBe('ERR_ABORTED');
        expect(await a.lock('l').holder()).toBeUndefined();
      });

      it('hands the lock to waiters in arrival order when the driver says it is fair', async () => {
        fresh();
        const holder = await coordinator('h');
        const waiters = await Promise.all(['w0', 'w1', 'w2', 'w3'].map((m) => coordinator(m)));
        const held = await holder.lock('l').acquire();
        const order: string[] = [];
        const pending: Array<Promise<void>> = [];
        for (const w of waiters) {
          const queued = once(w, kQueued);
          pending.push(
            w
              .lock('l')
              .acquire()
              .then(async (h) => {
                order.push(w.member);
                await h.release();
              }),
          );
          // The next waiter arrives only once this one is registered with the backend.
          await queued;
        }
        await held.release();
        await Promise.all(pending);
        if (target.fairLocks ?? true) expect(order).toEqual(['w0', 'w1', 'w2', 'w3']);
        else expect([...order].sort()).toEqual(['w0', 'w1', 'w2', 'w3']);
      });

      it('a lost session aborts HeldLock.signal with ERR_LOCK_LOST before anyone else acquires', async () => {
        fresh();
        const f = await faulty('holder', { sessionTtlMs: ttl });
        const other = await coordinator('other');
        const held = await f.coordinator.lock('l').acquire();
        const log: string[] = [];
        held.signal.addEventListener('abort', () => log.push('holder lost'));
        const waiting = other
          .lock('l')
          .acquire()
          .then((h) => {
            log.push('other acquired');
            return h;
          });
        const lost = once(f.coordinator, 'lost', expiryWait);
        await f.disconnect();
        await lost;
        const reason = await aborted(held.signal);
        expect(reason).toBeInstanceOf(ConcordError);
        expect((reason as ConcordError).code).toBe('ERR_LOCK_LOST');
        const next = await deadline(waiting, expiryWait, 'the waiter to acquire');
        expect(log).toEqual(['holder lost', 'other acquired']);
        expect(next.token).toBeGreaterThan(held.token);
        await f.reconnect();
        // Release of a lost lock resolves and never deletes the new holder's lock.
        await held.release();
        await held.release();
        expect(await other.lock('l').holder()).toBe('other');
        await next.release();
      });

      it('a waiter whose own session is lost fails with ERR_SESSION_LOST', async () => {
        fresh();
        const holder = await coordinator('holder');
        const f = await faulty('waiter', { sessionTtlMs: ttl });
        const held = await holder.lock('l').acquire();
        const queued = once(f.coordinator, kQueued);
        const waiting = codeOf(f.coordinator.lock('l').acquire());
        // Queued on the backend in the session that is then lost (one that had not queued yet carries on in the next).
        await queued;
        await f.disconnect();
        expect(await deadline(waiting, expiryWait, 'the wait to fail')).toBe('ERR_SESSION_LOST');
        await f.reconnect();
        await held.release();
      });

      it('release is idempotent, aborts the signal, and withLock / asyncDispose release', async () => {
        fresh();
        const a = await coordinator('a');
        const held = await a.lock('l').acquire();
        await Promise.all([held.release(), held.release()]);
        expect(held.signal.aborted).toBe(true);
        expect((held.signal.reason as ConcordError).code).not.toBe('ERR_LOCK_LOST');
        const seen: bigint[] = [];
        const result = await a.withLock('l', (h: HeldLock) => {
          seen.push(h.token);
          return 42;
        });
        expect(result).toBe(42);
        await expect(a.withLock('l', () => Promise.reject(new Error('boom')))).rejects.toThrow('boom');
        expect(await a.lock('l').holder()).toBeUndefined();
        {
          await using scoped = await a.lock('l').acquire();
          expect(await a.lock('l').holder()).toBe('a');
          expect(scoped.token).toBeGreaterThan(seen[0] ?? 0n);
        }
        expect(await a.lock('l').holder()).toBeUndefined();
      });
    });

    describe.skipIf(target.descriptor?.features.sharedLocks !== true)('shared', () => {
      describeShared({ fresh, coordinator, faulty, codeOf, ttl, expiryWait });
    });

    describe('election', () => {
      it('elects one leader at a time with strictly increasing terms; resign hands over', async () => {
        fresh();
        const cs = await Promise.all(['a', 'b', 'c'].map((m) => coordinator(m)));
        const observer = await coordinator('observer');
        expect(await observer.group('g').leader()).toBeUndefined();
        const changes = new Collector(observer.group('g').watchLeader());
        await changes.until((e) => e.length >= 1, 'the current leader');
        const campaigns = cs.map((c) => c.group('g').campaign());
        const terms: bigint[] = [];
        const leaders: string[] = [];
        for (let round = 0; round < 3; round++) {
          const winner = await Promise.race(
            campaigns.map((p, i) => p.then((l) => ({ l, i }))).filter((_p, i) => !leaders.includes(cs[i]?.member ?? '')),
          );
          const leadership = winner.l;
          const member = cs[winner.i]?.member ?? '';
          expect(await observer.group('g').leader()).toBe(member);
          leaders.push(member);
          terms.push(leadership.term);
          expect(leadership.group).toBe('g');
          // Hand-offs quicker than one read may be reported as one change: let the observer see each term first.
          await changes.until((e) => e.some((x) => x.term === leadership.term), `term ${leadership.term} seen`);
          await leadership.resign();
          expect(leadership.signal.aborted).toBe(true);
          expect((leadership.signal.reason as ConcordError).code).not.toBe('ERR_LEADERSHIP_LOST');
        }
        expect(new Set(leaders).size).toBe(3);
        expect(terms[1]).toBeGreaterThan(terms[0] ?? 0n);
        expect(terms[2]).toBeGreaterThan(terms[1] ?? 0n);
        await changes.until((e) => e.some((x) => x.term === terms[2]) && e.at(-1)?.leader === undefined, 'the last resignation');
        // Current leader first (nobody), then every change in order.
        expect(changes.items[0]).toEqual({ leader: undefined });
        const seenTerms = changes.items.flatMap((x) => (x.term === undefined ? [] : [x.term]));
        expect(seenTerms).toEqual([...seenTerms].sort((x, y) => (x < y ? -1 : 1)));
        expect(seenTerms).toEqual(expect.arrayContaining(terms));
      });

      it('campaign waits, honours timeoutMs and abort, and needs neither join nor an existing group', async () => {
        fresh();
        const a = await coordinator('a');
        const b = await coordinator('b');
        const lead = await a.group('nowhere').campaign();
        expect(await codeOf(b.group('nowhere').campaign({ timeoutMs: 0 }))).toBe('ERR_LOCK_TIMEOUT');
        const controller = new AbortController();
        const waiting = codeOf(b.group('nowhere').campaign({ signal: controller.signal }));
        controller.abort();
        expect(await waiting).toBe('ERR_ABORTED');
        await lead[Symbol.asyncDispose]();
        const next = await b.group('nowhere').campaign({ timeoutMs: 10_000 });
        expect(next.term).toBeGreaterThan(lead.term);
        expect(await codeOf(a.group('nowhere').members())).toBe('ERR_GROUP_NOT_FOUND');
      });

      it('a lost session aborts Leadership.signal with ERR_LEADERSHIP_LOST, and another leads with a larger term', async () => {
        fresh();
        const f = await faulty('leader', { sessionTtlMs: ttl });
        const other = await coordinator('other');
        const lead = await f.coordinator.group('g').campaign();
        const next = other.group('g').campaign();
        await f.disconnect();
        const reason = await aborted(lead.signal, expiryWait);
        expect((reason as ConcordError).code).toBe('ERR_LEADERSHIP_LOST');
        const taken = await deadline(next, expiryWait, 'the other to lead');
        expect(taken.term).toBeGreaterThan(lead.term);
        await f.reconnect();
      });
    });

    describe('session', () => {
      it('a short outage: suspended, then reconnected, with the lock kept', async () => {
        fresh();
        // A long TTL so the outage is surely shorter than it.
        const f = await faulty('a', { sessionTtlMs: Math.max(ttl * 5, 2000) });
        const held = await f.coordinator.lock('l').acquire();
        const suspended = once(f.coordinator, 'suspended');
        await f.disconnect();
        await suspended;
        expect(f.coordinator.session.state).toBe('suspended');
        const reconnected = once(f.coordinator, 'reconnected');
        await f.reconnect();
        await reconnected;
        expect(f.coordinator.session.state).toBe('connected');
        expect(held.signal.aborted).toBe(false);
        expect(await f.coordinator.lock('l').holder()).toBe('a');
      });

      it('a long outage: lost, then restored with groups re-joined', async () => {
        fresh();
        const f = await faulty('a', { sessionTtlMs: ttl });
        const observer = await coordinator('observer');
        await f.coordinator.group('g').join({ create: true, capabilities: { keep: 'me' } });
        const events: string[] = [];
        for (const e of ['suspended', 'lost', 'restored', 'reconnected'] as const) f.coordinator.on(e, () => events.push(e));
        const lost = once(f.coordinator, 'lost', expiryWait);
        await f.disconnect();
        await lost;
        expect(f.coordinator.session.state).toBe('lost');
        // One attempt cannot be made without a session; a waiting acquire carries on in the replacement.
        expect(await codeOf(f.coordinator.lock('x').tryAcquire())).toBe('ERR_SESSION_LOST');
        const acquiring = f.coordinator.lock('x').acquire();
        const before = f.coordinator.session.id;
        const restored = once(f.coordinator, 'restored', expiryWait);
        await f.reconnect();
        await restored;
        const held = await deadline(acquiring, expiryWait, 'the acquire started while lost');
        expect(await observer.lock('x').holder()).toBe('a');
        await held.release();
        expect(f.coordinator.session.id).not.toBe(before);
        expect(f.coordinator.session.state).toBe('connected');
        expect(events.indexOf('lost')).toBeLessThan(events.indexOf('restored'));
        await eventually(
          () => observer.group('g').members(),
          (m) => m.some((x) => x.id === 'a'),
          expiryWait,
          're-join',
        );
        expect(await observer.group('g').members()).toEqual([{ id: 'a', capabilities: { keep: 'me' } }]);
      });
    });

    describe('close', () => {
      it('releases locks, leaves groups, ends watches, and every later call rejects with ERR_CLOSED', async () => {
        fresh();
        const a = await coordinator('a');
        const b = await coordinator('b');
        await a.group('g').join({ create: true });
        const held = await a.lock('l').acquire();
        const lead = await a.group('g').campaign();
        const own = new Collector(a.group('g').watch());
        const theirs = new Collector(b.group('g').watch());
        await theirs.until((e) => e.length === 1, 'the snapshot');
        const waiting = codeOf(
          a
            .lock('other')
            .acquire()
            .then(() => a.lock('other').acquire()),
        );
        const closed = once(a, 'closed');
        await Promise.all([a.close(), a.close()]);
        await closed;
        expect(a.session.state).toBe('closed');
        expect(held.signal.aborted && lead.signal.aborted).toBe(true);
        expect(await waiting).toBe('ERR_CLOSED');
        await deadline(own.done, 5000, "the closed coordinator's watch to end");
        await theirs.until((e) => e.some((x) => x.type === 'leave' && x.member === 'a'), 'the leave');
        expect(await b.lock('l').tryAcquire()).toBeDefined();
        expect(await b.group('g').leader()).toBeUndefined();
        for (const call of [
          () => a.groups(),
          () => a.group('g').join(),
          () => a.group('g').members(),
          () => a.group('g').create(),
          () => a.group('g').leave(),
          () => a.group('g').campaign(),
          () => a.group('g').leader(),
          () => a.lock('l').acquire(),
          () => a.lock('l').holder(),
          () => a.withLock('l', () => 1),
        ]) {
          expect(await codeOf(call())).toBe('ERR_CLOSED');
        }
        expect(() => a.group('g').watch()).toThrow(expect.objectContaining({ code: 'ERR_CLOSED' }) as Error);
      });

      it('a process that only calls close() exits by itself', async () => {
        fresh();
        const child = spawn(process.execPath, ['--import', 'tsx', EXIT_CHECK, target.url(), namespace], {
          stdio: ['ignore', 'pipe', 'pipe'],
        });
        let output = '';
        child.stdout.on('data', (d: Buffer) => (output += d.toString()));
        child.stderr.on('data', (d: Buffer) => (output += d.toString()));
        const code = await deadline(
          new Promise<number | null>((resolve) => child.on('exit', resolve)),
          30_000,
          'the child to exit by itself',
        ).catch((error: unknown) => {
          child.kill('SIGKILL');
          throw error;
        });
        expect(output).toContain('closed');
        expect(code).toBe(0);
      });
    });

    describe('partitioner', () => {
      const keys = Array.from({ length: 200 }, (_v, i) => `task-${i}`);

      it('every member computes the same owners, and follows joins, weight updates and leaves', async () => {
        fresh();
        const cs = await Promise.all(['p0', 'p1', 'p2'].map((m) => coordinator(m)));
        const parts: Partitioner[] = [];
        for (const c of cs) parts.push(await c.group('work').partitioner());
        const all = (): boolean => parts.every((p) => p.members().length === 3);
        const changes = new Collector(parts[0]!.changes());
        await eventually(
          () => all(),
          (ok) => ok,
          expiryWait,
          'every partitioner to see three members',
        );
        for (const key of keys) {
          const owners = parts.map((p) => p.owners(key)[0]);
          expect(new Set(owners).size).toBe(1);
          expect(parts.filter((p, i) => p.isMine(key) && cs[i]?.member === owners[0]).length).toBe(1);
        }
        expect(parts[0]?.owners('k', { replicas: 3 }).sort()).toEqual(['p0', 'p1', 'p2']);
        expect(await cs[0]?.group('work').members()).toEqual(expect.arrayContaining([{ id: 'p1', capabilities: { weight: 1 } }]));
        // A heavier member joins: every view takes its weight into account the same way.
        const heavy = await coordinator('heavy');
        const heavyPart = await heavy.group('work').partitioner({ weight: 3, capabilities: { zone: 'b' } });
        await eventually(
          () => parts.every((p) => p.members().includes('heavy')),
          (ok) => ok,
          expiryWait,
          'the heavy join',
        );
        const share = (p: { owners(k: string): string[] }): number => keys.filter((k) => p.owners(k)[0] === 'heavy').length;
        expect(share(heavyPart)).toBeGreaterThan(keys.length / 4);
        for (const p of parts) expect(keys.map((k) => p.owners(k)[0])).toEqual(keys.map((k) => heavyPart.owners(k)[0]));
        await changes.until((e) => e.some((x) => x.joined.includes('heavy')), 'the join in changes()');
        await heavyPart.close();
        await eventually(
          () => parts.every((p) => !p.members().includes('heavy')),
          (ok) => ok,
          expiryWait,
          'the heavy leave',
        );
        await changes.until((e) => e.some((x) => x.left.includes('heavy')), 'the leave in changes()');
        expect(changes.items.at(-1)?.members).toEqual(['p0', 'p1', 'p2']);
      });

      it('drops a crashed member from every view', async () => {
        fresh();
        const a = await coordinator('a');
        const crashing = await coordinator('crashing', { sessionTtlMs: ttl });
        const pa = await a.group('work').partitioner({ algorithm: 'ring' });
        await crashing.group('work').partitioner({ algorithm: 'ring' });
        await eventually(
          () => pa.members(),
          (m) => m.length === 2,
          expiryWait,
          'two members',
        );
        (crashing as unknown as { [kCrash](): void })[kCrash]();
        await eventually(
          () => pa.members(),
          (m) => m.length === 1,
          expiryWait,
          'the crashed member to leave',
        );
        expect(keys.every((k) => pa.isMine(k))).toBe(true);
      });

      it('rejects bad options before joining', async () => {
        fresh();
        const a = await coordinator('a');
        for (const options of [
          { weight: 0 },
          { weight: -1 },
          { weight: NaN },
          { weight: Infinity },
          { algorithm: 'nope' as 'ring' },
          { capabilities: [] as unknown as Record<string, never> },
        ]) {
          expect(await codeOf(a.group('work').partitioner(options))).toBe('ERR_INVALID_ARGUMENT');
        }
        expect(await a.groups()).toEqual([]);
      });
    });

    describe('bad input', () => {
      it('rejects each bad argument with its code, before any I/O, changing nothing', async () => {
        fresh();
        const a = await coordinator('a');
        await a.group('g').join({ create: true, capabilities: { ok: true } });
        const long = 'x'.repeat(256);
        const cases: Array<[string, () => unknown, string]> = [
          ['empty group name', () => a.group(''), 'ERR_INVALID_ARGUMENT'],
          ['long group name', () => a.group(long), 'ERR_INVALID_ARGUMENT'],
          ['control characters', () => a.group('a\nb'), 'ERR_INVALID_ARGUMENT'],
          ['C1 control character', () => a.lock('a\u0085b'), 'ERR_INVALID_ARGUMENT'],
          ['lone surrogate lock name', () => a.lock('l\ud800'), 'ERR_INVALID_ARGUMENT'],
          ['lone surrogate group name', () => a.group('\udc00g'), 'ERR_INVALID_ARGUMENT'],
          ['lone surrogate member', () => connect(target.url(), { member: 'm\ud800', namespace }), 'ERR_INVALID_ARGUMENT'],
          ['TTL too short to renew', () => connect(target.url(), { sessionTtlMs: 5, namespace }), 'ERR_INVALID_ARGUMENT'],
          ['misspelt event', () => a.on('lots' as 'lost', () => undefined), 'ERR_INVALID_ARGUMENT'],
          ['non-string lock name', () => a.lock(42 as unknown as string), 'ERR_INVALID_ARGUMENT'],
          ['array capabilities', () => a.group('g').updateCapabilities([] as unknown as Record<string, never>), 'ERR_INVALID_ARGUMENT'],
          [
            'null capabilities',
            () => a.group('g').join({ capabilities: null as unknown as Record<string, never> }),
            'ERR_INVALID_ARGUMENT',
          ],
          ['huge capabilities', () => a.group('g').updateCapabilities({ big: 'x'.repeat(70_000) }), 'ERR_INVALID_ARGUMENT'],
          ['non-JSON capabilities', () => a.group('g').updateCapabilities({ f: (() => 1) as unknown as string }), 'ERR_INVALID_ARGUMENT'],
          ['NaN in capabilities', () => a.group('g').updateCapabilities({ n: NaN }), 'ERR_INVALID_ARGUMENT'],
          ['negative timeout', () => a.lock('l').acquire({ timeoutMs: -1 }), 'ERR_INVALID_ARGUMENT'],
          ['NaN timeout', () => a.lock('l').acquire({ timeoutMs: NaN }), 'ERR_INVALID_ARGUMENT'],
          ['non-signal', () => a.lock('l').acquire({ signal: {} as AbortSignal }), 'ERR_INVALID_ARGUMENT'],
          ['NaN campaign timeout', () => a.group('g').campaign({ timeoutMs: NaN }), 'ERR_INVALID_ARGUMENT'],
          ['zero TTL', () => connect(target.url(), { sessionTtlMs: 0, namespace }), 'ERR_INVALID_ARGUMENT'],
          ['negative TTL', () => connect(target.url(), { sessionTtlMs: -5, namespace }), 'ERR_INVALID_ARGUMENT'],
          ['bad member', () => connect(target.url(), { member: '', namespace }), 'ERR_INVALID_ARGUMENT'],
          ['bad namespace', () => connect(target.url(), { namespace: 'a\u0000b' }), 'ERR_INVALID_ARGUMENT'],
          ['malformed url', () => connect('not a url'), 'ERR_INVALID_URL'],
          ['unknown scheme', () => connect('gopher://x'), 'ERR_UNKNOWN_DRIVER'],
        ];
        for (const [what, call, code] of cases) {
          let error: unknown;
          try {
            await call();
          } catch (e) {
            error = e;
          }
          expect(error, what).toBeInstanceOf(ConcordError);
          expect((error as ConcordError).code, what).toBe(code);
          expect((error as ConcordError).message.length, what).toBeGreaterThan(0);
        }
        expect(await a.group('g').members()).toEqual([{ id: 'a', capabilities: { ok: true } }]);
        expect(await a.groups()).toEqual(['g']);
        expect(await a.lock('l').holder()).toBeUndefined();
      });

      it('names the argument in the message', async () => {
        fresh();
        const a = await coordinator('a');
        await expect(a.lock('l').acquire({ timeoutMs: -1 })).rejects.toThrow(/timeoutMs/);
        expect(() => a.group('')).toThrow(/name/);
        await expect(a.group('g').join({ capabilities: [] as unknown as Record<string, never> })).rejects.toThrow(/capabilities/);
        await expect(connect(target.url(), { sessionTtlMs: 0, namespace })).rejects.toThrow(/sessionTtlMs/);
      });
    });
  });
}
