/**
 * A name's node does not outlive its last request: lock, semaphore and leadership nodes are ZooKeeper containers,
 * which the server removes once their line has emptied. The server here looks for empty containers every 100 ms
 * (znode.container.checkIntervalMs, a minute by default) so the test need not wait a minute.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { connect, type Coordinator } from '../../../src/index.js';
import { requireServer, startZooKeeper, type ServerHandle } from '../../support/servers.js';
import { eventually } from '../../support/wait.js';
import { rawClient, type Tree } from './raw.js';

const availability = requireServer('zookeeper');
const KINDS = ['locks', 'semaphores', 'leaders'] as const;

describe.skipIf(!availability.ok)(`zookeeper lock nodes${availability.ok ? '' : ` (skipped: ${availability.reason})`}`, () => {
  let server: ServerHandle;
  let tree: Tree;
  let namespace = 0;
  const open: Coordinator[] = [];

  beforeAll(async () => {
    // The java launcher reads JDK_JAVA_OPTIONS; the server is started with this process's environment.
    const before = process.env.JDK_JAVA_OPTIONS;
    process.env.JDK_JAVA_OPTIONS = [before, '-Dznode.container.checkIntervalMs=100'].filter(Boolean).join(' ');
    try {
      server = await startZooKeeper();
    } finally {
      if (before === undefined) delete process.env.JDK_JAVA_OPTIONS;
      else process.env.JDK_JAVA_OPTIONS = before;
    }
    tree = await rawClient(Number(new URL(server.url).port));
  });
  afterAll(async () => {
    tree.close();
    await server.stop();
  });
  afterEach(async () => {
    await Promise.all(open.splice(0).map((c) => c.close()));
  });

  const members = async (...names: string[]): Promise<Coordinator[]> => {
    const ns = `tidy${++namespace}`;
    const made = await Promise.all(names.map((member) => connect(server.url, { member, namespace: ns, sessionTtlMs: 5000 })));
    open.push(...made);
    return made;
  };
  /** The names that have a node, per kind, under the coordinators' namespace. */
  const nodes = async (): Promise<Record<(typeof KINDS)[number], string[]>> => {
    const root = `/tidy${namespace}`;
    const [locks = [], semaphores = [], leaders = []] = await Promise.all(
      KINDS.map((kind) => tree.children(`${root}/${kind}`).catch(() => [])),
    );
    return { locks, semaphores, leaders };
  };
  const empty = (found: Record<string, string[]>): boolean => Object.values(found).every((names) => names.length === 0);

  it('exclusive, shared, semaphore, leadership and abandoned requests leave no node once released', async () => {
    const [a, b] = await members('a', 'b');
    if (!a || !b) throw new Error('no coordinators');
    // An exclusive lock handed to a waiter.
    const first = await a.lock('jobs/nightly').acquire();
    const waiting = b.lock('jobs/nightly').acquire();
    // Shared holds and permits side by side.
    const shared = [await a.lock('schema').acquire({ shared: true }), await b.lock('schema').acquire({ shared: true })];
    const permits = [await a.semaphore('pool', { limit: 2 }).acquire(), await b.semaphore('pool', { limit: 2 }).acquire()];
    // A wait that gives up, and a tryAcquire that finds the semaphore full.
    const giveUp = new AbortController();
    const abandoned = a.semaphore('pool', { limit: 2 }).acquire({ signal: giveUp.signal });
    expect(await b.semaphore('pool', { limit: 2 }).tryAcquire()).toBeUndefined();
    // A leadership.
    await a.group('g').join({ create: true });
    const term = await a.group('g').campaign();

    expect(await nodes()).toEqual({ locks: ['jobs%2Fnightly', 'schema'], semaphores: ['pool'], leaders: ['g'] });

    giveUp.abort();
    await expect(abandoned).rejects.toMatchObject({ code: 'ERR_ABORTED' });
    await first.release();
    await (await waiting).release();
    await Promise.all([...shared, ...permits].map((held) => held.release()));
    await term.resign();
    await eventually(nodes, empty, 20_000, 'every lock node to be removed');

    // A name whose node was removed is used again as before, and again leaves nothing.
    const again = await b.lock('jobs/nightly').acquire();
    expect(await a.lock('jobs/nightly').holder()).toBe('b');
    expect((await nodes()).locks).toEqual(['jobs%2Fnightly']);
    await again.release();
    await eventually(nodes, empty, 20_000, 'the lock node to be removed again');
  });

  it('a name in constant use survives the sweeps: every acquisition works while the server removes emptied nodes', async () => {
    const [a, b] = await members('a', 'b');
    if (!a || !b) throw new Error('no coordinators');
    // Each round empties the line, so the node may be removed between any two rounds, or while one enters.
    let previous = 0n;
    for (let round = 0; round < 100; round++) {
      const held = await a.lock('busy').acquire();
      expect(held.token).toBeGreaterThan(previous);
      previous = held.token;
      if (round % 10 === 0) expect(await b.lock('busy').tryAcquire()).toBeUndefined();
      await held.release();
      const permit = await b.semaphore('busy', { limit: 1 }).acquire();
      await permit.release();
    }
    await eventually(nodes, empty, 20_000, 'every lock node to be removed');
  });
});
