/**
 * etcd: the holder hears it from the backend. A lock or leadership whose key is deleted from outside, a revoked lease,
 * a waiter whose queue entry an operator deletes, what a contender key's value says (an older release's too), and
 * every kind of watch (group, lock, leader, a held lock's own) across a compaction and a restart of etcd. One etcd
 * server; an admin client of the tests plays the operator.
 */
import { randomBytes } from 'node:crypto';
import { Etcd3 } from 'etcd3';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { kQueued } from '../../../src/coordinator.js';
import { ConcordError, connect, type ConnectOptions, type Coordinator, type LeaderChange } from '../../../src/index.js';
import { requireServer, startEtcd, type ServerHandle } from '../../support/servers.js';
import { Collector, aborted, deadline, eventually, once } from '../../support/wait.js';

const availability = requireServer('etcd');

describe.skipIf(!availability.ok)(
  `etcd: the holder hears it from the backend${availability.ok ? '' : ` (skipped: ${availability.reason})`}`,
  () => {
    let server: ServerHandle;
    let admin: Etcd3;
    let namespace = '';
    const open: Coordinator[] = [];

    beforeAll(async () => {
      server = await startEtcd();
      admin = new Etcd3({ hosts: `http://127.0.0.1:${server.port}` });
    });
    afterAll(async () => {
      admin.close();
      await server.stop();
    });
    afterEach(async () => {
      await Promise.all(open.splice(0).map((c) => c.close()));
    });

    const fresh = (): void => {
      namespace = `h${randomBytes(5).toString('hex')}`;
    };
    const coordinator = async (member: string, options: ConnectOptions = {}): Promise<Coordinator> => {
      const c = await connect(server.url, { member, namespace, ...options });
      open.push(c);
      return c;
    };
    /** Contender keys of a lock (kind 'lock') or a group's leadership (kind 'leader'): key -> value (member, and a waiter's entry time). */
    const contenders = (kind: 'lock' | 'leader', name: string): Promise<Record<string, string>> =>
      admin.getAll().prefix(`${namespace}/locks/${kind}/${name}/`).strings();
    const keyOf = async (kind: 'lock' | 'leader', name: string, member: string): Promise<string> => {
      const found = Object.entries(await contenders(kind, name)).find(([, value]) => value.split('\n')[0] === member);
      if (!found) throw new Error(`no contender key of ${member} for ${kind} ${name}`);
      return found[0];
    };
    /** Writes elsewhere, then compacts etcd's history up to now: a watch resumed from before finds its revision gone. */
    const churnAndCompact = async (): Promise<void> => {
      for (let i = 0; i < 20; i++) await admin.put(`churn/${i}`).value(String(i));
      const { header } = await admin.kv.range({ key: Buffer.from('churn/0') });
      await admin.kv.compact({ revision: header.revision, physical: true });
    };
    /** A call that may meet etcd still coming back after a restart. */
    const retrying = async <T>(call: () => Promise<T>): Promise<T> => {
      const end = performance.now() + 30_000;
      for (;;) {
        try {
          return await call();
        } catch (error) {
          if (!(error instanceof ConcordError) || error.code !== 'ERR_CONNECTION' || performance.now() > end) throw error;
          await new Promise((resolve) => setTimeout(resolve, 50));
        }
      }
    };
    const queuedOn = (c: Coordinator): Promise<void> => once(c, kQueued, 30_000);
    const leaders = (items: LeaderChange[]): Array<string | undefined> => items.map((change) => change.leader);

    // ---- issue 20.2 and 20.3: the holder is told

    it('a lock key deleted from outside: the holder is told (ERR_LOCK_LOST) at about the time the waiter takes it', async () => {
      fresh();
      const a = await coordinator('a');
      const b = await coordinator('b');
      const held = await a.lock('l').acquire();
      const queued = queuedOn(b);
      const waiting = b.lock('l').acquire({ timeoutMs: 30_000 });
      await queued;
      const key = await keyOf('lock', 'l', 'a');
      const lost = aborted(held.signal, 5000);
      const start = performance.now();
      await admin.delete().key(key);
      const deleted = performance.now();
      const reason = await lost;
      const toldMs = performance.now() - start;
      const next = await waiting;
      const tookMs = performance.now() - start;
      expect(reason).toMatchObject({ code: 'ERR_LOCK_LOST' });
      expect(next.token).toBeGreaterThan(held.token);
      // Pushed by etcd's watch: far sooner than a renewal (every TTL/3 = 3.3 s here) would have told it.
      expect(toldMs).toBeLessThan(1000);
      console.info(
        `external delete: returned at ${(deleted - start).toFixed(1)} ms, holder told at ${toldMs.toFixed(1)} ms, waiter held at ${tookMs.toFixed(1)} ms`,
      );
      // Its release is harmless: the waiter's lock stays.
      await held.release();
      expect(await a.lock('l').holder()).toBe('b');
      await next.release();
    });

    it('a name held again right after its release: its own releases never count as losses, a delete from outside does', async () => {
      fresh();
      const a = await coordinator('a');
      for (let i = 0; i < 20; i++) {
        const held = await a.lock('again').acquire();
        const signal = held.signal;
        await held.release();
        expect(signal.reason).toMatchObject({ code: 'ERR_ABORTED' });
      }
      const held = await a.lock('again').acquire();
      const lost = aborted(held.signal, 5000);
      await admin.delete().key(await keyOf('lock', 'again', 'a'));
      expect(await lost).toMatchObject({ code: 'ERR_LOCK_LOST' });
      const next = await a.lock('again').acquire({ timeoutMs: 10_000 });
      expect(next.token).toBeGreaterThan(held.token);
      expect(next.signal.aborted).toBe(false);
      await next.release();
    });

    it('a leadership key deleted from outside: the leader is told (ERR_LEADERSHIP_LOST)', async () => {
      fresh();
      const a = await coordinator('a');
      const leadership = await a.group('g').campaign();
      const lost = aborted(leadership.signal, 5000);
      await admin.delete().key(await keyOf('leader', 'g', 'a'));
      expect(await lost).toMatchObject({ code: 'ERR_LEADERSHIP_LOST' });
      expect(a.session.state).toBe('connected');
      // Campaigning again works under the same session.
      const again = await a.group('g').campaign({ timeoutMs: 10_000 });
      expect(again.term).toBeGreaterThan(leadership.term);
      await again.resign();
    });

    it("a revoked lease: the holder is told at once (not at its next renewal) and the session is 'lost', then restored", async () => {
      fresh();
      // A renewal every 20 s: only the backend's push can tell the holder within the bound below.
      const a = await coordinator('a', { sessionTtlMs: 60_000 });
      const b = await coordinator('b');
      const held = await a.lock('l').acquire();
      const queued = queuedOn(b);
      const waiting = b.lock('l').acquire({ timeoutMs: 30_000 });
      await queued;
      const lostEvent = once(a, 'lost', 5000);
      lostEvent.catch(() => undefined);
      const lost = aborted(held.signal, 5000);
      const start = performance.now();
      await admin.leaseClient.leaseRevoke({ ID: a.session.id });
      const revoked = performance.now();
      expect(await lost).toMatchObject({ code: 'ERR_LOCK_LOST' });
      const toldMs = performance.now() - start;
      await lostEvent;
      const next = await waiting;
      const tookMs = performance.now() - start;
      expect(toldMs).toBeLessThan(1000);
      console.info(
        `lease revoke: returned at ${(revoked - start).toFixed(1)} ms, holder told at ${toldMs.toFixed(1)} ms, waiter held at ${tookMs.toFixed(1)} ms`,
      );
      await once(a, 'restored', 30_000);
      expect(a.session.state).toBe('connected');
      await next.release();
    });

    it("a revoked lease of a member that holds no lock: 'lost' at once, then re-joined under a new session", async () => {
      fresh();
      const a = await coordinator('a', { sessionTtlMs: 60_000 });
      const observer = await coordinator('observer');
      await a.group('g').join({ create: true, capabilities: { n: 1 } });
      const lost = once(a, 'lost', 5000);
      const restored = once(a, 'restored', 30_000);
      restored.catch(() => undefined);
      await admin.leaseClient.leaseRevoke({ ID: a.session.id });
      await lost;
      await restored;
      expect(await observer.group('g').members()).toEqual([{ id: 'a', capabilities: { n: 1 } }]);
    });

    // ---- issue 20.5: a waiter's own queue entry deleted

    it('a waiter whose contender key an operator deletes queues again, and gets the lock, with its session alive', async () => {
      fresh();
      const a = await coordinator('a');
      const b = await coordinator('b');
      const held = await a.lock('l').acquire();
      const queued = queuedOn(b);
      let failure: unknown;
      const waiting = b
        .lock('l')
        .acquire({ timeoutMs: 30_000 })
        .catch((error: unknown) => {
          failure = error;
          throw error;
        });
      waiting.catch(() => undefined);
      await queued;
      const first = await keyOf('lock', 'l', 'b');
      const before = (await admin.get(first).exec()).kvs[0]?.create_revision;
      await admin.delete().key(first);
      // Back in line: its key again, newer.
      await eventually(
        async () => (await admin.get(first).exec()).kvs[0]?.create_revision,
        (revision) => failure !== undefined || (revision !== undefined && revision !== before),
        10_000,
        "the waiter's key to be back",
      );
      expect(failure).toBeUndefined();
      expect(b.session.state).toBe('connected');
      await held.release();
      const next = await deadline(waiting, 30_000, 'the waiter to acquire');
      expect(next.token).toBeGreaterThan(held.token);
      await next.release();
    });

    // ---- what a contender key's value says

    it("a contender key's value: a waiter's names its member and when it entered the line; an older release's only the member", async () => {
      fresh();
      const a = await coordinator('a');
      const b = await coordinator('b');
      const held = await a.lock('l').acquire();
      // An older release's waiter: its key's value is the member id alone.
      const old = `${namespace}/locks/lock/l/00000000deadbeef`;
      await admin.put(old).value('old');
      const queued = queuedOn(b);
      const entered = Date.now();
      const waiting = b.lock('l').acquire({ timeoutMs: 30_000 });
      await queued;
      const [, time] = (await contenders('lock', 'l'))[await keyOf('lock', 'l', 'b')]?.split('\n') ?? [];
      expect(Number(time)).toBeGreaterThanOrEqual(entered);
      expect(await a.locks({ kind: 'lock' })).toEqual([
        {
          kind: 'lock',
          name: 'l',
          holders: [{ member: 'a', token: held.token, shared: false }],
          waiting: 2,
          oldestWaiter: { member: 'old' },
        },
      ]);
      await held.release();
      expect(await a.lock('l').holder()).toBe('old');
      const listed = await a.locks({ kind: 'lock' });
      expect(listed[0]?.oldestWaiter?.member).toBe('b');
      expect(listed[0]?.oldestWaiter?.waitedMs).toBeGreaterThanOrEqual(0);
      await admin.delete().key(old);
      const next = await deadline(waiting, 30_000, 'b to acquire');
      // Its key still says when it entered: the holder is the member alone.
      expect(await a.lock('l').holder()).toBe('b');
      expect(await a.locks({ kind: 'lock' })).toEqual([
        { kind: 'lock', name: 'l', holders: [{ member: 'b', token: next.token, shared: false }], waiting: 0 },
      ]);
      await next.release();
    });

    // ---- issue 20.1 and every kind of watch: compaction, and a restart after one

    it("watchLeader() started from a revision etcd has compacted away still reports every change (issue's repro)", async () => {
      fresh();
      const a = await coordinator('a');
      const b = await coordinator('b');
      // A reads once (its driver now knows a revision); others write; the history up to now is compacted.
      await a.lock('x').holder();
      await churnAndCompact();
      const changes = new Collector(a.group('g').watchLeader());
      await changes.until((items) => items.length >= 1, 'the first reading');
      const leadership = await b.group('g').campaign();
      await changes.until((items) => items.some((c) => c.leader === 'b'), 'b to be seen leading', 10_000);
      await leadership.resign();
      await changes.until((items) => items.length >= 3, 'the resignation to be seen', 10_000);
      expect(leaders(changes.items)).toEqual([undefined, 'b', undefined]);
    });

    it('every kind of watch survives a compaction followed by a restart of etcd', async () => {
      fresh();
      const a = await coordinator('a');
      const b = await coordinator('b');
      const c = await coordinator('c');
      // A group watch, a leader watch, a held lock (watched for deletes), and a waiter watching the key ahead.
      await c.group('grp').join({ create: true });
      const events = new Collector(a.group('grp').watch());
      await events.until((items) => items.some((e) => e.type === 'join' && e.member === 'c'), 'the initial member');
      const changes = new Collector(a.group('lead').watchLeader());
      await changes.until((items) => items.length >= 1, 'the first reading');
      const held = await a.lock('held').acquire();
      const owned = await c.lock('queue').acquire();
      const queued = queuedOn(b);
      const waiting = b.lock('queue').acquire({ timeoutMs: 60_000 });
      waiting.catch(() => undefined);
      await queued;

      await churnAndCompact();
      await server.restart();

      // The group watch sees a join after the restart.
      await retrying(() => b.group('grp').join());
      await events.until((items) => items.some((e) => e.type === 'join' && e.member === 'b'), 'the join after the restart', 30_000);
      // The waiter is woken by the release.
      await retrying(() => owned.release());
      const next = await deadline(waiting, 30_000, 'the waiter to acquire after the restart');
      expect(next.token).toBeGreaterThan(owned.token);
      // The leader watch sees a new leader.
      const leadership = await retrying(() => b.group('lead').campaign({ timeoutMs: 30_000 }));
      await changes.until((items) => items.some((x) => x.leader === 'b'), 'the leader after the restart', 30_000);
      // The held lock's own watch still reports an outside delete.
      const lost = aborted(held.signal, 10_000);
      await admin.delete().key(await keyOf('lock', 'held', 'a'));
      expect(await lost).toMatchObject({ code: 'ERR_LOCK_LOST' });
      await leadership.resign();
      await next.release();
    }, 120_000);
  },
);
