/**
 * The conformance cases of shared locks and semaphores: exclusion between modes, many shared holders, a semaphore at
 * its limit, FIFO across modes, a limit mismatch, tokens, a crashed holder's permit, a lost session, and abort and
 * timeout leaving nothing behind. Run by describeConformance for every driver whose features say sharedLocks.
 */
import { describe, expect, it } from 'vitest';
import { ConcordError, type ConnectOptions, type Coordinator, type HeldLock } from '../../src/index.js';
import { kCrash, kQueued } from '../../src/coordinator.js';
import { checkHistory, type LockEvent } from '../support/history.js';
import { aborted, deadline, eventually, once } from '../support/wait.js';
import type { FaultyCoordinator } from './target.js';

/** What the suite lends these cases. */
export interface SharedContext {
  readonly fresh: () => void;
  readonly coordinator: (member: string, options?: ConnectOptions) => Promise<Coordinator>;
  readonly faulty: (member: string, options?: ConnectOptions) => Promise<FaultyCoordinator>;
  readonly codeOf: (promise: Promise<unknown>) => Promise<string | undefined>;
  readonly ttl: number;
  readonly expiryWait: number;
}

export function describeShared(t: SharedContext): void {
  const { fresh, coordinator, faulty, codeOf } = t;

  /** Starts an acquire and resolves once it is registered on the backend (its place in line is taken). */
  const enqueue = async (c: Coordinator, start: () => Promise<HeldLock>): Promise<{ pending: Promise<HeldLock> }> => {
    const queued = once(c, kQueued);
    const pending = start();
    pending.catch(() => undefined);
    await queued;
    // Wrapped: an async function returning the promise itself would wait for the acquisition.
    return { pending };
  };

  describe('shared locks and semaphores', () => {
    it('shared holds coexist, also several in one process; an exclusive one waits for all of them', async () => {
      fresh();
      const a = await coordinator('a');
      const b = await coordinator('b');
      const w = await coordinator('w');
      const r1 = await a.lock('l').acquire({ shared: true });
      const r2 = await a.lock('l').acquire({ shared: true });
      const r3 = await b.lock('l').tryAcquire({ shared: true });
      expect(r3).toBeDefined();
      const readers = [r1, r2, r3 as HeldLock];
      expect(await w.lock('l').tryAcquire()).toBeUndefined();
      expect(await codeOf(w.lock('l').acquire({ timeoutMs: 50 }))).toBe('ERR_LOCK_TIMEOUT');
      expect(await w.lock('l').holders()).toEqual([
        { member: 'a', token: r1.token, shared: true },
        { member: 'a', token: r2.token, shared: true },
        { member: 'b', token: r3?.token, shared: true },
      ]);
      expect(await w.lock('l').holder()).toBe('a');
      const writing = (await enqueue(w, () => w.lock('l').acquire())).pending;
      await r1.release();
      await r3?.release();
      expect(await w.lock('l').holders()).toEqual([{ member: 'a', token: r2.token, shared: true }]);
      await r2.release();
      const writer = await writing;
      expect(writer.token).toBeGreaterThan(readers.map((r) => r.token).reduce((x, y) => (x > y ? x : y)));
      expect(await a.lock('l').holders()).toEqual([{ member: 'w', token: writer.token, shared: false }]);
      expect(await a.lock('l').tryAcquire({ shared: true })).toBeUndefined();
      await writer.release();
      expect(await a.lock('l').holders()).toEqual([]);
    });

    it('waiting is FIFO across modes: no writer starvation, and shared waiters at the head are granted together', async () => {
      fresh();
      const h = await coordinator('h');
      const [s1, x2, s3, s4] = await Promise.all(['s1', 'x2', 's3', 's4'].map((m) => coordinator(m)));
      if (!s1 || !x2 || !s3 || !s4) throw new Error('unreachable');
      const first = await h.lock('l').acquire();
      const order: string[] = [];
      const track = (name: string, pending: Promise<HeldLock>): Promise<HeldLock> =>
        pending.then((held) => {
          order.push(name);
          return held;
        });
      const ps1 = track('s1', (await enqueue(s1, () => s1.lock('l').acquire({ shared: true }))).pending);
      const px2 = track('x2', (await enqueue(x2, () => x2.lock('l').acquire())).pending);
      const ps3 = track('s3', (await enqueue(s3, () => s3.lock('l').acquire({ shared: true }))).pending);
      const ps4 = track('s4', (await enqueue(s4, () => s4.lock('l').acquire({ shared: true }))).pending);
      // An exclusive waiter is in line: a shared attempt must not overtake it.
      expect(await h.lock('l').tryAcquire({ shared: true })).toBeUndefined();
      await first.release();
      const heldS1 = await ps1;
      expect((await h.lock('l').holders()).map((x) => x.member)).toEqual(['s1']);
      await heldS1.release();
      const heldX2 = await px2;
      expect((await h.lock('l').holders()).map((x) => x.member)).toEqual(['x2']);
      await heldX2.release();
      const [heldS3, heldS4] = await Promise.all([ps3, ps4]);
      // Both shared waiters behind the writer hold at once.
      expect((await h.lock('l').holders()).map((x) => x.member)).toEqual(['s3', 's4']);
      expect(order.slice(0, 2)).toEqual(['s1', 'x2']);
      expect([heldS1, heldX2, heldS3, heldS4].map((x) => x.token)).toEqual(
        [heldS1, heldX2, heldS3, heldS4].map((x) => x.token).sort((a, b) => (a < b ? -1 : 1)),
      );
      await Promise.all([heldS3.release(), heldS4.release()]);
    });

    it('a semaphore has at most `limit` holders, serves waiters in order, and is listed with its limit', async () => {
      fresh();
      const a = await coordinator('a');
      const b = await coordinator('b');
      const c = await coordinator('c');
      const sem = a.semaphore('s', { limit: 3 });
      expect(sem.name).toBe('s');
      expect(sem.limit).toBe(3);
      const p1 = await sem.acquire();
      const p2 = await sem.acquire();
      const p3 = await b.semaphore('s', { limit: 3 }).acquire();
      expect(await c.semaphore('s', { limit: 3 }).tryAcquire()).toBeUndefined();
      const waitingC = (await enqueue(c, () => c.semaphore('s', { limit: 3 }).acquire())).pending;
      const waitingB = (await enqueue(b, () => b.semaphore('s', { limit: 3 }).acquire())).pending;
      const holders = await c.semaphore('s', { limit: 3 }).holders();
      expect(holders).toEqual([
        { member: 'a', token: p1.token, shared: true },
        { member: 'a', token: p2.token, shared: true },
        { member: 'b', token: p3.token, shared: true },
      ]);
      // c entered the line first: it is the oldest waiter.
      expect(await c.locks({ kind: 'semaphore' })).toEqual([
        {
          kind: 'semaphore',
          name: 's',
          limit: 3,
          holders,
          waiting: 2,
          oldestWaiter: { member: 'c', waitedMs: expect.any(Number) as number },
        },
      ]);
      // A lock of the same name is another thing entirely.
      const sameName = await c.lock('s').tryAcquire();
      expect(sameName).toBeDefined();
      await sameName?.release();
      await p2.release();
      const pc = await waitingC;
      expect(pc.token).toBeGreaterThan(p3.token);
      expect((await a.semaphore('s', { limit: 3 }).holders()).map((x) => x.member)).toEqual(['a', 'b', 'c']);
      await p1.release();
      const pb = await waitingB;
      expect(pb.token).toBeGreaterThan(pc.token);
      await Promise.all([p3.release(), pc.release(), pb.release()]);
      expect(await a.semaphore('s', { limit: 3 }).holders()).toEqual([]);
    });

    it('a different limit for a semaphore in use is refused, naming both limits', async () => {
      fresh();
      const a = await coordinator('a');
      const b = await coordinator('b');
      const permit = await a.semaphore('s', { limit: 2 }).acquire();
      const refused = b.semaphore('s', { limit: 5 }).acquire();
      await expect(refused).rejects.toBeInstanceOf(ConcordError);
      const error = (await refused.catch((e: unknown) => e)) as ConcordError;
      expect(error.code).toBe('ERR_INVALID_ARGUMENT');
      expect(error.message).toMatch(/\b2\b/);
      expect(error.message).toMatch(/\b5\b/);
      expect(await codeOf(b.semaphore('s', { limit: 5 }).tryAcquire())).toBe('ERR_INVALID_ARGUMENT');
      // The refusal changed nothing: the right limit still works, and once unused any limit may be chosen.
      const second = await b.semaphore('s', { limit: 2 }).tryAcquire();
      expect(second).toBeDefined();
      await Promise.all([permit.release(), second?.release()]);
      const fresh5 = await b.semaphore('s', { limit: 5 }).tryAcquire();
      expect(fresh5?.token).toBeGreaterThan(second?.token ?? 0n);
      await fresh5?.release();
    });

    it('mixed shared and exclusive contenders keep the mode rules and increasing tokens (history checked)', async () => {
      fresh();
      const clients = await Promise.all(['c0', 'c1', 'c2'].map((m) => coordinator(m)));
      const history: LockEvent[] = [];
      const permits: LockEvent[] = [];
      let tick = 0;
      const work = async (c: Coordinator, label: string, k: number): Promise<void> => {
        for (let i = 0; i < 4; i++) {
          const shared = (i + k) % 3 !== 0;
          const asked = ++tick;
          const held = await c.lock('mixed').acquire({ shared });
          history.push({ client: label, kind: 'acquired', token: held.token, at: ++tick, shared, asked });
          await new Promise((resolve) => setImmediate(resolve));
          history.push({ client: label, kind: 'released', token: held.token, at: ++tick, shared });
          await held.release();
          const askedPermit = ++tick;
          const permit = await c.semaphore('pool', { limit: 2 }).acquire();
          permits.push({ client: label, kind: 'acquired', token: permit.token, at: ++tick, asked: askedPermit });
          await new Promise((resolve) => setImmediate(resolve));
          permits.push({ client: label, kind: 'released', token: permit.token, at: ++tick });
          await permit.release();
        }
      };
      await Promise.all(clients.flatMap((c, ci) => [0, 1, 2].map((k) => work(c, `c${ci}.${k}`, k))));
      expect(history.length).toBe(72);
      expect(checkHistory(history)).toEqual({ ok: true, violations: [] });
      expect(checkHistory(permits, { limit: 2 })).toEqual({ ok: true, violations: [] });
    });

    it('a crashed holder’s permit and shared hold free within the session TTL', async () => {
      fresh();
      const crashing = await coordinator('crashing', { sessionTtlMs: t.ttl });
      const other = await coordinator('other');
      await crashing.semaphore('s', { limit: 1 }).acquire();
      await crashing.lock('l').acquire({ shared: true });
      const permit = (await enqueue(other, () => other.semaphore('s', { limit: 1 }).acquire())).pending;
      const writer = (await enqueue(other, () => other.lock('l').acquire())).pending;
      (crashing as unknown as { [kCrash](): void })[kCrash]();
      const [p, w] = await deadline(Promise.all([permit, writer]), t.expiryWait, 'the crashed holds to free');
      expect((await other.semaphore('s', { limit: 1 }).holders()).map((x) => x.member)).toEqual(['other']);
      await Promise.all([p.release(), w.release()]);
    });

    it('a lost session aborts a shared hold and a permit with ERR_LOCK_LOST', async () => {
      fresh();
      const f = await faulty('holder', { sessionTtlMs: t.ttl });
      const other = await coordinator('other');
      const shared = await f.coordinator.lock('l').acquire({ shared: true });
      const permit = await f.coordinator.semaphore('s', { limit: 1 }).acquire();
      const writing = other.lock('l').acquire();
      const permitting = other.semaphore('s', { limit: 1 }).acquire();
      const lost = once(f.coordinator, 'lost', t.expiryWait);
      await f.disconnect();
      await lost;
      for (const held of [shared, permit]) {
        const reason = await aborted(held.signal);
        expect((reason as ConcordError).code).toBe('ERR_LOCK_LOST');
        expect(held.valid).toBe(false);
      }
      const [w, p] = await deadline(Promise.all([writing, permitting]), t.expiryWait, 'the others to acquire');
      expect(w.token).toBeGreaterThan(shared.token);
      expect(p.token).toBeGreaterThan(permit.token);
      await f.reconnect();
      await Promise.all([shared.release(), permit.release()]);
      expect((await other.semaphore('s', { limit: 1 }).holders()).map((x) => x.member)).toEqual(['other']);
      await Promise.all([w.release(), p.release()]);
    });

    it('a timed-out or aborted shared wait or permit wait leaves nothing behind', async () => {
      fresh();
      const a = await coordinator('a');
      const b = await coordinator('b');
      const c = await coordinator('c');
      const writer = await a.lock('l').acquire();
      const permit = await a.semaphore('s', { limit: 1 }).acquire();
      expect(await codeOf(b.lock('l').acquire({ shared: true, timeoutMs: 100 }))).toBe('ERR_LOCK_TIMEOUT');
      expect(await codeOf(b.semaphore('s', { limit: 1 }).acquire({ timeoutMs: 100 }))).toBe('ERR_LOCK_TIMEOUT');
      const controller = new AbortController();
      const sharedWait = codeOf((await enqueue(b, () => b.lock('l').acquire({ shared: true, signal: controller.signal }))).pending);
      const permitWait = codeOf((await enqueue(b, () => b.semaphore('s', { limit: 1 }).acquire({ signal: controller.signal }))).pending);
      controller.abort(new Error('changed my mind'));
      expect(await sharedWait).toBe('ERR_ABORTED');
      expect(await permitWait).toBe('ERR_ABORTED');
      await Promise.all([writer.release(), permit.release()]);
      // Were a stale entry left in either line, these one-shot attempts would fail.
      await eventually(
        async () => {
          const got = await c.semaphore('s', { limit: 1 }).tryAcquire();
          await got?.release();
          return got !== undefined;
        },
        (ok) => ok,
        t.expiryWait,
        'the permit to be free',
      );
      const exclusive = await c.lock('l').tryAcquire();
      expect(exclusive).toBeDefined();
      await exclusive?.release();
      expect(await c.locks()).toEqual([]);
    });

    it('withLock takes a shared hold, and permits release through await using', async () => {
      fresh();
      const a = await coordinator('a');
      const b = await coordinator('b');
      const result = await a.withLock(
        'l',
        async () => {
          const inner = await b.lock('l').tryAcquire({ shared: true });
          expect(inner).toBeDefined();
          await inner?.release();
          return (await b.lock('l').holders()).map((x) => x.shared);
        },
        { shared: true },
      );
      expect(result).toEqual([true]);
      {
        await using permit = await a.semaphore('s', { limit: 1 }).acquire();
        expect(permit.valid).toBe(true);
        expect(await b.semaphore('s', { limit: 1 }).tryAcquire()).toBeUndefined();
      }
      const after = await b.semaphore('s', { limit: 1 }).tryAcquire();
      expect(after).toBeDefined();
      await after?.release();
    });

    it('rejects bad modes and limits before any I/O', async () => {
      fresh();
      const a = await coordinator('a');
      const cases: Array<[string, () => unknown]> = [
        ['limit 0', () => a.semaphore('s', { limit: 0 })],
        ['fractional limit', () => a.semaphore('s', { limit: 1.5 })],
        ['huge limit', () => a.semaphore('s', { limit: 2_000_000 })],
        ['missing options', () => a.semaphore('s', undefined as unknown as { limit: number })],
        ['string limit', () => a.semaphore('s', { limit: '3' as unknown as number })],
        ['bad name', () => a.semaphore('', { limit: 1 })],
        ['non-boolean shared', () => a.lock('l').acquire({ shared: 'yes' as unknown as boolean })],
        ['non-boolean shared try', () => a.lock('l').tryAcquire({ shared: 1 as unknown as boolean })],
        ['shared leadership', () => a.group('g').campaign({ shared: true })],
      ];
      for (const [what, call] of cases) {
        let error: unknown;
        try {
          await call();
        } catch (e) {
          error = e;
        }
        expect(error, what).toBeInstanceOf(ConcordError);
        expect((error as ConcordError).code, what).toBe('ERR_INVALID_ARGUMENT');
      }
      expect(() => a.semaphore('s', { limit: 0 })).toThrow(/limit/);
      await expect(a.lock('l').acquire({ shared: 'yes' as unknown as boolean })).rejects.toThrow(/shared/);
      expect(await a.locks()).toEqual([]);
    });
  });
}
