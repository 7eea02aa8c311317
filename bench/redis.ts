/**
 * Redis benchmark: concord's Redis driver against redis-semaphore, a hand-rolled SET NX PX + compare-and-delete
 * floor, redlock 5.0.0-beta.2 and 4.2.0 (installed as `redlock4`) and Python tooz (when `python3 -c "import tooz, redis"` works), all in one run
 * against one redis-server this script starts. Run: npx tsx bench/redis.ts
 * Prints a markdown section and writes it to bench/results/redis.md.
 *
 * Measured:
 *   1. uncontended acquire + release (latency, and the ratio to the floor), with a semaphore permit beside the lock;
 *   2. hand-off: from the holder's release call to a blocked waiter holding the lock; the same for a semaphore permit
 *      (concord's semaphore against redis-semaphore's Semaphore, limit 3 with two permits held throughout);
 *   3. 4 clients contending on one lock for a fixed time: throughput and max/min acquisitions per client;
 *   4. a join seen by a watcher in another process (monotonic clock shared by the processes of one host);
 *   5. 1,000 members in one group heartbeating at default settings: Redis CPU and client CPU;
 *   6. what ?replicas=1 costs an uncontended acquire + release, behind Sentinel with one replica (redis-replicas.ts).
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import type { EventEmitter } from 'node:events';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { cpus } from 'node:os';
import { fileURLToPath } from 'node:url';
import { Redis } from 'ioredis';
import { Mutex, Semaphore } from 'redis-semaphore';
import { connect, type Coordinator, type HeldLock } from '../src/index.js';
import { concordLock, handoff, ms, sleep, stats, watchLatency, type Stats, type Subject } from './support.js';
import { kQueued, type CoordinatorImpl } from '../src/coordinator.js';
import { startRedis, type ServerHandle } from '../test/support/servers.js';
import { replicasSection } from './redis-replicas.js';

// ---- subjects

/** The driver's two steps alone (one script each), without the core's bookkeeping: where the time goes. */
function driverSubject(c: Coordinator, name: string): Subject {
  const driver = (c as unknown as CoordinatorImpl).driver;
  let token: bigint | undefined;
  return {
    name: 'concord driver steps only (tryLock + unlock scripts)',
    acquire: async () => {
      token = await driver.tryLock('lock', name, c.session.id, c.member);
      if (token === undefined) throw new Error('not acquired');
    },
    release: async () => {
      if (token !== undefined) await driver.unlock('lock', name, c.session.id, token);
      token = undefined;
    },
    close: () => c.close(),
  };
}

const UNLOCK = `if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0`;

function floorSubject(client: Redis, key: string): Subject {
  let token = '';
  let sha = '';
  return {
    name: 'floor (SET NX PX + compare-and-delete)',
    acquire: async () => {
      token = randomBytes(8).toString('hex');
      for (;;) {
        if ((await client.set(key, token, 'PX', LOCK_TTL_MS, 'NX')) === 'OK') return;
        await sleep(1);
      }
    },
    release: async () => {
      if (sha === '') sha = (await client.script('LOAD', UNLOCK)) as string;
      await client.evalsha(sha, 1, key, token);
    },
    close: async () => {
      await client.quit();
    },
  };
}

function semaphoreSubject(client: Redis, key: string): Subject {
  let mutex: Mutex | undefined;
  return {
    name: 'redis-semaphore 5 Mutex (defaults)',
    acquire: async () => {
      mutex = new Mutex(client, key, { acquireTimeout: 60_000 });
      await mutex.acquire();
    },
    release: async () => {
      await mutex?.release();
      mutex = undefined;
    },
    close: async () => {
      await client.quit();
    },
  };
}

/** Where an uncontended acquire + release spends its time: a profile and an A/B measured apart from this run. */
const WHERE_THE_TIME_WENT =
  "#### Where the time went (a profile, and an A/B in one process)\n\nMeasured on 2026-12-06, apart from this benchmark: a CPU profile (`node --cpu-prof`, 20,000 cycles of `lock(name).acquire()` + `release()` against a redis-server of its own), and an A/B in one process of the code before (0fd5a63) and after (ac5c4cc), interleaved with the floor and the driver steps alone, 40 rounds of 400 cycles each, run twice (load about 3). The host's loopback was faster then than during some runs of this benchmark, so the floor is 0.054 ms there: compare the ratios.\n\n| subject | p50 (runs 1 / 2) | p50 / floor | Redis CPU | client CPU |\n|---|---|---|---|---|\n| floor | 0.054 / 0.055 | 1.00x | 24 / 37 \u00b5s | 51 / 74 \u00b5s |\n| concord before | 0.087 / 0.097 | 1.63x / 1.77x | 48 / 69 \u00b5s | 94 / 132 \u00b5s |\n| concord after | 0.077 / 0.081 | 1.43x / 1.47x | 46 / 57 \u00b5s | 81 / 98 \u00b5s |\n| driver steps only, before | 0.072 / 0.075 | 1.33x / 1.36x | 43 / 58 \u00b5s | 62 / 83 \u00b5s |\n| driver steps only, after | 0.070 / 0.074 | 1.31x / 1.34x | 42 / 55 \u00b5s | 62 / 80 \u00b5s |\n\n- The core (gap 1): per cycle the profile had about 8 \u00b5s of the core's own code, 2.3 \u00b5s in the helper tsx (which runs the benchmarks) adds to name each named closure (an Object.defineProperty for every closure made per call: the abort and timeout handlers of each acquisition, the release handlers of each held lock, the interrupt closures of each raced and guarded request) and 9.4 \u00b5s of garbage collection, with six async layers between the acquire's reply and its caller and five for the release. Now: 6.3 \u00b5s, 0.3 \u00b5s and 6.6 \u00b5s, four layers each (the ?replicas check's await is skipped without replicas), no closure per request for the interrupts (the promise's own reject is the interrupt), no AbortSignal listener or timer unless the caller gave a signal or timeout, the session's error built only when asked, and the local turn's queue kept instead of made and dropped on every cycle. Over the driver steps alone, the core now adds about 7 \u00b5s at p50 (was 15 to 22) and 18 to 19 \u00b5s of client CPU (was 32 to 49); the rest of the client's time is the socket writes and ioredis, as for the floor.\n- Redis (gap 2): of the ~24 \u00b5s of server time per cycle in concord's two scripts (INFO commandstats), the commands they call take about 5 \u00b5s; the rest is EVALSHA itself (about 3 \u00b5s a call even for `return 1` with these arguments) and the Lua side of each redis.call (argument objects, the reply parsed back into Lua), about half a microsecond for each of the 11 calls (12 before), against about 7 \u00b5s for the floor's SET and its two-command script. Cut: one call (one EXISTS now asks about the lock, its line and the session) and the deletion of the session's set of holds on every release (a placeholder member keeps it; the SREM went from 0.8 to 0.24 \u00b5s, and its two keyspace notifications are gone). About 1 \u00b5s per cycle, under this host's noise in the totals.\n- Left: the driver steps alone are 1.31x the floor at p50 on this fast loopback (the table above gives this run's). The rest is the work the floor does not do: a fencing token (INCR, TIME), the holder's record, the session check and index, and the announcements watchers are promised (PUBLISH on acquire and release, which cost the same whether or not anyone listens). Reaching 1.1x would mean dropping one of these, or the index that lets a dead session's locks be handed on at once.";

/** A permit of concord's semaphore `name`, of limit `limit`. */
function concordPermit(c: Coordinator, name: string, limit: number, label: string): Subject {
  let held: HeldLock | undefined;
  return {
    name: label,
    acquire: async () => {
      held = await c.semaphore(name, { limit }).acquire();
    },
    release: async () => {
      await held?.release();
      held = undefined;
    },
    close: () => c.close(),
  };
}

function redisSemaphoreSubject(client: Redis, key: string, limit: number): Subject {
  let semaphore: Semaphore | undefined;
  return {
    name: `redis-semaphore 5 Semaphore (limit ${String(limit)}, defaults)`,
    acquire: async () => {
      semaphore = new Semaphore(client, key, limit, { acquireTimeout: 60_000 });
      await semaphore.acquire();
    },
    release: async () => {
      await semaphore?.release();
      semaphore = undefined;
    },
    close: async () => {
      await client.quit();
    },
  };
}

const LOCK_TTL_MS = 10_000;

/** The part of redlock 5's API the benchmark uses (its types are not reachable through the package's exports). */
interface Redlock5Lock {
  release(): Promise<unknown>;
}
interface Redlock5 {
  acquire(resources: string[], durationMs: number): Promise<Redlock5Lock>;
}
type Redlock5Constructor = new (clients: Redis[]) => Redlock5;
// A specifier in a variable: the package's own declarations are not reachable under NodeNext resolution.
const redlock5Package = 'redlock';
const { default: Redlock5Class } = (await import(redlock5Package)) as { default: Redlock5Constructor };

/** redlock 5 with its default settings (retryCount 10, retryDelay 200 ms, retryJitter 100 ms). */
function redlock5Subject(client: Redis, key: string): Subject {
  const redlock = new Redlock5Class([client]);
  let lock: Redlock5Lock | undefined;
  return {
    name: 'redlock 5.0.0-beta.2 (defaults)',
    acquire: async () => {
      lock = await redlock.acquire([key], LOCK_TTL_MS);
    },
    release: async () => {
      await lock?.release();
      lock = undefined;
    },
    close: async () => {
      await client.quit();
    },
  };
}

/** The part of redlock 4's API the benchmark uses (the package has no types of its own). */
interface Redlock4Lock {
  unlock(): Promise<void>;
}
interface Redlock4 {
  lock(resource: string, ttlMs: number): Promise<Redlock4Lock>;
  on(event: 'clientError', listener: (error: Error) => void): void;
}
type Redlock4Constructor = new (clients: Redis[], options?: object) => Redlock4;

/** redlock 4 with its default settings (retryCount 10, retryDelay 200 ms, retryJitter 100 ms). */
function redlock4Subject(client: Redis, key: string): Subject {
  const Redlock4 = createRequire(import.meta.url)('redlock4') as Redlock4Constructor;
  const redlock = new Redlock4([client]);
  redlock.on('clientError', () => undefined);
  let lock: Redlock4Lock | undefined;
  return {
    name: 'redlock 4.2.0 (defaults)',
    acquire: async () => {
      lock = await redlock.lock(key, LOCK_TTL_MS);
    },
    release: async () => {
      await lock?.unlock();
      lock = undefined;
    },
    close: async () => {
      await client.quit();
    },
  };
}

// ---- scenarios

interface Uncontended extends Stats {
  /** redis-server CPU (INFO cpu) and this process's CPU per cycle, µs. */
  readonly redisCpuUs: number;
  readonly clientCpuUs: number;
}

async function uncontended(
  admin: Redis,
  subjects: readonly Subject[],
  rounds: number,
  perRound: number,
): Promise<Map<string, Uncontended>> {
  const samples = new Map<string, number[]>(subjects.map((s) => [s.name, []]));
  const cpu = new Map<string, { redis: number; client: number }>(subjects.map((s) => [s.name, { redis: 0, client: 0 }]));
  for (const s of subjects) {
    for (let i = 0; i < 200; i++) {
      await s.acquire();
      await s.release();
    }
  }
  // Interleaved rounds, so drift on a shared machine spreads over every subject alike; each round starts with the
  // next subject, as the first one after a switch measured slower.
  for (let r = 0; r < rounds; r++) {
    for (let k = 0; k < subjects.length; k++) {
      const s = subjects[(r + k) % subjects.length];
      if (!s) continue;
      const into = samples.get(s.name) ?? [];
      const redis0 = await redisCpuSeconds(admin);
      const client0 = process.cpuUsage();
      for (let i = 0; i < perRound; i++) {
        const t0 = performance.now();
        await s.acquire();
        await s.release();
        into.push(performance.now() - t0);
      }
      const client1 = process.cpuUsage(client0);
      const redis1 = await redisCpuSeconds(admin);
      const spent = cpu.get(s.name) ?? { redis: 0, client: 0 };
      cpu.set(s.name, { redis: spent.redis + (redis1 - redis0) * 1e6, client: spent.client + client1.user + client1.system });
    }
  }
  return new Map(
    [...samples].map(([k, v]) => {
      const spent = cpu.get(k) ?? { redis: NaN, client: NaN };
      return [k, { ...stats(v), redisCpuUs: spent.redis / v.length, clientCpuUs: spent.client / v.length }];
    }),
  );
}

interface ContentionResult {
  readonly elapsedMs: number;
  readonly counts: number[];
  /** Acquisitions that gave up (a library's retry budget ran out); the client tries again. */
  readonly failures: number;
  /** Acquisitions by another client than the previous one. */
  readonly switches: number;
}

async function contention(clients: readonly Subject[], durationMs: number): Promise<ContentionResult> {
  const counts = clients.map(() => 0);
  let failures = 0;
  let switches = 0;
  let last = -1;
  const end = performance.now() + durationMs;
  const started = performance.now();
  await Promise.all(
    clients.map(async (c, i) => {
      while (performance.now() < end) {
        try {
          await c.acquire();
        } catch {
          failures++;
          continue;
        }
        counts[i] = (counts[i] ?? 0) + 1;
        if (i !== last) switches++;
        last = i;
        await c.release();
      }
    }),
  );
  return { elapsedMs: performance.now() - started, counts, failures, switches };
}

async function redisCpuSeconds(admin: Redis): Promise<number> {
  const info = await admin.info('cpu');
  const user = Number(/used_cpu_user:([\d.]+)/.exec(info)?.[1] ?? 0);
  const sys = Number(/used_cpu_sys:([\d.]+)/.exec(info)?.[1] ?? 0);
  return user + sys;
}

async function heartbeats(
  url: string,
  admin: Redis,
  members: number,
  windowMs: number,
): Promise<{ redisCpu: number; clientCpu: number; renewalsPerSecond: number }> {
  const namespace = `bh${randomBytes(4).toString('hex')}`;
  const coordinators: Coordinator[] = [];
  for (let i = 0; i < members; i += 50) {
    const batch = await Promise.all(
      Array.from({ length: Math.min(50, members - i) }, (_v, k) => connect(url, { namespace, member: `m${i + k}` })),
    );
    coordinators.push(...batch);
  }
  await Promise.all(coordinators.map((c) => c.group('g').join({ create: true, capabilities: { weight: 1 } })));
  await sleep(1000);
  const stats0 = await admin.info('commandstats');
  const redis0 = await redisCpuSeconds(admin);
  const client0 = process.cpuUsage();
  const t0 = performance.now();
  await sleep(windowMs);
  const elapsed = (performance.now() - t0) / 1000;
  const redis1 = await redisCpuSeconds(admin);
  const client1 = process.cpuUsage(client0);
  const stats1 = await admin.info('commandstats');
  const calls = (s: string): number => {
    let n = 0;
    for (const m of s.matchAll(/cmdstat_(evalsha|eval):calls=(\d+)/g)) n += Number(m[2]);
    return n;
  };
  const members0 = await connect(url, { namespace, member: 'observer' }).then(async (o) => {
    const list = await o.group('g').members();
    await o.close();
    return list.length;
  });
  if (members0 !== members) throw new Error(`expected ${members} members, saw ${members0}`);
  for (let i = 0; i < coordinators.length; i += 100) await Promise.all(coordinators.slice(i, i + 100).map((c) => c.close()));
  return {
    redisCpu: ((redis1 - redis0) / elapsed) * 100,
    clientCpu: ((client1.user + client1.system) / 1e6 / elapsed) * 100,
    renewalsPerSecond: (calls(stats1) - calls(stats0)) / elapsed,
  };
}

interface ToozResult {
  uncontended: number[];
  handoff: number[];
}

function tooz(url: string): ToozResult | undefined {
  const script = `
import json, sys, threading, time
from tooz import coordination
url = sys.argv[1]
a = coordination.get_coordinator(url, b'bench-a'); a.start()
b = coordination.get_coordinator(url, b'bench-b'); b.start()
lock = a.get_lock(b'tooz-bench')
for _ in range(200):
    lock.acquire(); lock.release()
lat = []
for _ in range(2000):
    t = time.perf_counter_ns(); lock.acquire(); lock.release(); lat.append((time.perf_counter_ns() - t) / 1e6)
hand = []
l1 = a.get_lock(b'tooz-handoff'); l2 = b.get_lock(b'tooz-handoff')
for _ in range(40):
    l1.acquire()
    res = {}
    def wait():
        l2.acquire(blocking=True); res['t'] = time.perf_counter_ns()
    th = threading.Thread(target=wait); th.start(); time.sleep(0.03)
    t0 = time.perf_counter_ns(); l1.release(); th.join(); hand.append((res['t'] - t0) / 1e6); l2.release()
print(json.dumps({'uncontended': lat, 'handoff': hand}))
a.stop(); b.stop()
`;
  try {
    execFileSync('/usr/bin/python3', ['-c', 'import tooz, redis'], { stdio: 'ignore' });
  } catch {
    return undefined;
  }
  const out = execFileSync('/usr/bin/python3', ['-c', script, url], { encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 });
  return JSON.parse(out) as ToozResult;
}

// ---- the run

/** The semaphore's limit in the permit measurements. */
const PERMITS = 3;

const server: ServerHandle = await startRedis();
const url = server.url;
const admin = new Redis({ host: server.host, port: server.port });
const lines: string[] = [];
const out = (line = ''): void => {
  lines.push(line);
};
try {
  const version = (/redis_version:(\S+)/.exec(await admin.info('server')) ?? [])[1] ?? '?';
  const ns = `b${randomBytes(4).toString('hex')}`;
  const newClient = (): Redis => new Redis({ host: server.host, port: server.port });

  // 1. uncontended
  const single = [
    floorSubject(newClient(), 'floor-1'),
    concordLock(await connect(url, { namespace: ns, member: 'u' }), 'u1', 'concord'),
    driverSubject(await connect(url, { namespace: ns, member: 'd' }), 'd1'),
    semaphoreSubject(newClient(), 'sem-1'),
    concordPermit(await connect(url, { namespace: ns, member: 'p' }), 'p1', PERMITS, `concord semaphore permit (limit ${String(PERMITS)})`),
    redisSemaphoreSubject(newClient(), 'rsem-1', PERMITS),
    redlock5Subject(newClient(), 'rl5-1'),
    redlock4Subject(newClient(), 'rl4-1'),
  ];
  const unc = await uncontended(admin, single, 2 * single.length, 250);
  for (const s of single) await s.close();
  const floor = unc.get(single[0]?.name ?? '');
  const lockCost = unc.get(single[1]?.name ?? '');
  const permitCost = unc.get(single[4]?.name ?? '');

  // 2. hand-off. Polling peers: the release comes at a random moment of the waiter's retry cycle.
  const handoffs: Array<[string, Stats]> = [];
  const ca = await connect(url, { namespace: ns, member: 'ha' });
  const cb = await connect(url, { namespace: ns, member: 'hb' });
  const queuedB = (): Promise<void> =>
    new Promise<void>((resolve) => {
      (cb as unknown as EventEmitter).once(kQueued, () => {
        resolve();
      });
    });
  handoffs.push(['concord', await handoff(concordLock(ca, 'h', 'concord'), concordLock(cb, 'h', 'concord'), queuedB, 300)]);
  await ca.close();
  await cb.close();
  const polled = async (label: string, make: (key: string) => Subject, retryMs: number, count: number): Promise<void> => {
    const a = make(`${label}-h`);
    const b = make(`${label}-h`);
    handoffs.push([label, await handoff(a, b, () => sleep(25 + Math.random() * retryMs), count)]);
    await a.close();
    await b.close();
  };
  await polled('redis-semaphore (retryInterval 10 ms)', (key) => semaphoreSubject(newClient(), key), 10, 100);
  await polled('redlock 5.0.0-beta.2 (retryDelay 200 ms, jitter 100 ms)', (key) => redlock5Subject(newClient(), key), 300, 40);
  await polled('redlock 4.2.0 (retryDelay 200 ms, jitter 100 ms)', (key) => redlock4Subject(newClient(), key), 300, 40);

  // 2b. permit hand-off: all permits but one held throughout by another client; the holder has the last one.
  const permitHandoffs: Array<[string, Stats]> = [];
  {
    const filler = await connect(url, { namespace: ns, member: 'pf' });
    const fill = await Promise.all(Array.from({ length: PERMITS - 1 }, () => filler.semaphore('ph', { limit: PERMITS }).acquire()));
    const pa = await connect(url, { namespace: ns, member: 'pa' });
    const pb = await connect(url, { namespace: ns, member: 'pb' });
    const queuedPb = (): Promise<void> =>
      new Promise<void>((resolve) => {
        (pb as unknown as EventEmitter).once(kQueued, () => {
          resolve();
        });
      });
    const label = `concord semaphore (limit ${String(PERMITS)})`;
    permitHandoffs.push([
      label,
      await handoff(concordPermit(pa, 'ph', PERMITS, label), concordPermit(pb, 'ph', PERMITS, label), queuedPb, 300),
    ]);
    await Promise.all(fill.map((p) => p.release()));
    await Promise.all([filler.close(), pa.close(), pb.close()]);
  }
  {
    const fillers = Array.from({ length: PERMITS - 1 }, () => redisSemaphoreSubject(newClient(), 'rsem-h', PERMITS));
    for (const f of fillers) await f.acquire();
    const a = redisSemaphoreSubject(newClient(), 'rsem-h', PERMITS);
    const b = redisSemaphoreSubject(newClient(), 'rsem-h', PERMITS);
    permitHandoffs.push([
      `redis-semaphore Semaphore (limit ${String(PERMITS)}, retryInterval 10 ms)`,
      await handoff(a, b, () => sleep(25 + Math.random() * 10), 100),
    ]);
    for (const s of [a, b]) await s.close();
    for (const f of fillers) {
      await f.release();
      await f.close();
    }
  }

  // 3. 4 contending clients: three interleaved rounds of 1 s per subject, so drift on a shared machine hits all alike.
  const contenders: Array<[string, Subject[]]> = [
    [
      'concord',
      await Promise.all(
        [0, 1, 2, 3].map(async (i) => concordLock(await connect(url, { namespace: ns, member: `c${i}` }), 'hot', 'concord')),
      ),
    ],
    ['redis-semaphore', [0, 1, 2, 3].map(() => semaphoreSubject(newClient(), 'sem-hot'))],
    ['redlock 5.0.0-beta.2', [0, 1, 2, 3].map(() => redlock5Subject(newClient(), 'rl5-hot'))],
    ['redlock 4.2.0', [0, 1, 2, 3].map(() => redlock4Subject(newClient(), 'rl4-hot'))],
  ];
  const contended = new Map<string, ContentionResult>();
  const cpuSpent = new Map<string, { redis: number; client: number }>();
  for (let round = 0; round < 3; round++) {
    for (let k = 0; k < contenders.length; k++) {
      const entry = contenders[(round + k) % contenders.length];
      if (!entry) continue;
      const [label, clients] = entry;
      const redis0 = await redisCpuSeconds(admin);
      const client0 = process.cpuUsage();
      const r = await contention(clients, 1000);
      const client1 = process.cpuUsage(client0);
      const redis1 = await redisCpuSeconds(admin);
      const spent = cpuSpent.get(label) ?? { redis: 0, client: 0 };
      cpuSpent.set(label, { redis: spent.redis + (redis1 - redis0) * 1e6, client: spent.client + client1.user + client1.system });
      const sum = contended.get(label);
      contended.set(
        label,
        sum
          ? {
              elapsedMs: sum.elapsedMs + r.elapsedMs,
              counts: sum.counts.map((n, i) => n + (r.counts[i] ?? 0)),
              failures: sum.failures + r.failures,
              switches: sum.switches + r.switches,
            }
          : r,
      );
    }
  }
  for (const [, clients] of contenders) for (const c of clients) await c.close();

  // 4. watch latency across processes
  const watch = await watchLatency(url, 200);

  // 5. 1,000 members heartbeating
  const beat = await heartbeats(url, admin, 1000, 10_000);

  // Python tooz on the same server.
  const py = tooz(url);

  out(`## Redis`);
  out();
  out(
    `redis-server ${version} on 127.0.0.1 (started by the benchmark, no persistence); Node ${process.version}; ${cpus().length} × ${cpus()[0]?.model.trim() ?? 'cpu'}. One run, every subject against the same server. Times in ms.`,
  );
  out();
  out(`### Uncontended acquire + release`);
  out();
  out(
    `Per cycle, the floor sends SET NX PX and a two-command script; concord two scripts (acquire: session alive, lock and line empty, INCR the fencing counter, record the holder, index it under the session, announce; release: compare, line empty, delete, unindex, announce). CPU columns: redis-server's (INFO cpu) and this process's, per cycle.`,
  );
  out();
  out(`| subject | p50 | p99 | mean | p50 / floor | Redis CPU | client CPU |`);
  out(`|---|---|---|---|---|---|---|`);
  for (const [name, s] of unc) {
    out(
      `| ${name} | ${ms(s.p50)} | ${ms(s.p99)} | ${ms(s.mean)} | ${floor ? (s.p50 / floor.p50).toFixed(2) : '-'}x | ${s.redisCpuUs.toFixed(0)} µs | ${s.clientCpuUs.toFixed(0)} µs |`,
    );
  }
  if (py) {
    const t = stats(py.uncontended);
    out(
      `| Python tooz (redis driver) | ${ms(t.p50)} | ${ms(t.p99)} | ${ms(t.mean)} | ${floor ? (t.p50 / floor.p50).toFixed(2) : '-'}x | - | - |`,
    );
  }
  out();
  if (lockCost && permitCost) {
    out(
      `A permit of concord's semaphore (acquire: nobody in line, take a permit; release: nobody queued, drop it) costs ${(permitCost.p50 / lockCost.p50).toFixed(2)}x concord's exclusive lock at p50 (mean ${(permitCost.mean / lockCost.mean).toFixed(2)}x).`,
    );
    out();
  }
  out(WHERE_THE_TIME_WENT);
  out();
  out(`### Hand-off: holder's release -> blocked waiter holds the lock`);
  out();
  out(`Concord's waiter is queued on the server; a polling peer's release comes at a random moment of its waiter's retry cycle.`);
  out();
  out(`| subject | n | p50 | p99 | mean |`);
  out(`|---|---|---|---|---|`);
  for (const [name, h] of handoffs) out(`| ${name} | ${h.n} | ${ms(h.p50)} | ${ms(h.p99)} | ${ms(h.mean)} |`);
  if (py) {
    const t = stats(py.handoff);
    out(`| Python tooz (redis-py lock polling) | ${t.n} | ${ms(t.p50)} | ${ms(t.p99)} | ${ms(t.mean)} |`);
  }
  out();
  out(`### Hand-off of a semaphore permit: holder's release -> blocked waiter holds a permit`);
  out();
  out(
    `Limit ${String(PERMITS)}, ${String(PERMITS - 1)} permits held throughout by a third client; the holder has the last one. Concord's waiter is in the semaphore's line on the server and is granted the permit by the releasing script; redis-semaphore's waiter polls, and the release comes at a random moment of its retry cycle.`,
  );
  out();
  out(`| subject | n | p50 | p99 | mean |`);
  out(`|---|---|---|---|---|`);
  for (const [name, h] of permitHandoffs) out(`| ${name} | ${h.n} | ${ms(h.p50)} | ${ms(h.p99)} | ${ms(h.mean)} |`);
  const [concordPermits, peerPermits] = permitHandoffs.map(([, h]) => h);
  if (concordPermits && peerPermits) {
    out();
    out(`redis-semaphore's p50 is ${(peerPermits.p50 / concordPermits.p50).toFixed(1)}x concord's.`);
  }
  out();
  out(`### 4 clients contending on one lock (3 × 1 s, interleaved with the other subjects)`);
  out();
  out(
    `Each client (all four in this process) loops acquire -> release. "Changes of hands": the share of acquisitions that went to another client than the previous one; with a FIFO line every acquisition is a hand-off, while a polling lock is mostly re-taken by the client that just released it. "Gave up": acquisitions that ran out of the library's retry budget (the client tries again). CPU per acquisition: redis-server's (INFO cpu) and this process's.`,
  );
  out();
  out(
    `| subject | acquisitions/s | per client | max/min | changes of hands | gave up | Redis CPU / acquisition | client CPU / acquisition |`,
  );
  out(`|---|---|---|---|---|---|---|---|`);
  for (const [name, r] of contended) {
    const max = Math.max(...r.counts);
    const min = Math.min(...r.counts);
    const total = r.counts.reduce((a, b) => a + b, 0);
    const cpu = cpuSpent.get(name) ?? { redis: NaN, client: NaN };
    out(
      `| ${name} | ${((total / r.elapsedMs) * 1000).toFixed(0)} | ${r.counts.join(' / ')} | ${min === 0 ? '∞ (a client starved)' : (max / min).toFixed(2)} | ${total === 0 ? '-' : `${((r.switches / total) * 100).toFixed(0)} %`} | ${r.failures} | ${(cpu.redis / total).toFixed(0)} µs | ${(cpu.client / total).toFixed(0)} µs |`,
    );
  }
  out();
  out(
    `The trade-off: with concord every acquisition changes hands, and each costs the releasing client one script (free the lock, grant it to the first waiter, publish the token on that waiter's channel), one message to the waiter (which then holds the lock with no further round trip) and one script for the releaser to take its place at the back of the line. A polling lock's holder releases and takes it straight back (two commands, no message) while the others sleep out their retry interval: more acquisitions per second, but in runs by one client, and a waiter may wait many intervals (redlock: a client can give up).`,
  );
  out();
  out(`### A join seen by a watcher in another process`);
  out();
  out(
    `join() called -> the watcher process has the event (process.hrtime, CLOCK_MONOTONIC on both sides): n ${watch.n}, p50 ${ms(watch.p50)}, p99 ${ms(watch.p99)}, mean ${ms(watch.mean)}.`,
  );
  out();
  out(`### 1,000 members in one group, default settings (sessionTtlMs 10 000: a renewal every 3.3 s each)`);
  out();
  out(
    `Over 10 s: ${beat.renewalsPerSecond.toFixed(0)} scripts/s on the server; Redis CPU ${beat.redisCpu.toFixed(1)} % of one core; the client process holding all 1,000 coordinators ${beat.clientCpu.toFixed(1)} % of one core.`,
  );
  out();
  if (!py) out(`Python tooz is not installed here (\`python3 -c "import tooz, redis"\` failed), so it is not measured.`);
} finally {
  await admin.quit();
  await server.stop();
}
out();
for (const line of await replicasSection()) out(line);

const text = `${lines.join('\n')}\n`;
process.stdout.write(text);
const dir = fileURLToPath(new URL('./results/', import.meta.url));
if (!existsSync(dir)) mkdirSync(dir, { recursive: true });
writeFileSync(`${dir}redis.md`, text);
