/**
 * concord semaphore and concord lock --shared against a backend shared by processes (an SQLite file in a temporary
 * folder): the environment and exit codes of concord lock, N commands at once and the next one waiting, shared holds
 * together and an exclusive one kept out, --timeout naming the holders, a limit that disagrees with the one in use, a
 * lost permit, and what concord locks and status say meanwhile.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { connect, type Coordinator, type LockInfo } from '../../src/index.js';
import { deadline, eventually } from '../support/wait.js';
import { record, Running, SQLITE_SKIP, concord, lines, sqliteAvailable, tempDb } from './run.js';

let db: ReturnType<typeof tempDb>;
const open: Coordinator[] = [];
const running: Running[] = [];

async function member(name: string): Promise<Coordinator> {
  const coordinator = await connect(db.url, { member: name });
  open.push(coordinator);
  return coordinator;
}

function start(args: readonly string[]): Running {
  const run = new Running(args);
  running.push(run);
  return run;
}

function recorded(file: string): string[] {
  return existsSync(file) ? lines(readFileSync(file, 'utf8')) : [];
}

/** Waits for the record file to satisfy `accept`; a timeout says what the concord processes `runs` printed. */
async function waitForLines(
  file: string,
  accept: (lines: string[]) => boolean,
  what: string,
  runs: readonly Running[] = [],
): Promise<string[]> {
  try {
    return await eventually(() => recorded(file), accept, 30_000, what);
  } catch (error) {
    throw new Error(`${String(error)}; concord said: ${JSON.stringify(runs.map((run) => run.stderr))}`, { cause: error });
  }
}

/** The fencing tokens of the starts a record file holds, in order. */
function tokens(file: string): bigint[] {
  return recorded(file)
    .filter((line) => line.startsWith('start '))
    .map((line) => BigInt(/token=(\d+)/.exec(line)?.[1] ?? '-1'));
}

/** What coordinator.locks() says of one name of one kind, once `accept` holds. */
function listed(
  observer: Coordinator,
  kind: 'lock' | 'semaphore',
  name: string,
  accept: (lock: LockInfo | undefined) => boolean,
  what: string,
) {
  return eventually(async () => (await observer.locks({ kind })).find((lock) => lock.name === name), accept, 20_000, what);
}

describe.skipIf(!sqliteAvailable)(
  `concord semaphore and lock --shared against sqlite${sqliteAvailable ? '' : ` (skipped: ${SQLITE_SKIP})`}`,
  { timeout: 90_000 },
  () => {
    beforeAll(() => {
      db = tempDb();
    });

    afterEach(async () => {
      for (const run of running.splice(0)) await run.stop();
      await Promise.all(open.splice(0).map((coordinator) => coordinator.close()));
    });

    afterAll(() => {
      db.remove();
    });

    it("semaphore gives the command the lock's variables, a larger token each time, and exits with its code", async () => {
      const file = join(db.dir, 'semaphore-env.txt');
      const base = ['semaphore', 'env-pool', '--limit', '2', '--member', 'sem-cli', '--url', db.url, '--'];
      const first = await concord([...base, ...record(file, 0)]);
      const second = await concord([...base, ...record(file, 42)]);
      expect(first.code, first.stderr).toBe(0);
      expect(second.code, second.stderr).toBe(42);
      expect(recorded(file)).toEqual([
        expect.stringMatching(/^start pid=\d+ token=\d+ term= member=sem-cli$/),
        expect.stringMatching(/^start pid=\d+ token=\d+ term= member=sem-cli$/),
      ]);
      const [a = 0n, b = 0n] = tokens(file);
      expect(b).toBeGreaterThan(a);
      expect(lines(first.stderr)).toEqual([`concord: holding a permit of semaphore "env-pool" (fencing token ${a})`]);
      // CONCORD_LOCK names the semaphore.
      const named = await concord([...base.slice(0, -1), '--quiet', '--', 'sh', '-c', 'test "$CONCORD_LOCK" = env-pool']);
      expect(named).toMatchObject({ code: 0, stderr: '' });
    });

    it('semaphore --limit 2 runs two commands at once; a third waits, shows in concord locks, and starts when one ends', async () => {
      const file = join(db.dir, 'pool.txt');
      const observer = await member('observer');
      const args = (id: string): string[] => ['semaphore', 'pool', '--limit', '2', '--member', id, '--url', db.url, '--', ...record(file)];
      const first = start(args('sem-1'));
      const second = start(args('sem-2'));
      await waitForLines(file, (seen) => seen.length === 2, 'two commands to run at once', [first, second]);
      const third = start(args('sem-3'));
      await listed(observer, 'semaphore', 'pool', (lock) => lock?.waiting === 1, 'the third to wait');
      expect(recorded(file)).toHaveLength(2);

      const [json, text, status] = await Promise.all([
        concord(['locks', '--kind', 'semaphore', '--json', '--url', db.url]),
        concord(['locks', '--url', db.url]),
        concord(['status', '--url', db.url]),
      ]);
      const [t1 = 0n, t2 = 0n] = tokens(file).sort((x, y) => (x < y ? -1 : 1));
      const holders = (JSON.parse(json.stdout) as Array<{ name: string; holders: Array<{ member: string }> }>)[0]?.holders ?? [];
      const order = holders.map((holder) => holder.member);
      expect(order.sort()).toEqual(['sem-1', 'sem-2']);
      expect(JSON.parse(json.stdout)).toEqual([
        {
          name: 'pool',
          kind: 'semaphore',
          holders: [
            { member: expect.stringMatching(/^sem-[12]$/) as unknown, token: String(t1), shared: true },
            { member: expect.stringMatching(/^sem-[12]$/) as unknown, token: String(t2), shared: true },
          ],
          limit: 2,
          waiting: 1,
          oldestWaiter: { member: 'sem-3', waitedMs: expect.any(Number) as unknown },
        },
      ]);
      const rows = lines(text.stdout).map((line) => line.split(/\s{2,}/));
      expect(rows[0]).toEqual(['NAME', 'KIND', 'HOLDER', 'MODE', 'TOKEN', 'LIMIT', 'WAITING', 'OLDEST WAITER']);
      expect(rows.filter((row) => row[0] === 'pool')).toEqual([
        ['pool', 'semaphore', expect.stringMatching(/^sem-[12]$/), 'shared', String(t1), '2', '1', expect.stringMatching(/^sem-3 \(/)],
        ['pool', 'semaphore', expect.stringMatching(/^sem-[12]$/), 'shared', String(t2), '2'],
      ]);
      const shown = lines(status.stdout);
      expect(shown).toContainEqual(expect.stringMatching(/, 2 permits held, 1 waiting$/));
      expect(shown).toContainEqual(expect.stringMatching(/^\s+oldest waiter sem-3 \(.+\), for semaphore pool$/));
      expect(shown).toContainEqual(expect.stringMatching(/^SEMAPHORE\s+HOLDER\s+TOKEN\s+HELD\s+WAITING$/));
      expect(shown).toContainEqual(expect.stringMatching(new RegExp(`^pool\\s+sem-[12]\\s+${t1}\\s+2/2\\s+1$`)));

      // SIGTERM reaches the first command, which exits 0; its permit passes to the third, with a larger token.
      first.child.kill('SIGTERM');
      expect((await deadline(first.done, 20_000, 'the first to exit')).code).toBe(0);
      const seen = await waitForLines(file, (all) => all.filter((line) => line.startsWith('start ')).length === 3, 'the third to start', [
        third,
      ]);
      expect(seen).toContain('signal SIGTERM');
      const t3 = tokens(file)[2] ?? 0n;
      expect(t3).toBeGreaterThan(t2);
      expect(third.stderr).toContain(`concord: holding a permit of semaphore "pool" (fencing token ${t3})`);
      for (const run of [second, third]) run.child.kill('SIGTERM');
      expect((await deadline(second.done, 20_000, 'the second to exit')).code).toBe(0);
      expect((await deadline(third.done, 20_000, 'the third to exit')).code).toBe(0);
      await listed(observer, 'semaphore', 'pool', (lock) => lock === undefined, 'every permit to be released');
    });

    it('semaphore --timeout gives up with exit code 3 and one line naming the holders', async () => {
      const [a, b] = [await member('holder-a'), await member('holder-b')];
      const permits = [await a.semaphore('full', { limit: 2 }).acquire(), await b.semaphore('full', { limit: 2 }).acquire()];
      const result = await concord(['semaphore', 'full', '--limit', '2', '--timeout', '300', '--url', db.url, '--', 'true']);
      expect(result.code).toBe(3);
      expect(lines(result.stderr)).toEqual([
        'concord: timed out after 300 ms waiting for a permit of semaphore "full" (2 of 2 permits taken, held by holder-a, holder-b)',
      ]);
      const once = await concord(['semaphore', 'full', '--limit', '2', '--timeout', '0', '--quiet', '--url', db.url, '--', 'true']);
      expect(once.code).toBe(3);
      await Promise.all(permits.map((permit) => permit.release()));
    });

    it('semaphore refuses a --limit other than the one in use, naming both, and a missing or bad --limit', async () => {
      const holder = await member('limit-holder');
      const permit = await holder.semaphore('sized', { limit: 2 }).acquire();
      const [other, missing, zero, huge, word] = await Promise.all([
        concord(['semaphore', 'sized', '--limit', '3', '--url', db.url, '--', 'true']),
        concord(['semaphore', 'sized', '--url', db.url, '--', 'true']),
        concord(['semaphore', 'sized', '--limit', '0', '--url', db.url, '--', 'true']),
        concord(['semaphore', 'sized', '--limit', '1000001', '--url', db.url, '--', 'true']),
        concord(['semaphore', 'sized', '--limit', 'many', '--url', db.url, '--', 'true']),
      ]);
      expect(other.code).toBe(2);
      expect(lines(other.stderr)).toEqual(['concord: semaphore "sized" is in use with limit 2; this acquire asked for limit 3']);
      expect(missing.code).toBe(2);
      expect(lines(missing.stderr)).toEqual([
        'concord: missing option --limit N: the most commands holding a permit at once, from 1 to 1000000 (see concord semaphore --help)',
      ]);
      for (const [result, raw] of [
        [zero, '0'],
        [huge, '1000001'],
        [word, 'many'],
      ] as const) {
        expect(result.code).toBe(2);
        expect(lines(result.stderr)).toEqual([
          `concord: option --limit must be an integer from 1 to 1000000, got "${raw}" (see concord semaphore --help)`,
        ]);
      }
      await permit.release();
    });

    it('lock --shared runs shared commands together and keeps an exclusive one out; concord locks marks them shared', async () => {
      const file = join(db.dir, 'shared.txt');
      const observer = await member('reader-observer');
      const args = (id: string): string[] => ['lock', 'schema', '--shared', '--member', id, '--url', db.url, '--', ...record(file)];
      const readers = [start(args('reader-1')), start(args('reader-2'))];
      await waitForLines(file, (seen) => seen.length === 2, 'two shared commands to run at once', readers);
      expect(readers[0]?.stderr).toMatch(/^concord: holding shared lock "schema" \(fencing token \d+\)$/m);

      const blocked = await concord(['lock', 'schema', '--timeout', '300', '--url', db.url, '--', 'true']);
      expect(blocked.code).toBe(3);
      expect(lines(blocked.stderr)).toEqual([
        expect.stringMatching(/^concord: timed out after 300 ms waiting for lock "schema" \(held by reader-[12], reader-[12]\)$/),
      ]);
      expect(await observer.lock('schema').tryAcquire()).toBeUndefined();

      const [json, text] = await Promise.all([
        concord(['locks', '--kind', 'lock', '--json', '--url', db.url]),
        concord(['status', '--url', db.url]),
      ]);
      const schema = (JSON.parse(json.stdout) as Array<{ name: string; holders: unknown[] }>).find((lock) => lock.name === 'schema');
      expect(schema).toEqual({
        name: 'schema',
        kind: 'lock',
        holders: tokens(file)
          .sort((x, y) => (x < y ? -1 : 1))
          .map((token) => ({ member: expect.stringMatching(/^reader-[12]$/) as unknown, token: String(token), shared: true })),
        waiting: 0,
      });
      expect(lines(text.stdout)).toContainEqual(expect.stringMatching(/^LOCK\s+HOLDER\s+MODE\s+TOKEN\s+WAITING$/));
      expect(lines(text.stdout)).toContainEqual(expect.stringMatching(/^schema\s+reader-[12]\s+shared\s+\d+\s+0$/));

      // An exclusive waiter queues behind the readers and runs once both have ended, with a larger token.
      const writerFile = join(db.dir, 'writer.txt');
      const writer = start(['lock', 'schema', '--member', 'writer', '--url', db.url, '--', ...record(writerFile, 5)]);
      await listed(observer, 'lock', 'schema', (lock) => lock?.waiting === 1, 'the writer to wait');
      // A shared request that comes after the waiting writer is not let in ahead of it.
      const late = await concord(['lock', 'schema', '--shared', '--timeout', '0', '--url', db.url, '--', 'true']);
      expect(late.code).toBe(3);
      for (const reader of readers) reader.child.kill('SIGTERM');
      for (const reader of readers) expect((await deadline(reader.done, 20_000, 'a reader to exit')).code).toBe(0);
      const result = await deadline(writer.done, 20_000, 'the writer to run');
      expect(result.code, result.stderr).toBe(5);
      expect(tokens(writerFile)[0]).toBeGreaterThan(tokens(file).reduce((max, token) => (token > max ? token : max), 0n));
    });

    it('lock --shared waits for an exclusive holder and gives up after --timeout naming it', async () => {
      const holder = await member('exclusive-holder');
      const held = await holder.lock('busy-shared').acquire();
      const result = await concord(['lock', 'busy-shared', '--shared', '--timeout', '300', '--url', db.url, '--', 'true']);
      expect(result.code).toBe(3);
      expect(lines(result.stderr)).toEqual([
        'concord: timed out after 300 ms waiting for shared lock "busy-shared" (held by exclusive-holder)',
      ]);
      await held.release();
    });

    it('semaphore stops the command and exits 4 when its permit is lost while it runs', async () => {
      const file = join(db.dir, 'lost-permit.txt');
      const run = start(['semaphore', 'fragile', '--limit', '1', '--session-ttl', '2000', '--url', db.url, '--', ...record(file)]);
      await waitForLines(file, (seen) => seen.length === 1, 'the command to start', [run]);
      // Frozen past its TTL, concord loses the permit; the command itself keeps running meanwhile.
      run.child.kill('SIGSTOP');
      const other = await member('permit-thief');
      const permit = await deadline(other.semaphore('fragile', { limit: 1 }).acquire(), 20_000, 'the permit to expire');
      expect(permit.token).toBeGreaterThan(tokens(file)[0] ?? 0n);
      run.child.kill('SIGCONT');
      const result = await deadline(run.done, 20_000, 'concord semaphore to notice the loss');
      expect(result.code).toBe(4);
      expect(recorded(file)[1]).toBe('signal SIGTERM');
      expect(result.stderr).toMatch(/^concord: lost a permit of semaphore "fragile" while the command ran/m);
      expect(result.stderr).toMatch(/^concord: the command was stopped because a permit of semaphore "fragile" was lost/m);
      await permit.release();
    });
  },
);
