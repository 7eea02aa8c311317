/**
 * Redis Cluster: a namespace's slot moved to another master (CLUSTER SETSLOT IMPORTING / MIGRATING, MIGRATE a few
 * keys at a time, SETSLOT NODE) while three coordinators take turns on a lock and a fourth watches a group that
 * members join and leave. During the move the source answers ASK for every script (cluster.ts): requests fail and are
 * retried. Afterwards every connection works against the new master, nothing was lost, and no lock had two holders.
 */
import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { ConcordError, connect, type Coordinator } from '../../../src/index.js';
import { checkHistory, type LockEvent } from '../../support/history.js';
import { redisClusterAvailable, startRedisCluster } from '../../support/redis-cluster.js';
import { eventually } from '../../support/wait.js';

const availability = redisClusterAvailable();

describe.skipIf(!availability.ok)(`redis cluster slot moves${availability.ok ? '' : ` (skipped: ${availability.reason})`}`, () => {
  it('moving the slot of a namespace in use: MOVED/ASK followed, nothing lost, no lock held twice', async () => {
    const cluster = await startRedisCluster();
    const namespace = `m${randomBytes(4).toString('hex')}`;
    const open: Coordinator[] = [];
    try {
      const slot = await cluster.slotOf(`{${namespace}}:ss`);
      const source = await cluster.masterOf(slot);
      let target = source;
      for (const node of cluster.nodes) {
        const admin = await cluster.admin(node);
        const role = (await admin.call('ROLE')) as [string];
        admin.disconnect();
        if (role[0] === 'master' && node.port !== source.port) {
          target = node;
          break;
        }
      }
      expect(target.port).not.toBe(source.port);
      const options = { namespace, sessionTtlMs: 10_000 };
      const workers = await Promise.all(['w1', 'w2', 'w3'].map((member) => connect(cluster.url, { ...options, member })));
      const watcher = await connect(cluster.url, { ...options, member: 'watcher' });
      open.push(...workers, watcher);
      await watcher.group('g').create();
      const view = new Set<string>();
      const watch = watcher.group('g').watch();
      const watching = (async () => {
        for await (const event of watch) {
          if (event.type === 'join') view.add(event.member);
          if (event.type === 'leave') view.delete(event.member);
        }
      })();

      const history: LockEvent[] = [];
      let lost = 0;
      let moved = false;
      let rounds = 0;
      const work = async (c: Coordinator): Promise<void> => {
        let after = 0;
        // Until the move is done and each worker has held the lock a few times since.
        while (!moved || after < 5) {
          try {
            const held = await c.lock('l').acquire({ timeoutMs: 20_000 });
            history.push({ client: c.member, kind: 'acquired', token: held.token, at: performance.now() });
            await new Promise((resolve) => setImmediate(resolve));
            if (held.signal.aborted) lost++;
            history.push({ client: c.member, kind: 'released', token: held.token, at: performance.now() });
            await held.release().catch(() => undefined);
            rounds++;
            if (moved) after++;
          } catch (error) {
            // ASK, MOVED, TRYAGAIN while the slot moves: a connection error, tried again.
            expect((error as ConcordError).code).toBe('ERR_CONNECTION');
            await new Promise((resolve) => setTimeout(resolve, 5));
          }
        }
      };
      const members = async (): Promise<void> => {
        for (const c of workers) await c.group('g').join();
      };
      const running = workers.map((c) => work(c));
      await eventually(
        () => rounds,
        (n) => n >= 20,
        20_000,
        'the workers to take turns',
      );

      // The move, as redis-cli --cluster reshard does it, a few keys per MIGRATE.
      const src = await cluster.admin(source);
      const dst = await cluster.admin(target);
      const sourceId = (await src.call('CLUSTER', 'MYID')) as string;
      const targetId = (await dst.call('CLUSTER', 'MYID')) as string;
      await dst.call('CLUSTER', 'SETSLOT', String(slot), 'IMPORTING', sourceId);
      await src.call('CLUSTER', 'SETSLOT', String(slot), 'MIGRATING', targetId);
      const joining = members().catch((error: unknown) => error);
      for (;;) {
        const keys = (await src.call('CLUSTER', 'GETKEYSINSLOT', String(slot), '3')) as string[];
        if (keys.length === 0) break;
        await src.call('MIGRATE', target.host, String(target.port), '', '0', '5000', 'KEYS', ...keys);
      }
      await dst.call('CLUSTER', 'SETSLOT', String(slot), 'NODE', targetId);
      await src.call('CLUSTER', 'SETSLOT', String(slot), 'NODE', targetId);
      src.disconnect();
      dst.disconnect();
      moved = true;
      expect(await cluster.masterOf(slot)).toBe(target);

      await Promise.all(running);
      // A join that failed during the move is made again now.
      if ((await joining) instanceof Error) await members();
      await eventually(
        () => [...view].sort().join(','),
        (v) => v === 'w1,w2,w3',
        20_000,
        'the watcher to see every member',
      );
      const result = checkHistory(history);
      expect(result.violations).toEqual([]);
      expect(lost).toBe(0);
      // The sessions lived through the move (a renewal that failed during it is made again within a third of the TTL).
      await eventually(
        () => open.map((c) => c.session.state),
        (states) => states.every((state) => state === 'connected'),
        15_000,
        'every session to be renewed',
      );
      await watch.close();
      await watching;
      // The keys are all on the target now.
      const after = await cluster.admin(target);
      expect(await after.exists(`{${namespace}}:ss`)).toBe(1);
      after.disconnect();
    } finally {
      await Promise.all(open.map((c) => c.close()));
      await cluster.stop();
    }
  }, 120_000);
});
