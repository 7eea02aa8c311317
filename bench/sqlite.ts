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
 *   4. a join seen by a watcher in another process.
 */
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, rmdirSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import Database from 'better-sqlite3';
import { connect } from '../src/index.js';
import { ms, sleep, stats, watchLatency, type Stats } from './support.js';

const SELF = fileURLToPath(import.meta.url);

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

// ---- main

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
  for (const synchronous of ['NORMAL', 'FULL']) {
    const db = new Database(join(dir, `floor-${synchronous}.db`));
    db.pragma('journal_mode = WAL');
    db.pragma(`synchronous = ${synchronous}`);
    db.exec("CREATE TABLE l (name TEXT PRIMARY KEY, holder TEXT, fence INTEGER NOT NULL DEFAULT 0); INSERT INTO l VALUES ('u', NULL, 0)");
    const take = db.prepare("UPDATE l SET holder = 'me', fence = fence + 1 WHERE name = 'u' AND holder IS NULL");
    const give = db.prepare("UPDATE l SET holder = NULL WHERE name = 'u' AND holder = 'me'");
    const acquire = db.transaction(() => take.run().changes);
    floors.push({
      name: `floor: 2 write transactions, synchronous=${synchronous}`,
      stats: await timed(1000, () => {
        acquire.immediate();
        give.run();
      }),
    });
    db.close();
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
    `better-sqlite3 on a file in ${tmpdir()} (WAL, synchronous=NORMAL as concord uses it: fencing counters jump ahead after a reboot instead of an fsync per commit); Node ${process.version}; ${String(cpus().length)} × ${cpus()[0]?.model.split(' ').slice(0, 2).join(' ') ?? 'CPU'}. Run ${new Date().toISOString().slice(0, 10)}. One run. Times in ms.`,
    '',
    '### Uncontended acquire + release, one process',
    '',
    '| subject | p50 | p99 | mean | p50 / floor (NORMAL) |',
    '|---|---|---|---|---|',
    line('concord', concordUncontended),
    ...floors.map((f) => line(f.name, f.stats)),
    line('mkdir lock directory (proper-lockfile / lockfile method)', mkdirUncontended),
    '',
    '### Hand-off between two processes: holder releases -> the blocked other process holds (each holds 5 ms)',
    '',
    '| subject | n | p50 | p99 | mean |',
    '|---|---|---|---|---|',
    handoffLine('concord (file notification, data_version polled every 10 ms as fallback)', handoffs(concordPair)),
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
    '### A join seen by a watcher in another process',
    '',
    `join() called -> the watcher process has the event: n ${String(watched.n)}, p50 ${ms(watched.p50)}, p99 ${ms(watched.p99)}, mean ${ms(watched.mean)}.`,
  );
} finally {
  rmSync(dir, { recursive: true, force: true });
}
const text = `${out.join('\n')}\n`;
process.stdout.write(text);
mkdirSync(fileURLToPath(new URL('./results/', import.meta.url)), { recursive: true });
writeFileSync(fileURLToPath(new URL('./results/sqlite.md', import.meta.url)), text);
