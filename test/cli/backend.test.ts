/**
 * The concord command against a backend shared by processes (an SQLite file in a temporary folder): inspection,
 * watch, lock (token, exit code, timeout, signal forwarding, loss) and elect (start, stop on loss, campaign again).
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { connect, type Coordinator } from '../../src/index.js';
import { deadline, eventually } from '../support/wait.js';
import { record, Running, SQLITE_SKIP, concord, lines, sqliteAvailable, tempDb } from './run.js';

let db: ReturnType<typeof tempDb>;
const open: Coordinator[] = [];
const running: Running[] = [];

async function member(name: string, sessionTtlMs?: number): Promise<Coordinator> {
  const coordinator = await connect(db.url, { member: name, ...(sessionTtlMs ? { sessionTtlMs } : {}) });
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

function waitForLines(file: string, accept: (lines: string[]) => boolean, what: string): Promise<string[]> {
  return eventually(() => recorded(file), accept, 20_000, what);
}

describe.skipIf(!sqliteAvailable)(
  `concord against sqlite${sqliteAvailable ? '' : ` (skipped: ${SQLITE_SKIP})`}`,
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

    it('groups, members and leader print what the library sees, as JSON and as text', async () => {
      const m1 = await member('m1');
      const m2 = await member('m2');
      await m1.group('alpha').join({ create: true, capabilities: { role: 'indexer', slots: 2 } });
      await m2.group('alpha').join({ capabilities: {} });
      await m1.group('beta').create();
      const leadership = await m1.group('alpha').campaign();

      const [groups, members, leader, noLeader, noLeaderJson, text, missing] = await Promise.all([
        concord(['groups', '--url', db.url, '--json']),
        concord(['members', 'alpha', '--url', db.url, '--json']),
        concord(['leader', 'alpha', '--url', db.url, '--json']),
        concord(['leader', 'beta', '--url', db.url]),
        concord(['leader', 'beta', '--url', db.url, '--json']),
        concord(['members', 'alpha', '--url', db.url]),
        concord(['members', 'gamma', '--url', db.url]),
      ]);
      expect(JSON.parse(groups.stdout)).toEqual(await m1.groups());
      expect(JSON.parse(groups.stdout)).toEqual(expect.arrayContaining(['alpha', 'beta']));
      expect(JSON.parse(members.stdout)).toEqual([
        { id: 'm1', capabilities: { role: 'indexer', slots: 2 } },
        { id: 'm2', capabilities: {} },
      ]);
      expect(JSON.parse(leader.stdout)).toEqual({ group: 'alpha', leader: 'm1' });
      expect(noLeader).toMatchObject({ code: 1, stdout: '' });
      expect(JSON.parse(noLeaderJson.stdout)).toEqual({ group: 'beta', leader: null });
      expect(lines(text.stdout)).toEqual(['MEMBER  CAPABILITIES', 'm1      {"role":"indexer","slots":2}', 'm2      {}']);
      expect(missing.code).toBe(1);
      expect(lines(missing.stderr)).toEqual(['concord: group "gamma" does not exist']);
      await leadership.resign();
    });

    it('takes the URL from CONCORD_URL, and defaults to a file of its own in a folder of its own in the temp directory', async () => {
      const m1 = await member('m1');
      await m1.group('from-env').create();
      const fromEnv = await concord(['groups'], { env: { CONCORD_URL: db.url } });
      expect(lines(fromEnv.stdout)).toContain('from-env');
      const tmp = tempDb();
      try {
        const byDefault = await concord(['groups', '--json'], { env: { TMPDIR: tmp.dir, XDG_RUNTIME_DIR: '' } });
        expect(byDefault).toMatchObject({ code: 0, stdout: '[]\n' });
        expect(existsSync(join(tmp.dir, `concord-${String(process.getuid?.() ?? '')}`, 'concord.db'))).toBe(true);
      } finally {
        tmp.remove();
      }
    });

    it('watch prints the current members, then joins and leaves as they happen', async () => {
      const m1 = await member('w1');
      await m1.group('watched').join({ create: true, capabilities: { n: 1 } });
      const watch = start(['watch', 'watched', '--url', db.url, '--json']);
      const events = (): Array<Record<string, unknown>> => lines(watch.stdout).map((line) => JSON.parse(line) as Record<string, unknown>);
      await eventually(events, (seen) => seen.length >= 1, 20_000, 'the initial member');
      const m2 = await member('w2');
      await m2.group('watched').join({ capabilities: { n: 2 } });
      await m2.group('watched').leave();
      await eventually(events, (seen) => seen.length >= 3, 20_000, 'the join and the leave');
      expect(events().map(({ type, member: id, initial, capabilities }) => ({ type, member: id, initial, capabilities }))).toEqual([
        { type: 'join', member: 'w1', initial: true, capabilities: { n: 1 } },
        { type: 'join', member: 'w2', initial: false, capabilities: { n: 2 } },
        { type: 'leave', member: 'w2', initial: undefined, capabilities: undefined },
      ]);
      watch.child.kill('SIGINT');
      expect((await watch.done).code).toBe(0);
    });

    it("lock gives each run a larger fencing token and exits with the command's code", async () => {
      const file = join(db.dir, 'tokens.txt');
      const first = await concord(['lock', 'job', '--url', db.url, '--', ...record(file, 0)]);
      const second = await concord(['lock', 'job', '--url', db.url, '--', ...record(file, 42)]);
      expect(first.code, first.stderr).toBe(0);
      expect(second.code, second.stderr).toBe(42);
      const tokens = recorded(file).map((line) => BigInt(/token=(\d+)/.exec(line)?.[1] ?? '-1'));
      expect(tokens).toHaveLength(2);
      expect(tokens[1]).toBeGreaterThan(tokens[0] ?? 0n);
    });

    it('lock --timeout gives up with exit code 3 and one line naming the holder', async () => {
      const holder = await member('holder');
      const held = await holder.lock('busy').acquire();
      const result = await concord(['lock', 'busy', '--timeout', '300', '--url', db.url, '--', 'true']);
      expect(result.code).toBe(3);
      expect(lines(result.stderr)).toEqual(['concord: timed out after 300 ms waiting for lock "busy" (held by holder)']);
      await held.release();
    });

    it('lock forwards SIGTERM to the command, exits with its code and releases the lock', async () => {
      const file = join(db.dir, 'forward.txt');
      const run = start(['lock', 'fwd', '--url', db.url, '--', ...record(file)]);
      await waitForLines(file, (seen) => seen.length === 1, 'the command to start');
      run.child.kill('SIGTERM');
      const result = await deadline(run.done, 20_000, 'concord lock to exit');
      expect(result.code, result.stderr).toBe(0);
      expect(recorded(file)[1]).toBe('signal SIGTERM');
      const other = await member('after');
      const held = await other.lock('fwd').tryAcquire();
      expect(held).toBeDefined();
      await held?.release();
    });

    it('lock stops the command and exits 4 when the lock is lost while it runs', async () => {
      const file = join(db.dir, 'lost.txt');
      const run = start(['lock', 'fragile', '--session-ttl', '1000', '--grace', '5000', '--url', db.url, '--', ...record(file)]);
      await waitForLines(file, (seen) => seen.length === 1, 'the command to start');
      const firstToken = BigInt(/token=(\d+)/.exec(recorded(file)[0] ?? '')?.[1] ?? '0');
      // Frozen past its TTL, concord loses the lock; the command itself keeps running meanwhile.
      run.child.kill('SIGSTOP');
      const other = await member('thief');
      const held = await deadline(other.lock('fragile').acquire(), 20_000, 'the lock to expire');
      expect(held.token).toBeGreaterThan(firstToken);
      run.child.kill('SIGCONT');
      const result = await deadline(run.done, 20_000, 'concord lock to notice the loss');
      expect(result.code).toBe(4);
      expect(recorded(file)[1]).toBe('signal SIGTERM');
      expect(result.stderr).toMatch(/^concord: lost lock "fragile" while the command ran/m);
      expect(held.signal.aborted).toBe(false);
      await held.release();
    });

    it('elect runs the command while leading, stops it when leadership is lost, and campaigns again', async () => {
      const file = join(db.dir, 'elect.txt');
      const run = start([
        'elect',
        'sched',
        '--session-ttl',
        '1000',
        '--grace',
        '5000',
        '--member',
        'elector',
        '--url',
        db.url,
        '--',
        ...record(file),
      ]);
      await waitForLines(file, (seen) => seen.length === 1, 'the command to start when elected');
      const firstTerm = BigInt(/term=(\d+)/.exec(recorded(file)[0] ?? '')?.[1] ?? '0');
      expect(recorded(file)[0]).toMatch(/member=elector$/);

      // Freeze concord past its TTL: another member takes over, and on waking concord must stop its command.
      run.child.kill('SIGSTOP');
      const rival = await member('rival');
      const leadership = await deadline(rival.group('sched').campaign(), 20_000, 'the rival to be elected');
      expect(leadership.term).toBeGreaterThan(firstTerm);
      run.child.kill('SIGCONT');
      await waitForLines(file, (seen) => seen[1] === 'signal SIGTERM', 'the command to be stopped');
      expect(run.child.exitCode).toBeNull();

      // Once the rival resigns, concord is elected again and starts the command with a later term.
      await leadership.resign();
      const seen = await waitForLines(file, (all) => all.length === 3, 'the command to start again');
      const secondTerm = BigInt(/term=(\d+)/.exec(seen[2] ?? '')?.[1] ?? '0');
      expect(secondTerm).toBeGreaterThan(leadership.term);

      run.child.kill('SIGTERM');
      const result = await deadline(run.done, 20_000, 'concord elect to exit');
      expect(result.code, result.stderr).toBe(0);
      expect(recorded(file)[3]).toBe('signal SIGTERM');
      expect(await rival.group('sched').leader()).toBeUndefined();
    });
  },
);
