/**
 * What the PostgreSQL and MySQL benchmarks share (bench/postgres.ts, bench/mysql.ts): one private server started by
 * the benchmark, every subject against it in one run, ratios to the floor.
 *
 * Measured:
 *   1. uncontended acquire + release: the floor (one advisory-lock round trip each way on one connection), concord's
 *      lock, a shared hold of it and a semaphore permit, and Python tooz's driver for the same database (in its own
 *      process, against the same server);
 *   2. hand-off: from the holder's release call to a blocked waiter holding the lock (concord, tooz);
 *   3. a join seen by a watcher in another process;
 *   4. fairness: 4 coordinators contending on one lock for a few seconds, acquisitions per client (max/min);
 *   5. the load an idle coordinator with one open watch puts on the server (statements per second, the server's count).
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import type { EventEmitter } from 'node:events';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { fileURLToPath } from 'node:url';
import { kQueued } from '../src/coordinator.js';
import { connect, type Coordinator, type HeldLock } from '../src/index.js';
import type { ServerHandle } from '../test/support/servers.js';
import { concordLock, handoff, ms, sleep, stats, watchLatency, type Stats, type Subject } from './support.js';

/** One database as the benchmark drives it, with a client of its own outside concord. */
export interface SqlTarget {
  /** 'postgres' or 'mysql': the results file and the heading. */
  readonly file: string;
  readonly title: string;
  start(): Promise<ServerHandle>;
  /** The floor: one advisory-lock round trip to take (try, again until free) and one to give back. */
  floor(url: string, name: string): Promise<Subject & { readonly label: string }>;
  /** Two durable commits (one to take, one to give back): what a token that survives a crash costs at the least. */
  durable(url: string): Promise<Subject>;
  /** The server's own count of statements (or transactions) run so far, read over `admin`. */
  counter(url: string): Promise<{ readonly what: string; read(): Promise<number>; close(): Promise<void> }>;
  version(url: string): Promise<string>;
  /** The URL tooz's driver takes, and the Python modules it needs. */
  readonly toozUrl: (url: string) => string;
  readonly toozModules: string;
  readonly toozHandoffs: number;
  /** The npm package users pick for this database's locks, when there is one: measured beside concord. */
  readonly npmPeer?: NpmPeer;
  /** Random pauses (a poll interval) before each hand-off and join, so that polls are met at every phase. */
  readonly jitterMs: { readonly handoff: number; readonly watch: number };
  /** Also measures joins after a quiet time (a watcher whose pace depends on how recently something changed). */
  readonly coldWatch?: { readonly count: number; readonly pauseMs: number; readonly note: string };
  /** How the target times compare with the issue's: uncontended <= 2x floor, hand-off p50, watch p50, idle q/s. */
  readonly targets: { readonly handoffMs: number; readonly watchMs: number; readonly idle: string };
  /** What the idle load is made of, for the text. */
  readonly idleNote: string;
  /** Where the time of an uncontended acquire + release goes, for the text. */
  readonly explain: string;
}

/** An npm lock package as a subject, and how to see its waiter blocked on the server (for the hand-off). */
export interface NpmPeer {
  readonly name: string;
  subject(url: string, lockName: string): Subject;
  /** Resolves once some connection waits for a lock on the server. */
  blocked(url: string): () => Promise<void>;
  close(): Promise<void>;
}

const SHARED = 'concord shared lock';
const PERMIT = 'concord semaphore permit (limit 3)';

/** A shared hold of concord's lock `name`, as a subject. */
function concordShared(c: Coordinator, name: string): Subject {
  let held: HeldLock | undefined;
  return {
    name: SHARED,
    acquire: async () => {
      held = await c.lock(name).acquire({ shared: true });
    },
    release: async () => {
      await held?.release();
      held = undefined;
    },
    close: () => c.close(),
  };
}

/** A permit of concord's semaphore `name` (limit 3), as a subject. */
function concordPermit(c: Coordinator, name: string): Subject {
  let held: HeldLock | undefined;
  return {
    name: PERMIT,
    acquire: async () => {
      held = await c.semaphore(name, { limit: 3 }).acquire();
    },
    release: async () => {
      await held?.release();
      held = undefined;
    },
    close: () => c.close(),
  };
}

interface ToozResult {
  readonly uncontended: number[];
  readonly handoff: number[];
}

function tooz(target: SqlTarget, url: string): ToozResult | string {
  try {
    execFileSync('/usr/bin/python3', ['-c', `import ${target.toozModules}`], { stdio: 'ignore' });
  } catch {
    return `Python tooz is not installed here (\`python3 -c "import ${target.toozModules}"\` failed), so it is not measured.`;
  }
  const script = `
import json, sys, threading, time
from tooz import coordination
url, handoffs = sys.argv[1], int(sys.argv[2])
a = coordination.get_coordinator(url, b'bench-a'); a.start()
b = coordination.get_coordinator(url, b'bench-b'); b.start()
lock = a.get_lock(b'tooz-bench')
for _ in range(100):
    lock.acquire(); lock.release()
lat = []
for _ in range(500):
    t = time.perf_counter_ns(); lock.acquire(); lock.release(); lat.append((time.perf_counter_ns() - t) / 1e6)
hand = []
l1 = a.get_lock(b'tooz-handoff'); l2 = b.get_lock(b'tooz-handoff')
for _ in range(handoffs):
    l1.acquire()
    res = {}
    def wait():
        l2.acquire(blocking=True); res['t'] = time.perf_counter_ns()
    th = threading.Thread(target=wait); th.start(); time.sleep(0.05)
    t0 = time.perf_counter_ns(); l1.release(); th.join(); hand.append((res['t'] - t0) / 1e6); l2.release()
print(json.dumps({'uncontended': lat, 'handoff': hand}))
a.stop(); b.stop()
`;
  const out = execFileSync('/usr/bin/python3', ['-c', script, target.toozUrl(url), String(target.toozHandoffs)], {
    encoding: 'utf8',
    maxBuffer: 64 * 1024 * 1024,
  });
  return JSON.parse(out) as ToozResult;
}

async function uncontended(subjects: readonly Subject[], rounds: number, perRound: number): Promise<Map<string, Stats>> {
  const samples = new Map<string, number[]>(subjects.map((s) => [s.name, []]));
  for (const s of subjects) {
    for (let i = 0; i < 100; i++) {
      await s.acquire();
      await s.release();
    }
  }
  // Interleaved rounds, each starting with the next subject, so drift on a shared machine hits every subject alike.
  for (let r = 0; r < rounds; r++) {
    for (let k = 0; k < subjects.length; k++) {
      const s = subjects[(r + k) % subjects.length];
      if (!s) continue;
      const into = samples.get(s.name) ?? [];
      for (let i = 0; i < perRound; i++) {
        const t0 = performance.now();
        await s.acquire();
        await s.release();
        into.push(performance.now() - t0);
      }
    }
  }
  return new Map([...samples].map(([k, v]) => [k, stats(v)]));
}

/** Every client loops acquire -> release on one lock for `durationMs`; acquisitions per client. */
async function contend(clients: readonly Subject[], durationMs: number): Promise<number[]> {
  const counts = clients.map(() => 0);
  const end = performance.now() + durationMs;
  await Promise.all(
    clients.map(async (client, i) => {
      while (performance.now() < end) {
        await client.acquire();
        counts[i] = (counts[i] ?? 0) + 1;
        await client.release();
      }
    }),
  );
  return counts;
}

/** Statements per second the server runs for one idle coordinator with one open watch (default TTL). */
async function idleLoad(
  target: SqlTarget,
  url: string,
  seconds: number,
): Promise<{ perSecond: number; what: string; renewalsPerSecond: number }> {
  const counter = await target.counter(url);
  const c = await connect(url, { namespace: `bi${randomBytes(4).toString('hex')}`, member: 'idle' });
  const watch = c.group('g').watch();
  const reading = (async () => {
    for await (const _event of watch) {
      // nothing happens: the point is the cost of waiting
    }
  })();
  await sleep(1500);
  const n0 = await counter.read();
  const t0 = performance.now();
  await sleep(seconds * 1000);
  const n1 = await counter.read();
  const elapsed = (performance.now() - t0) / 1000;
  await watch.close();
  await reading;
  await c.close();
  await counter.close();
  // The counter's own read is one statement.
  return { perSecond: (n1 - n0 - 1) / elapsed, what: counter.what, renewalsPerSecond: 1000 / (10_000 / 3) };
}

export async function runSqlBench(target: SqlTarget): Promise<void> {
  const progress = (stage: string): void => {
    process.stderr.write(`${target.file}: ${stage}\n`);
  };
  const loadAtStart = loadavg()[0]?.toFixed(1) ?? '?';
  const server = await target.start();
  const url = server.url;
  const lines: string[] = [];
  const out = (line = ''): void => {
    lines.push(line);
  };
  try {
    const version = await target.version(url);
    const ns = `b${randomBytes(4).toString('hex')}`;

    progress('uncontended');
    const floor = await target.floor(url, `${ns}-floor`);
    const single: Subject[] = [
      floor,
      await target.durable(url),
      concordLock(await connect(url, { namespace: ns, member: 'u' }), 'u1'),
      concordShared(await connect(url, { namespace: ns, member: 's' }), 's1'),
      concordPermit(await connect(url, { namespace: ns, member: 'p' }), 'p1'),
      ...(target.npmPeer ? [target.npmPeer.subject(url, `${ns}-npm`)] : []),
    ];
    const unc = await uncontended(single, 6, 100);
    for (const s of single) await s.close();
    const floorStats = unc.get(floor.name);

    progress('hand-off');
    const ca = await connect(url, { namespace: ns, member: 'ha' });
    const cb = await connect(url, { namespace: ns, member: 'hb' });
    const queuedB = (): Promise<void> =>
      new Promise<void>((resolve) => {
        (cb as unknown as EventEmitter).once(kQueued, () => {
          resolve();
        });
      });
    const concordHandoff = await handoff(concordLock(ca, 'h'), concordLock(cb, 'h'), queuedB, 100, target.jitterMs.handoff);
    await ca.close();
    await cb.close();
    const peer = target.npmPeer;
    const peerHandoff = peer
      ? await handoff(peer.subject(url, `${ns}-npm-h`), peer.subject(url, `${ns}-npm-h`), peer.blocked(url), 100, 0)
      : undefined;
    await peer?.close();

    progress('watch latency');
    const watch = await watchLatency(url, 100, target.jitterMs.watch);
    const coldWatch = target.coldWatch
      ? await watchLatency(url, target.coldWatch.count, target.jitterMs.watch, target.coldWatch.pauseMs)
      : undefined;

    progress('fairness');
    const contenders: Coordinator[] = await Promise.all([0, 1, 2, 3].map((i) => connect(url, { namespace: ns, member: `f${i}` })));
    const counts = await contend(
      contenders.map((c, i) => concordLock(c, 'fair', `f${i}`)),
      4000,
    );
    await Promise.all(contenders.map((c) => c.close()));

    progress('idle load');
    const idle = await idleLoad(target, url, 10);

    progress('tooz');
    const py = tooz(target, url);

    const fmtRatio = (s: Stats): string => (floorStats ? `${(s.p50 / floorStats.p50).toFixed(2)}x` : '-');
    out(`## ${target.title}`);
    out();
    out(
      `${version}, a server of its own on 127.0.0.1 started by the benchmark (default durability); Node ${process.version}; ${cpus().length} × ${cpus()[0]?.model.trim() ?? 'cpu'}, load average ${loadAtStart} at the start (the machine is shared). One run, every subject against the same server. Times in ms.`,
    );
    out();
    out(`### Uncontended acquire + release`);
    out();
    const durable = unc.get(single[1]?.name ?? '');
    const fmtDurable = (s: Stats): string => (durable ? `${(s.p50 / durable.p50).toFixed(2)}x` : '-');
    out(`| subject | p50 | p99 | mean | p50 / floor | p50 / two durable commits |`);
    out(`|---|---|---|---|---|---|`);
    for (const [name, s] of unc) out(`| ${name} | ${ms(s.p50)} | ${ms(s.p99)} | ${ms(s.mean)} | ${fmtRatio(s)} | ${fmtDurable(s)} |`);
    if (typeof py !== 'string') {
      const t = stats(py.uncontended);
      out(
        `| Python tooz (its own process, same server) | ${ms(t.p50)} | ${ms(t.p99)} | ${ms(t.mean)} | ${fmtRatio(t)} | ${fmtDurable(t)} |`,
      );
    }
    const exclusive = unc.get('concord lock');
    const toExclusive = (label: string): string => {
      const s = unc.get(label);
      return s && exclusive ? `${ms(s.p50)} ms p50, ${(s.p50 / exclusive.p50).toFixed(2)}x the exclusive lock's` : '-';
    };
    out();
    out(
      `A shared hold: ${toExclusive(SHARED)}; a semaphore permit: ${toExclusive(PERMIT)}. Either is one statement more than the exclusive lock (its row is inserted and the lock's counter moved apart, where an exclusive grant sets both in the lock's row), and a release deletes that row.`,
    );
    out();
    out(target.explain);
    out();
    out(`### Hand-off: holder's release -> blocked waiter holds the lock`);
    out();
    out(`| subject | n | p50 | p99 | mean |`);
    out(`|---|---|---|---|---|`);
    out(`| concord lock | ${concordHandoff.n} | ${ms(concordHandoff.p50)} | ${ms(concordHandoff.p99)} | ${ms(concordHandoff.mean)} |`);
    if (peer && peerHandoff) {
      out(`| ${peer.name} | ${peerHandoff.n} | ${ms(peerHandoff.p50)} | ${ms(peerHandoff.p99)} | ${ms(peerHandoff.mean)} |`);
    }
    if (typeof py !== 'string') {
      const t = stats(py.handoff);
      out(`| Python tooz | ${t.n} | ${ms(t.p50)} | ${ms(t.p99)} | ${ms(t.mean)} |`);
    }
    out();
    out(`Target: p50 <= ${String(target.targets.handoffMs)} ms.`);
    out();
    out(`### A join seen by a watcher in another process`);
    out();
    out(
      `join() called -> the watcher process has the event (process.hrtime, CLOCK_MONOTONIC on both sides): n ${watch.n}, p50 ${ms(watch.p50)}, p99 ${ms(watch.p99)}, mean ${ms(watch.mean)}. Target: p50 <= ${String(target.targets.watchMs)} ms.`,
    );
    if (coldWatch && target.coldWatch) {
      out();
      out(
        `After ${String(target.coldWatch.pauseMs)} ms without a change before each join: n ${coldWatch.n}, p50 ${ms(coldWatch.p50)}, p99 ${ms(coldWatch.p99)}, mean ${ms(coldWatch.mean)}. ${target.coldWatch.note}`,
      );
    }
    out();
    out(`### 4 coordinators contending on one lock for 4 s`);
    out();
    const max = Math.max(...counts);
    const min = Math.min(...counts);
    out(
      `Acquisitions per coordinator: ${counts.join(', ')} (${String(counts.reduce((a, b) => a + b, 0))} in all); max/min ${(max / Math.max(1, min)).toFixed(2)} (target <= 1.5).`,
    );
    out();
    out(`### An idle coordinator with one open watch`);
    out();
    out(
      `${idle.perSecond.toFixed(2)} statements/s over 10 s (the server's ${idle.what}), default sessionTtlMs 10 000: a renewal every 3.3 s, ${idle.renewalsPerSecond.toFixed(2)}/s. ${target.idleNote} Target: ${target.targets.idle}.`,
    );
    out();
    if (typeof py === 'string') out(py);
    out(`Run on ${new Date().toISOString().slice(0, 10)}.`);
  } finally {
    await server.stop();
  }
  const text = `${lines.join('\n')}\n`;
  process.stdout.write(text);
  const dir = fileURLToPath(new URL('./results/', import.meta.url));
  if (!existsSync(dir)) mkdirSync(dir, { recursive: true });
  writeFileSync(`${dir}${target.file}.md`, text);
}
