/**
 * concord locks and concord status on SQLite (the default backend, in a temporary file), and on a Redis and a
 * ZooKeeper the test starts: what they print is what coordinator.locks() and the groups say, as text and as JSON;
 * shared holds and semaphores where the driver has them.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { connect, isConcordError, type Coordinator } from '../../src/index.js';
import { requireServer, startZooKeeper } from '../support/servers.js';
import { eventually } from '../support/wait.js';
import { BACKENDS, type Backend } from './backends.js';
import { concord, lines } from './run.js';

let namespace = 0;
const open: Coordinator[] = [];

const zookeeper: Backend = {
  name: 'zookeeper',
  availability: requireServer('zookeeper'),
  start: async () => {
    const server = await startZooKeeper();
    return { url: server.url, stop: () => server.stop() };
  },
};

/** A URL of the backend with a password in it, for the backends that take one there. */
/** A waiter cell of `concord locks`: node-b and how long it has waited. */
const WAITED = /^node-b \((\d+ ms|\d+\.\d\d s)\)$/;

const PASSWORDS: Readonly<Record<string, (url: string) => string>> = {
  redis: (url) => url.replace('redis://', 'redis://:hunter2@'),
  zookeeper: (url) => url.replace('zookeeper://', 'zookeeper://concord:hunter2@'),
};

for (const backend of [...BACKENDS, zookeeper]) {
  const { ok } = backend.availability;
  const skipped = backend.availability.ok ? '' : ` (skipped: ${backend.availability.reason})`;
  describe.skipIf(!ok)(`concord locks and status on ${backend.name}${skipped}`, { timeout: 90_000 }, () => {
    let url: string;
    let ns: string;
    let stopBackend: () => Promise<void>;

    beforeAll(async () => {
      ({ url, stop: stopBackend } = await backend.start());
    });

    afterAll(async () => {
      await stopBackend();
    });

    afterEach(async () => {
      await Promise.all(open.splice(0).map((coordinator) => coordinator.close()));
    });

    async function member(name: string): Promise<Coordinator> {
      const coordinator = await connect(url, { member: name, namespace: ns });
      open.push(coordinator);
      return coordinator;
    }

    /** A picture with a group, a leader, a held lock with a waiter, and a second lock. */
    async function scene(): Promise<{ jobToken: bigint; cacheToken: bigint; term: bigint; stop: AbortController }> {
      namespace++;
      ns = `inspect-${namespace}`;
      const [a, b] = [await member('node-a'), await member('node-b')];
      await a.group('workers').join({ create: true, capabilities: { zone: 'eu' } });
      await b.group('workers').join({ capabilities: {} });
      const term = (await a.group('workers').campaign()).term;
      const job = await a.lock('jobs/nightly').acquire();
      const cacheToken = (await b.lock('cache').acquire()).token;
      const stop = new AbortController();
      b.lock('jobs/nightly')
        .acquire({ signal: stop.signal })
        .catch((error: unknown) => {
          if (!isConcordError(error, 'ERR_ABORTED') && !isConcordError(error, 'ERR_CLOSED')) throw error;
        });
      await eventually(
        () => a.locks({ prefix: 'jobs/' }),
        (locks) => locks[0]?.waiting === 1,
        20_000,
        'the waiter to queue',
      );
      return { jobToken: job.token, cacheToken, term, stop };
    }

    it('locks prints each holder with its token and the waiters, filtered by prefix and kind', async () => {
      const { jobToken, term, stop } = await scene();
      const base = ['--url', url, '--namespace', ns];
      const [json, text, prefixed, leaders] = await Promise.all([
        concord(['locks', '--json', ...base]),
        concord(['locks', ...base]),
        concord(['locks', '--prefix', 'jobs/', '--json', ...base]),
        concord(['locks', '--kind', 'leader', ...base]),
      ]);
      expect(json.code, json.stderr).toBe(0);
      const a = open[0];
      // The same as locks() says, but for how long the waiter has waited, which grows between the two reads.
      const untimed = (value: unknown): unknown =>
        JSON.parse(JSON.stringify(value, (k, v: unknown) => (k === 'waitedMs' ? undefined : typeof v === 'bigint' ? String(v) : v)));
      expect(untimed(JSON.parse(json.stdout))).toEqual(untimed(await a?.locks()));
      expect(JSON.parse(prefixed.stdout)).toEqual([
        {
          name: 'jobs/nightly',
          kind: 'lock',
          holders: [{ member: 'node-a', token: String(jobToken), shared: false }],
          waiting: 1,
          oldestWaiter: { member: 'node-b', waitedMs: expect.any(Number) as number },
        },
      ]);
      const rows = lines(text.stdout).map((line) => line.split(/\s{2,}/));
      expect(rows[0]).toEqual(['NAME', 'KIND', 'HOLDER', 'MODE', 'TOKEN', 'LIMIT', 'WAITING', 'OLDEST WAITER']);
      expect(rows).toContainEqual([
        'jobs/nightly',
        'lock',
        'node-a',
        'exclusive',
        String(jobToken),
        '-',
        '1',
        expect.stringMatching(WAITED),
      ]);
      expect(rows).toContainEqual(['workers', 'leader', 'node-a', 'exclusive', String(term), '-', '0', '-']);
      expect(lines(leaders.stdout).slice(1)).toEqual([
        expect.stringMatching(new RegExp(`^workers\\s+leader\\s+node-a\\s+exclusive\\s+${term}\\s+-\\s+0\\s+-$`)),
      ]);
      stop.abort();
    });

    it('locks rejects a bad --kind before connecting', async () => {
      const result = await concord(['locks', '--kind', 'mutex', '--url', 'redis://127.0.0.1:1']);
      expect(result.code).toBe(2);
      expect(lines(result.stderr)).toEqual([
        'concord: option --kind must be lock, semaphore or leader, got "mutex" (see concord locks --help)',
      ]);
    });

    it('status shows the groups with member counts, leaders with terms, held locks and waiters', async () => {
      const { jobToken, cacheToken, term, stop } = await scene();
      const base = ['--url', url, '--namespace', ns];
      const [json, text] = await Promise.all([concord(['status', '--json', ...base]), concord(['status', ...base])]);
      expect(json.code, json.stderr).toBe(0);
      const status = JSON.parse(json.stdout) as Record<string, unknown>;
      expect(status).toMatchObject({
        url: open[0]?.url,
        groups: [{ name: 'workers', members: 2 }],
        leaders: [{ name: 'workers', kind: 'leader', holders: [{ member: 'node-a', token: String(term), shared: false }], waiting: 0 }],
        semaphores: [],
      });
      expect(status.locks).toEqual([
        { name: 'cache', kind: 'lock', holders: [{ member: 'node-b', token: String(cacheToken), shared: false }], waiting: 0 },
        {
          name: 'jobs/nightly',
          kind: 'lock',
          holders: [{ member: 'node-a', token: String(jobToken), shared: false }],
          waiting: 1,
          oldestWaiter: { member: 'node-b', waitedMs: expect.any(Number) as number },
        },
      ]);
      expect(status.oldestWaiter).toEqual({ kind: 'lock', name: 'jobs/nightly', member: 'node-b', waitedMs: expect.any(Number) as number });
      const shown = lines(text.stdout);
      expect(shown[0]).toBe(`backend  ${open[0]?.url ?? ''} (changes ${open[0]?.features.watch === 'push' ? 'pushed' : 'polled'})`);
      expect(shown[1]?.trim()).toBe('1 group, 2 members, 1 leader, 2 locks held, 1 waiting');
      expect(shown[2]?.trim()).toMatch(/^oldest waiter node-b \((\d+ ms|\d+\.\d\d s)\), for lock jobs\/nightly$/);
      expect(shown).toContainEqual(expect.stringMatching(/^workers\s+2$/));
      expect(shown).toContainEqual(expect.stringMatching(new RegExp(`^workers\\s+node-a\\s+${term}\\s+0$`)));
      expect(shown).toContainEqual(expect.stringMatching(new RegExp(`^jobs/nightly\\s+node-a\\s+${jobToken}\\s+1$`)));
      stop.abort();
    });

    it('locks and status show shared holders and semaphores with their limits', async () => {
      namespace++;
      ns = `inspect-${namespace}`;
      const [a, b, c] = [await member('node-a'), await member('node-b'), await member('node-c')];
      const reads = [await a.lock('schema').acquire({ shared: true }), await b.lock('schema').acquire({ shared: true })];
      const permits = [await a.semaphore('pool', { limit: 3 }).acquire(), await b.semaphore('pool', { limit: 3 }).acquire()];
      // A lock and a semaphore may share a name.
      const same = await c.semaphore('schema', { limit: 1 }).acquire();
      const stop = new AbortController();
      const waiting = c
        .lock('schema')
        .acquire({ signal: stop.signal })
        .catch(() => undefined);
      await eventually(
        () => a.locks({ kind: 'lock' }),
        (locks) => locks[0]?.waiting === 1,
        20_000,
        'the exclusive waiter to queue',
      );
      const base = ['--url', url, '--namespace', ns];
      const [json, text, semaphores, status, statusJson] = await Promise.all([
        concord(['locks', '--json', ...base]),
        concord(['locks', ...base]),
        concord(['locks', '--kind', 'semaphore', ...base]),
        concord(['status', ...base]),
        concord(['status', '--json', ...base]),
      ]);
      const [r1, r2, p1, p2] = [...reads, ...permits].map((held) => String(held.token));
      expect(JSON.parse(json.stdout)).toEqual([
        {
          name: 'schema',
          kind: 'lock',
          holders: [
            { member: 'node-a', token: r1, shared: true },
            { member: 'node-b', token: r2, shared: true },
          ],
          waiting: 1,
          oldestWaiter: { member: 'node-c', waitedMs: expect.any(Number) as number },
        },
        {
          name: 'pool',
          kind: 'semaphore',
          holders: [
            { member: 'node-a', token: p1, shared: true },
            { member: 'node-b', token: p2, shared: true },
          ],
          limit: 3,
          waiting: 0,
        },
        {
          name: 'schema',
          kind: 'semaphore',
          holders: [{ member: 'node-c', token: String(same.token), shared: true }],
          limit: 1,
          waiting: 0,
        },
      ]);
      expect(lines(text.stdout).map((line) => line.split(/\s{2,}/))).toEqual([
        ['NAME', 'KIND', 'HOLDER', 'MODE', 'TOKEN', 'LIMIT', 'WAITING', 'OLDEST WAITER'],
        ['schema', 'lock', 'node-a', 'shared', r1, '-', '1', expect.stringMatching(/^node-c \(/) as string],
        ['schema', 'lock', 'node-b', 'shared', r2, '-'],
        ['pool', 'semaphore', 'node-a', 'shared', p1, '3', '0', '-'],
        ['pool', 'semaphore', 'node-b', 'shared', p2, '3'],
        ['schema', 'semaphore', 'node-c', 'shared', String(same.token), '1', '0', '-'],
      ]);
      expect(lines(semaphores.stdout).map((line) => line.split(/\s{2,}/)[0])).toEqual(['NAME', 'pool', 'pool', 'schema']);
      const shown = lines(status.stdout);
      expect(shown[1]?.trim()).toBe('0 groups, 0 members, 0 leaders, 1 lock held, 3 permits held, 1 waiting');
      expect(shown[2]?.trim()).toMatch(/^oldest waiter node-c \(.+\), for lock schema$/);
      const rows = shown.map((line) => line.split(/\s{2,}/));
      expect(rows).toContainEqual(['LOCK', 'HOLDER', 'MODE', 'TOKEN', 'WAITING']);
      expect(rows).toContainEqual(['schema', 'node-a', 'shared', r1, '1']);
      expect(rows).toContainEqual(['schema', 'node-b', 'shared', r2]);
      expect(rows).toContainEqual(['SEMAPHORE', 'HOLDER', 'TOKEN', 'HELD', 'WAITING']);
      expect(rows).toContainEqual(['pool', 'node-a', p1, '2/3', '0']);
      expect(rows).toContainEqual(['pool', 'node-b', p2]);
      expect(rows).toContainEqual(['schema', 'node-c', String(same.token), '1/1', '0']);
      expect(JSON.parse(statusJson.stdout)).toMatchObject({
        locks: [{ name: 'schema', kind: 'lock', waiting: 1 }],
        semaphores: [
          { name: 'pool', kind: 'semaphore', limit: 3, waiting: 0 },
          { name: 'schema', kind: 'semaphore', limit: 1, waiting: 0 },
        ],
      });
      stop.abort();
      await waiting;
    });

    it.runIf(backend.name in PASSWORDS)('status never shows a password', async () => {
      namespace++;
      const withPassword = PASSWORDS[backend.name]?.(url) ?? url;
      const result = await concord(['status', '--url', withPassword, '--namespace', `inspect-${namespace}`]);
      expect(result.stdout + result.stderr).not.toContain('hunter2');
    });
  });
}
