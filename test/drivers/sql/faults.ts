/**
 * The fault scenarios of shared/DESIGN.md on a SQL backend, against a private server in a temporary folder (the
 * tests kill and restart it): a holder paused past its TTL and one killed (separate processes), the database server
 * killed and restarted while locks are held and waited for, connection cuts shorter and longer than the TTL (fault
 * proxy), and four processes contending for one lock (history checked).
 */
import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { connect, type ConnectOptions, type Coordinator, type HeldLock } from '../../../src/index.js';
import { Child } from '../../support/child.js';
import { checkIntervals, type HoldInterval } from '../../support/history.js';
import { RENEWALS_FAR_APART_TTL_MS, suspendedAtOnce } from '../../support/link.js';
import { FaultProxy } from '../../support/proxy.js';
import type { Availability, ServerHandle } from '../../support/servers.js';
import { aborted, deadline, eventually, once } from '../../support/wait.js';

const LOCK_CHILD = fileURLToPath(new URL('../../support/lock-child.ts', import.meta.url));

export interface SqlFaultTarget {
  readonly name: string;
  readonly availability: Availability;
  readonly start: () => Promise<ServerHandle>;
  readonly defaultPort: number;
  /** Deadlocks the server has detected since it started (each one cost a transaction a retry). */
  readonly deadlocks: (url: string) => Promise<number>;
  /** A connection of its own to the database, outside concord: `?` placeholders. */
  readonly raw: (url: string) => Promise<RawSql>;
  /** How many transactions of the database wait for a row lock, read over `raw`. */
  readonly lockWaits: (raw: RawSql) => Promise<number>;
  /** The driver keeps a connection open at all times (PostgreSQL's LISTEN one), whose drop it reports at once. */
  readonly dropSeenAtOnce: boolean;
}

export interface RawSql {
  query(sql: string, params?: readonly unknown[]): Promise<Array<Record<string, unknown>>>;
  end(): Promise<void>;
}

/** Records when each of a set of promises settled, in one process: the order is what the test asserts. */
class Timeline {
  readonly #events: string[] = [];
  mark(event: string): void {
    this.#events.push(event);
  }
  indexOf(event: string): number {
    return this.#events.indexOf(event);
  }
  get events(): readonly string[] {
    return this.#events;
  }
}

export function describeSqlFaults(target: SqlFaultTarget): void {
  const { availability } = target;
  describe.skipIf(!availability.ok)(`${target.name} faults${availability.ok ? '' : ` (skipped: ${availability.reason})`}`, () => {
    let server: ServerHandle;
    let namespace = '';
    const open: Coordinator[] = [];
    const children: Child[] = [];
    const proxies: FaultProxy[] = [];

    beforeAll(async () => {
      server = await target.start();
    }, 120_000);
    afterAll(async () => {
      await server.stop();
    });
    afterEach(async () => {
      await Promise.all(children.splice(0).map((c) => c.kill()));
      await Promise.all(open.splice(0).map((c) => c.close()));
      await Promise.all(proxies.splice(0).map((p) => p.close()));
      if (!server.running) await server.restart();
    });

    const fresh = (): void => {
      namespace = `f${randomBytes(5).toString('hex')}`;
    };
    const coordinator = async (member: string, options: ConnectOptions = {}): Promise<Coordinator> => {
      const c = await connect(server.url, { member, namespace, ...options });
      open.push(c);
      return c;
    };
    /** A coordinator whose every connection goes through a fault proxy of its own. */
    const behindProxy = async (member: string, options: ConnectOptions = {}): Promise<{ c: Coordinator; proxy: FaultProxy }> => {
      const url = new URL(server.url);
      const proxy = await FaultProxy.start({ host: url.hostname, port: Number(url.port || target.defaultPort) });
      proxies.push(proxy);
      url.port = String(proxy.port);
      const c = await connect(url.href, { member, namespace, ...options });
      open.push(c);
      return { c, proxy };
    };
    const child = (...args: string[]): Child => {
      const c = new Child(LOCK_CHILD, args);
      children.push(c);
      return c;
    };

    it('a holder paused past its TTL: the waiter gets a larger token, the holder sees LOST first, its release deletes nothing', async () => {
      fresh();
      const holder = child('hold', server.url, namespace, 'paused', 'l', '1500');
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
    }, 90_000);

    it('a holder killed with SIGKILL: the lock stays held until its session expires, then the waiter gets a larger token', async () => {
      fresh();
      // A TTL long enough that the look right after the kill surely comes before the expiry, even on a loaded machine.
      const holder = child('hold', server.url, namespace, 'killed', 'l', '4000');
      const first = await holder.next((m) => m.acquired === true, 'the child to acquire');
      const waiter = await coordinator('waiter');
      const other = await coordinator('other');
      const waiting = waiter.lock('l').acquire();
      await holder.kill();
      // Nobody gets it before the session's expiry: the server still counts the killed holder.
      expect(await other.lock('l').tryAcquire()).toBeUndefined();
      const next = await deadline(waiting, 30_000, 'the waiter to acquire after the expiry');
      expect(next.token).toBeGreaterThan(BigInt(first.token as string));
      await next.release();
    }, 90_000);

    it('the database server killed and restarted: a session that outlives the outage keeps its lock, a shorter one is told LOST before anyone else acquires, waiters carry on, no token twice', async () => {
      fresh();
      const line = new Timeline();
      const long = await coordinator('long', { sessionTtlMs: 20_000 });
      const short = await coordinator('short', { sessionTtlMs: 1500 });
      const waiters = await Promise.all(['w1', 'w2'].map((m) => coordinator(m, { sessionTtlMs: 20_000 })));
      const [w1, w2] = waiters as [Coordinator, Coordinator];
      const kept = await long.lock('kept').acquire();
      const dropped = await short.lock('dropped').acquire();
      dropped.signal.addEventListener('abort', () => line.mark('short lost'));
      const tokens = { kept: [kept.token], dropped: [dropped.token] };
      const queued = [once(w1, Symbol.for('concord.queued')), once(w2, Symbol.for('concord.queued'))];
      const waitKept = w1
        .lock('kept')
        .acquire()
        .then((h) => (line.mark('kept granted'), h));
      const waitDropped = w2
        .lock('dropped')
        .acquire()
        .then((h) => (line.mark('dropped granted'), h));
      await Promise.all(queued);

      const suspended = once(long, 'suspended', 30_000);
      await server.kill();
      await suspended;
      // The short session runs out while the server is down: its holder hears before the server is back.
      expect(await aborted(dropped.signal, 30_000)).toMatchObject({ code: 'ERR_LOCK_LOST' });
      const reconnected = once(long, 'reconnected', 60_000);
      await server.restart();
      await reconnected;

      const afterDropped = await deadline(waitDropped, 60_000, 'the waiter of the dropped lock');
      tokens.dropped.push(afterDropped.token);
      expect(line.indexOf('short lost')).toBeLessThan(line.indexOf('dropped granted'));
      // The long session outlived the outage: its lock was never lost, nobody else got it.
      expect(kept.signal.aborted).toBe(false);
      expect(await w2.lock('kept').holder()).toBe('long');
      expect(line.indexOf('kept granted')).toBe(-1);
      await kept.release();
      const afterKept = await deadline(waitKept, 60_000, 'the waiter of the kept lock');
      tokens.kept.push(afterKept.token);
      for (const list of Object.values(tokens)) {
        expect(list[1]).toBeGreaterThan(list[0] as bigint);
      }
      // The restarted server hands out larger tokens still.
      await Promise.all([afterDropped.release(), afterKept.release()]);
      const again = await w1.lock('kept').acquire();
      expect(again.token).toBeGreaterThan(afterKept.token);
      await again.release();
    }, 180_000);

    it('a connection cut shorter than the TTL: suspended, then reconnected, with the lock kept and nobody else served', async () => {
      fresh();
      // Suspended within a third of the TTL, reconnected within two thirds: the last third is the margin.
      const { c: holder, proxy } = await behindProxy('holder', { sessionTtlMs: 9000 });
      const waiter = await coordinator('waiter');
      const held = await holder.lock('l').acquire();
      let granted: HeldLock | undefined;
      const waiting = waiter
        .lock('l')
        .acquire()
        .then((h) => (granted = h));
      const suspended = once(holder, 'suspended', 30_000);
      proxy.cut();
      await suspended;
      expect(await waiter.lock('l').holder()).toBe('holder');
      const reconnected = once(holder, 'reconnected', 30_000);
      proxy.pass();
      await reconnected;
      expect(held.signal.aborted).toBe(false);
      expect(granted).toBeUndefined();
      expect(await waiter.lock('l').holder()).toBe('holder');
      await held.release();
      const next = await deadline(waiting, 30_000, 'the waiter after the release');
      expect(next.token).toBeGreaterThan(held.token);
      await next.release();
    }, 90_000);

    it.runIf(target.dropSeenAtOnce)(
      'a dropped connection is suspended at once, not at the next renewal, and reconnected as soon as the link is back',
      async () => {
        fresh();
        const { c, proxy } = await behindProxy('dropped', { sessionTtlMs: RENEWALS_FAR_APART_TTL_MS });
        await suspendedAtOnce(c, proxy);
      },
      60_000,
    );

    it('a connection cut longer than the TTL: the holder is told LOST before the waiter acquires, then restored', async () => {
      fresh();
      const line = new Timeline();
      const { c: holder, proxy } = await behindProxy('holder', { sessionTtlMs: 1500 });
      const waiter = await coordinator('waiter');
      const held = await holder.lock('l').acquire();
      held.signal.addEventListener('abort', () => line.mark('holder lost'));
      const queued = once(waiter, Symbol.for('concord.queued'));
      const waiting = waiter
        .lock('l')
        .acquire()
        .then((h) => (line.mark('waiter granted'), h));
      await queued;
      proxy.cut();
      const next = await deadline(waiting, 30_000, 'the waiter to acquire after the expiry');
      expect(line.events.slice(0, 2)).toEqual(['holder lost', 'waiter granted']);
      expect(held.signal.reason).toMatchObject({ code: 'ERR_LOCK_LOST' });
      expect(next.token).toBeGreaterThan(held.token);
      const restored = once(holder, 'restored', 30_000);
      proxy.pass();
      await restored;
      expect(await holder.lock('l').holder()).toBe('waiter');
      await next.release();
    }, 90_000);

    it('20 coordinators joining one group at once: every join lands and the server counts no deadlock', async () => {
      fresh();
      const first = await coordinator('m00');
      await first.group('g').join({ create: true });
      const rest = await Promise.all(Array.from({ length: 19 }, (_, i) => coordinator(`m${String(i + 1).padStart(2, '0')}`)));
      const before = await target.deadlocks(server.url);
      await Promise.all(rest.map((c) => c.group('g').join()));
      expect(await target.deadlocks(server.url)).toBe(before);
      expect((await first.group('g').members()).map((m) => m.id)).toHaveLength(20);
    }, 120_000);

    /**
     * While another transaction holds `row` (FOR UPDATE), `start` makes the coordinator wait for it in the backend: its
     * session's renewals (every 500 ms) must go on meanwhile, and `start` completes once the row is free.
     */
    const renewalsGoOnWhileWaitingFor = async (
      row: string,
      prepare: (c: Coordinator) => Promise<unknown>,
      start: (c: Coordinator) => Promise<unknown>,
    ): Promise<void> => {
      fresh();
      const c = await coordinator('w', { sessionTtlMs: 1500 });
      await prepare(c);
      let lost = false;
      c.on('lost', () => {
        lost = true;
      });
      const blocker = await target.raw(server.url);
      const look = await target.raw(server.url);
      try {
        await blocker.query('BEGIN');
        await blocker.query(row, [namespace]);
        // The session's own row: a lost session's successor would have another.
        const [session] = await look.query('SELECT id FROM concord_sessions WHERE ns = ?', [namespace]);
        const expiry = async (): Promise<number> =>
          Number((await look.query('SELECT expires_at AS e FROM concord_sessions WHERE id = ?', [session?.id]))[0]?.e);
        const started = start(c);
        started.catch(() => undefined);
        await eventually(
          () => target.lockWaits(look),
          (n) => n > 0,
          10_000,
          'the request to wait for the row',
        );
        const from = await expiry();
        // A request holding its session row shared while it waits would block every renewal.
        await eventually(expiry, (e) => e > from + 1000, 10_000, 'two renewals while the request waits');
        expect(await target.lockWaits(look)).toBeGreaterThan(0);
        await blocker.query('COMMIT');
        await deadline(started, 30_000, 'the request once the row is free');
        expect(lost).toBe(false);
        expect(c.session.state).toBe('connected');
      } finally {
        await blocker.end();
        await look.end();
      }
    };

    it('a look waiting for a lock row another transaction holds does not hold up its session renewals', async () => {
      await renewalsGoOnWhileWaitingFor(
        "SELECT fence FROM concord_locks WHERE ns = ? AND kind = 'lock' AND name = 'l' FOR UPDATE",
        async (c) => (await c.lock('l').acquire()).release(),
        async (c) => (await c.lock('l').acquire({ timeoutMs: 60_000 })).release(),
      );
    }, 60_000);

    it("a join waiting for its group's change counter another transaction holds does not hold up its session renewals", async () => {
      await renewalsGoOnWhileWaitingFor(
        "SELECT seq FROM concord_logs WHERE ns = ? AND grp = 'g' FOR UPDATE",
        async (c) => {
          await c.group('g').join({ create: true });
          await c.group('g').leave();
        },
        (c) => c.group('g').join(),
      );
    }, 60_000);

    it('4 processes x 500 acquisitions: no two holds overlap and tokens strictly increase', async () => {
      fresh();
      const workers = [0, 1, 2, 3].map((i) => child('work', server.url, namespace, `w${i}`, 'contended', '500'));
      await Promise.all(workers.map((w) => w.next((m) => m.done === true, 'the worker to finish', 280_000)));
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
    }, 300_000);
  });
}
