/**
 * What the diagnostics channels cost: uncontended acquire + release with nobody subscribed and with a subscriber on
 * every channel, against the same source with the channels taken out: a copy of src/ and drivers/ in tmp/ where every
 * `<x>Channel.hasSubscribers` reads `false`, so the only difference is the check itself. Both copies run from source
 * through the same loader in the same process, on memory:// (where the core is all there is) and on an SQLite file.
 * Rounds alternate in a random order so drift on a shared machine falls on all alike.
 * Run: npx tsx bench/diagnostics.ts
 * Prints a markdown section and writes it to bench/results/diagnostics.md.
 */
import diagnostics_channel from 'node:diagnostics_channel';
import { cpSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import * as today from '../src/index.js';
import { CHANNELS } from '../src/diagnostics.js';
import { ms, stats } from './support.js';

const root = fileURLToPath(new URL('..', import.meta.url));
const baseDir = join(root, 'tmp', 'bench-diagnostics-without');

// The copy without channels: every gate on a channel's subscribers reads false, so no context is built, nothing is
// published and the driver is called directly, exactly as before the channels existed.
rmSync(baseDir, { recursive: true, force: true });
mkdirSync(baseDir, { recursive: true });
let gates = 0;
for (const folder of ['src', 'drivers']) {
  cpSync(join(root, folder), join(baseDir, folder), { recursive: true });
  for (const entry of readdirSync(join(baseDir, folder), { recursive: true, encoding: 'utf8' })) {
    if (!entry.endsWith('.ts')) continue;
    const path = join(baseDir, folder, entry);
    const text = readFileSync(path, 'utf8');
    const stripped = text.replace(/\b\w+Channel\.hasSubscribers\b/g, () => (gates++, 'false'));
    if (stripped !== text) writeFileSync(path, stripped);
  }
}
if (gates === 0) throw new Error('no channel gate found to take out: the benchmark no longer matches the source');
const before = (await import(pathToFileURL(join(baseDir, 'src', 'index.ts')).href)) as typeof today;

type Connect = typeof today.connect;
const ROUNDS = 40;

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
  readonly base: number;
  readonly quiet: number;
  readonly traced: number;
  readonly after: number;
}

async function alternate(runs: readonly (() => Promise<void>)[]): Promise<void> {
  for (let round = 0; round < ROUNDS; round++) {
    // A different order each round: whichever runs first in a round (colder caches, a GC owed) is not always the same.
    for (const run of runs.map((r) => ({ r, key: Math.random() })).sort((a, b) => a.key - b.key)) await run.r();
  }
}

async function measure(backend: string, url: () => string, n: number): Promise<Row> {
  const base: number[] = [];
  const quiet: number[] = [];
  const traced: number[] = [];
  const after: number[] = [];
  // First with no subscriber ever (what an application that never subscribes runs), then with one coming and going:
  // V8 reoptimises the call sites once a channel has had a subscriber, so the two phases are kept apart.
  await alternate([() => loop(before.connect, url(), n, base), () => loop(today.connect, url(), n, quiet)]);
  await alternate([
    () => loop(today.connect, url(), n, after),
    async () => {
      const stop = subscribeAll();
      try {
        await loop(today.connect, url(), n, traced);
      } finally {
        stop();
      }
    },
  ]);
  // Medians of the per-round means: one disturbed round moves nothing.
  const p50 = (samples: number[]): number => stats(samples).p50;
  return { backend, base: p50(base), quiet: p50(quiet), traced: p50(traced), after: p50(after) };
}

const dir = mkdtempSync(join(tmpdir(), 'concord-bench-diag-'));
let file = 0;
const rows: Row[] = [];
try {
  rows.push(await measure('memory://', () => 'memory://bench', 3000));
  rows.push(await measure('sqlite (file)', () => `sqlite://${join(dir, `f${String(file++)}.db`)}`, 400));
} finally {
  rmSync(dir, { recursive: true, force: true });
  rmSync(baseDir, { recursive: true, force: true });
}

const ratio = (x: number, of: number): string => `${x >= of ? '+' : ''}${((x / of - 1) * 100).toFixed(1)}%`;
const section = `## Diagnostics channels

Uncontended acquire + release, µs per operation (the median of ${String(ROUNDS)} rounds, each running its subjects in a random order),
against the same source with every channel gate reading \`false\` (no channels at all); Node ${process.version};
${String(cpus().length)} × ${cpus()[0]?.model.split(' ').slice(0, 2).join(' ') ?? 'CPU'}, load average ${loadavg()[0]?.toFixed(1) ?? '?'} at the end.

| backend | without channels | nobody subscribed | vs without | every channel subscribed | nobody subscribed, after a subscriber came and went | subscribed vs that |
|---|---|---|---|---|---|---|
${rows.map((r) => `| ${r.backend} | ${ms(r.base)} | ${ms(r.quiet)} | ${ratio(r.quiet, r.base)} | ${ms(r.traced)} | ${ms(r.after)} | ${ratio(r.traced, r.after)} |`).join('\n')}

With nobody subscribed, each call site reads \`hasSubscribers\` and goes on, and the backend is called directly.
Target: nobody subscribed no slower than 2% on the memory driver, where the core is all there is. Once a subscriber
has come and gone in a process, the call sites run slower than in one that never had a subscriber (the
\`hasSubscribers\` reads see channels whose shape changed); the last two columns are measured in that state.
`;
console.log(section);
mkdirSync(new URL('./results/', import.meta.url), { recursive: true });
writeFileSync(new URL('./results/diagnostics.md', import.meta.url), section);
