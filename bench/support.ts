/** What the backend benchmarks share: statistics, formatting, and the cross-process watch latency probe. */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { connect, type Coordinator, type HeldLock } from '../src/index.js';

export interface Stats {
  readonly n: number;
  readonly p50: number;
  readonly p99: number;
  readonly mean: number;
  readonly max: number;
}

export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return NaN;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[i] ?? NaN;
}

export function stats(samples: readonly number[]): Stats {
  const sorted = [...samples].sort((a, b) => a - b);
  return {
    n: sorted.length,
    p50: percentile(sorted, 50),
    p99: percentile(sorted, 99),
    mean: sorted.reduce((a, b) => a + b, 0) / sorted.length,
    max: sorted[sorted.length - 1] ?? NaN,
  };
}

/** Milliseconds with three significant digits or so. */
export const ms = (x: number): string => (Math.abs(x) >= 10 ? x.toFixed(1) : Math.abs(x) >= 1 ? x.toFixed(2) : x.toFixed(3));

export const sleep = (t: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, t));

/** One lock implementation under measurement. */
export interface Subject {
  readonly name: string;
  acquire(): Promise<void>;
  release(): Promise<void>;
  close(): Promise<void>;
}

/** concord's lock `name` on coordinator `c`, as a subject. */
export function concordLock(c: Coordinator, name: string, label = 'concord lock'): Subject {
  let held: HeldLock | undefined;
  return {
    name: label,
    acquire: async () => {
      held = await c.lock(name).acquire();
    },
    release: async () => {
      await held?.release();
      held = undefined;
    },
    close: () => c.close(),
  };
}

/**
 * Release -> the blocked waiter holds it. `queued` resolves once the waiter is surely waiting. `jitterMs`: a random
 * pause before each release, so that a polling waiter is met at every phase of its poll, not always just after one.
 */
export async function handoff(holder: Subject, waiter: Subject, queued: () => Promise<void>, count: number, jitterMs = 0): Promise<Stats> {
  const samples: number[] = [];
  for (let i = 0; i < count; i++) {
    await holder.acquire();
    const registered = queued();
    let heldAt = 0;
    const waiting = waiter.acquire().then(() => {
      heldAt = performance.now();
    });
    await registered;
    if (jitterMs > 0) await sleep(Math.random() * jitterMs);
    const t0 = performance.now();
    await Promise.all([holder.release(), waiting]);
    samples.push(heldAt - t0);
    await waiter.release();
  }
  return stats(samples);
}

const WATCHER = fileURLToPath(new URL('./watcher.ts', import.meta.url));

/**
 * From join() in this process to the event in a watcher process: both read process.hrtime (CLOCK_MONOTONIC, shared by
 * the processes of one host). One member joins and leaves `count` times; `jitterMs`: a random pause before each join,
 * so that a polling watcher is met at every phase of its poll; `pauseMs`: a quiet time before each join on top (a
 * watcher that polls faster for a while after a change is then back at its idle pace).
 */
export async function watchLatency(url: string, count: number, jitterMs = 0, pauseMs = 0): Promise<Stats> {
  const namespace = `bw${randomBytes(4).toString('hex')}`;
  const joiner = await connect(url, { namespace, member: 'joiner' });
  await joiner.group('g').create();
  const child = spawn(process.execPath, ['--import', 'tsx', WATCHER, url, namespace], { stdio: ['pipe', 'pipe', 'inherit'] });
  const lines = createInterface({ input: child.stdout });
  const pending: Array<(line: string) => void> = [];
  const buffered: string[] = [];
  lines.on('line', (line) => {
    const take = pending.shift();
    if (take) take(line);
    else buffered.push(line);
  });
  const next = (): Promise<string> => {
    const line = buffered.shift();
    if (line !== undefined) return Promise.resolve(line);
    return new Promise((resolve) => pending.push(resolve));
  };
  if ((await next()) !== 'ready') throw new Error('watcher did not start');
  const samples: number[] = [];
  for (let i = 0; i < count; i++) {
    if (jitterMs > 0 || pauseMs > 0) await sleep(pauseMs + Math.random() * jitterMs);
    const t0 = process.hrtime.bigint();
    await joiner.group('g').join();
    const seen = (await next()).split(' ');
    if (seen[0] !== 'join') throw new Error(`unexpected event ${seen.join(' ')}`);
    samples.push(Number(BigInt(seen[2] ?? '0') - t0) / 1e6);
    await joiner.group('g').leave();
    await next();
  }
  child.stdin.write('stop\n');
  await new Promise((resolve) => child.once('exit', resolve));
  await joiner.close();
  return stats(samples);
}
