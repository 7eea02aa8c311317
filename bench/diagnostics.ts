/**
 * What the diagnostics channels cost: uncontended acquire + release with nobody subscribed and with a subscriber on
 * every channel. On memory:// (where the core is all there is, and whose driver has not changed since) also against
 * the last commit before the channels existed, extracted with git archive into tmp/ and run from source beside
 * today's code in the same process; on an SQLite file only today's code with and without a subscriber (that driver
 * was rebuilt since). Rounds alternate so drift on a shared machine falls on all alike.
 * Run: npx tsx bench/diagnostics.ts [BASE_COMMIT]
 * Prints a markdown section and writes it to bench/results/diagnostics.md.
 */
import { execFileSync } from 'node:child_process';
import diagnostics_channel from 'node:diagnostics_channel';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import * as today from '../src/index.js';
import { CHANNELS } from '../src/diagnostics.js';
import { ms, stats } from './support.js';

/** The commit before the channels landed. */
const BASE = process.argv[2] ?? 'aaa7645';
const root = fileURLToPath(new URL('..', import.meta.url));
const baseDir = join(root, 'tmp', 'bench-diagnostics-base');

rmSync(baseDir, { recursive: true, force: true });
mkdirSync(baseDir, { recursive: true });
const archive = execFileSync('git', ['archive', BASE, 'src', 'drivers'], { cwd: root, maxBuffer: 64 << 20 });
execFileSync('tar', ['-x', '-C', baseDir], { input: archive });
const before = (await import(pathToFileURL(join(baseDir, 'src', 'index.ts')).href)) as typeof today;

type Connect = typeof today.connect;
const ROUNDS = 20;

async function loop(connect: Connect, url: string, n: number, samples: number[]): Promise<void> {
  const coordinator = await connect(url, { member: 'bench' });
  try {
    const lock = coordinator.lock('uncontended');
    for (let i = 0; i < 50; i++) await (await lock.acquire()).release();
    const started = performance.now();
    for (let i = 0; i < n; i++) await (await lock.acquire()).release();
    samples.push(((performance.now() - started) * 1000) / n);
  } finally {
    await coordinator.close();
  }
}

const none = (): void => undefined;
const tracing = { start: none, end: none, asyncStart: none, asyncEnd: none, error: none };
function subscribeAll(): () => void {
  const traced = [CHANNELS.acquire, CHANNELS.release, CHANNELS.driverCall].map((name) => diagnostics_channel.tracingChannel(name));
  for (const channel of traced) channel.subscribe(tracing);
  for (const name of [CHANNELS.session, CHANNELS.resync, CHANNELS.lost]) diagnostics_channel.subscribe(name, none);
  return () => {
    for (const channel of traced) channel.unsubscribe(tracing);
    for (const name of [CHANNELS.session, CHANNELS.resync, CHANNELS.lost]) diagnostics_channel.unsubscribe(name, none);
  };
}

interface Row {
  readonly backend: string;
  readonly base: number | undefined;
  readonly quiet: number;
  readonly traced: number;
}

async function measure(backend: string, url: () => string, n: number, compare: boolean): Promise<Row> {
  const base: number[] = [];
  const quiet: number[] = [];
  const traced: number[] = [];
  const runs: (() => Promise<void>)[] = [
    () => loop(today.connect, url(), n, quiet),
    async () => {
      const stop = subscribeAll();
      try {
        await loop(today.connect, url(), n, traced);
      } finally {
        stop();
      }
    },
  ];
  if (compare) runs.push(() => loop(before.connect, url(), n, base));
  for (let round = 0; round < ROUNDS; round++) {
    // A different order each round: whichever runs first in a round (colder caches, a GC owed) is not always the same.
    for (const run of runs.map((r) => ({ r, key: Math.random() })).sort((a, b) => a.key - b.key)) await run.r();
  }
  // Medians of the per-round means: one disturbed round moves nothing.
  return { backend, base: compare ? stats(base).p50 : undefined, quiet: stats(quiet).p50, traced: stats(traced).p50 };
}

const dir = mkdtempSync(join(tmpdir(), 'concord-bench-diag-'));
let file = 0;
const rows: Row[] = [];
try {
  rows.push(await measure('memory://', () => 'memory://bench', 1500, true));
  rows.push(await measure('sqlite (file)', () => `sqlite://${join(dir, `f${String(file++)}.db`)}`, 400, false));
} finally {
  rmSync(dir, { recursive: true, force: true });
  rmSync(baseDir, { recursive: true, force: true });
}

const ratio = (x: number, of: number | undefined): string =>
  of === undefined ? '' : `${x >= of ? '+' : ''}${((x / of - 1) * 100).toFixed(1)}%`;
const section = `## Diagnostics channels

Uncontended acquire + release, µs per operation (the median of ${String(ROUNDS)} rounds, each running the three in a random order), against commit ${BASE},
the last before the channels; Node ${process.version}; ${String(cpus().length)} × ${cpus()[0]?.model.split(' ').slice(0, 2).join(' ') ?? 'CPU'}, load average ${loadavg()[0]?.toFixed(1) ?? '?'} at the end.

| backend | before the channels | nobody subscribed | vs before | every channel subscribed | vs nobody subscribed |
|---|---|---|---|---|---|
${rows.map((r) => `| ${r.backend} | ${r.base === undefined ? '-' : ms(r.base)} | ${ms(r.quiet)} | ${ratio(r.quiet, r.base)} | ${ms(r.traced)} | ${ratio(r.traced, r.quiet)} |`).join('\n')}

With nobody subscribed, each call site reads \`hasSubscribers\` and goes on, and the backend is called directly.
Target: nobody subscribed no slower than 2% on the memory driver, where the core is all there is.
`;
console.log(section);
mkdirSync(new URL('./results/', import.meta.url), { recursive: true });
writeFileSync(new URL('./results/diagnostics.md', import.meta.url), section);
