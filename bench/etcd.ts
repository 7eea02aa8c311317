/**
 * etcd benchmark: concord's etcd driver against the etcd3 package's Lock (wrapped in a retry loop: it never waits)
 * and Election, and a two-write floor (put-if-absent on a pre-granted lease, then delete), all in one run against one
 * etcd this script starts. Run: npx tsx bench/etcd.ts
 * Prints a markdown section and writes it to bench/results/etcd.md.
 *
 * Measured:
 *   1. uncontended acquire + release (latency, and the ratio to the floor);
 *   2. hand-off: from the holder's release call to a blocked waiter holding the lock;
 *   3. leader failover: a leader process is SIGKILLed -> a campaigner in this process leads (sessionTtlMs 2000 / TTL 2 s);
 *   4. a join seen by a watcher in another process (monotonic clock shared by the processes of one host);
 *   5. shared locks: uncontended shared acquire + release (and a semaphore permit) against the exclusive lock's, and
 *      8 coordinators waiting shared behind one exclusive holder: from its release to the last of the 8 holding,
 *      against one exclusive hand-off.
 * `npx tsx bench/etcd.ts shared` runs only 1 (concord's subjects) and 5, and writes bench/results/etcd-shared.md.
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import type { EventEmitter } from 'node:events';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { Etcd3, EtcdLockFailedError, type Campaign, type Lock } from 'etcd3';
import { connect, type Coordinator, type HeldLock, type Leadership } from '../src/index.js';
import { concordLock, handoff, ms, sleep, stats, watchLatency, type Stats, type Subject } from './support.js';
import { kQueued } from '../src/coordinator.js';
import { startEtcd, type ServerHandle } from '../test/support/servers.js';

const SELF = fileURLToPath(import.meta.url);
const FAILOVER_TTL_MS = 2000;

/** etcd://127.0.0.1:PORT -> http://127.0.0.1:PORT for the etcd3 package. */
const httpHost = (url: string): string => url.replace(/^etcd:/, 'http:');

// ---- child modes

// `bench/etcd.ts leader concord|etcd3 URL NAME`: leads, says so, and waits to be killed.
if (process.argv[2] === 'leader') {
  const [kind, url, name] = process.argv.slice(3);
  if (kind === 'concord') {
    const c = await connect(url ?? '', { namespace: 'failover', member: `leader-${process.pid}`, sessionTtlMs: FAILOVER_TTL_MS });
    await c.group(name ?? '').campaign();
  } else {
    const client = new Etcd3({ hosts: httpHost(url ?? '') });
    await client
      .election(name ?? '', FAILOVER_TTL_MS / 1000)
      .campaign(`leader-${process.pid}`)
      .wait();
  }
  process.stdout.write('leading\n');
  setInterval(() => undefined, 60_000);
}

if (process.argv[2] === 'leader') {
  // the child modes above never fall through to the benchmark
  await new Promise(() => undefined);
}

// ---- subjects

function concordElection(c: Coordinator, group: string): Subject {
  let lead: Leadership | undefined;
  return {
    name: 'concord campaign + resign',
    acquire: async () => {
      lead = await c.group(group).campaign();
    },
    release: async () => {
      await lead?.resign();
      lead = undefined;
    },
    close: () => c.close(),
  };
}

function concordShared(c: Coordinator, name: string): Subject {
  let held: HeldLock | undefined;
  return {
    name: 'concord shared lock',
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

function concordPermit(c: Coordinator, name: string): Subject {
  let held: HeldLock | undefined;
  return {
    name: 'concord semaphore permit (limit 3)',
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

/**
 * `readers` coordinators wait (shared, or one exclusive) behind one exclusive holder, each surely waiting; from the
 * holder's release call to the last of them holding, in ms.
 */
async function together(url: string, ns: string, readers: number, shared: boolean, count: number): Promise<number[]> {
  const holder = await connect(url, { namespace: ns, member: 'writer' });
  const waiters = await Promise.all(Array.from({ length: readers }, (_v, i) => connect(url, { namespace: ns, member: `r${String(i)}` })));
  const samples: number[] = [];
  try {
    for (let i = 0; i < count; i++) {
      const writer = await holder.lock('together').acquire();
      const queued = waiters.map(
        (w) =>
          new Promise<void>((resolve) => {
            (w as unknown as EventEmitter).once(kQueued, () => {
              resolve();
            });
          }),
      );
      const heldAt: number[] = [];
      const holds = waiters.map((w) =>
        w
          .lock('together')
          .acquire(shared ? { shared } : undefined)
          .then((held) => {
            heldAt.push(performance.now());
            return held;
          }),
      );
      await Promise.all(queued);
      // Queued means in line; a moment more and each waiter's watch of the holder's key is surely created, so what is
      // measured is the grant, not the set-up of the watches (8 of them take longer than one).
      await sleep(30);
      const t0 = performance.now();
      await writer.release();
      const held = await Promise.all(holds);
      samples.push(Math.max(...heldAt) - t0);
      await Promise.all(held.map((h) => h.release()));
    }
  } finally {
    await holder.close();
    await Promise.all(waiters.map((w) => w.close()));
  }
  return samples;
}

/** The least any lease-based lock can do: put-if-absent on a lease granted beforehand, then delete. */
async function floorSubject(url: string, key: string): Promise<Subject> {
  const client = new Etcd3({ hosts: httpHost(url) });
  const lease = await client.leaseClient.leaseGrant({ TTL: 60 });
  const k = Buffer.from(key);
  return {
    name: 'floor (put-if-absent on a pre-granted lease + delete)',
    acquire: async () => {
      for (;;) {
        const r = await client.kv.txn({
          compare: [{ key: k, target: 'Create', result: 'Equal', create_revision: 0 }],
          success: [{ request_put: { key: k, value: Buffer.from('x'), lease: lease.ID } }],
        });
        if (r.succeeded) return;
        await sleep(1);
      }
    },
    release: async () => {
      await client.kv.deleteRange({ key: k });
    },
    close: async () => {
      await client.leaseClient.leaseRevoke({ ID: lease.ID });
      client.close();
    },
  };
}

/** etcd3's Lock fails at once when the lock is taken, so waiting means retrying; every attempt grants a new lease. */
function etcd3LockSubject(client: Etcd3, key: string, retryMs: number): Subject {
  let lock: Lock | undefined;
  return {
    name: `etcd3 Lock (retry every ${retryMs} ms)`,
    acquire: async () => {
      for (;;) {
        const attempt = client.lock(key).ttl(30);
        try {
          lock = await attempt.acquire();
          return;
        } catch (error) {
          if (!(error instanceof EtcdLockFailedError)) throw error;
          await sleep(retryMs);
        }
      }
    },
    release: async () => {
      await lock?.release();
      lock = undefined;
    },
    close: () => {
      client.close();
      return Promise.resolve();
    },
  };
}

function etcd3ElectionSubject(client: Etcd3, name: string): Subject {
  let campaign: Campaign | undefined;
  return {
    name: 'etcd3 Election campaign + resign',
    acquire: async () => {
      campaign = client.election(name, 30).campaign(randomBytes(4).toString('hex'));
      await campaign.wait();
    },
    release: async () => {
      await campaign?.resign();
      campaign = undefined;
    },
    close: () => {
      client.close();
      return Promise.resolve();
    },
  };
}

// ---- scenarios

async function uncontended(subjects: readonly Subject[], rounds: number, perRound: number): Promise<Map<string, Stats>> {
  const samples = new Map<string, number[]>(subjects.map((s) => [s.name, []]));
  for (const s of subjects) {
    for (let i = 0; i < 50; i++) {
      await s.acquire();
      await s.release();
    }
  }
  // Interleaved rounds, so drift on a shared machine spreads over every subject alike.
  for (let r = 0; r < rounds; r++) {
    for (const s of subjects) {
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

/** A leader process is SIGKILLed; how long until a campaigner here leads. */
async function failover(url: string, kind: 'concord' | 'etcd3', runs: number): Promise<Stats> {
  const samples: number[] = [];
  for (let run = 0; run < runs; run++) {
    const name = `failover-${kind}-${randomBytes(3).toString('hex')}`;
    const child = spawn(process.execPath, ['--import', 'tsx', SELF, 'leader', kind, url, name], { stdio: ['ignore', 'pipe', 'inherit'] });
    const exited = new Promise((resolve) => child.once('exit', resolve));
    await new Promise<void>((resolve, reject) => {
      createInterface({ input: child.stdout }).on('line', (line) => {
        if (line === 'leading') resolve();
      });
      child.once('exit', () => {
        reject(new Error('the leader process exited early'));
      });
    });
    let elected: Promise<unknown>;
    let done: () => Promise<void>;
    if (kind === 'concord') {
      const c = await connect(url, { namespace: 'failover', member: 'successor', sessionTtlMs: FAILOVER_TTL_MS });
      const leadership = c.group(name).campaign();
      elected = leadership;
      done = async () => {
        await (await leadership).resign();
        await c.close();
      };
    } else {
      const client = new Etcd3({ hosts: httpHost(url) });
      const campaign = client.election(name, FAILOVER_TTL_MS / 1000).campaign('successor');
      elected = campaign.wait();
      done = async () => {
        await campaign.resign();
        client.close();
      };
    }
    // Both are surely queued behind the leader by now.
    await sleep(300);
    const t0 = performance.now();
    child.kill('SIGKILL');
    await elected;
    samples.push(performance.now() - t0);
    await exited;
    await done();
  }
  return stats(samples);
}

// ---- the run

const progress = (stage: string): void => {
  process.stderr.write(`etcd: ${stage}\n`);
};

const sharedOnly = process.argv[2] === 'shared';
const loadAtStart = loadavg()[0]?.toFixed(1) ?? '?';
const server: ServerHandle = await startEtcd();
const url = server.url;
const lines: string[] = [];
const out = (line = ''): void => {
  lines.push(line);
};
try {
  const versionClient = new Etcd3({ hosts: httpHost(url) });
  const version = (await versionClient.maintenance.status()).version;
  versionClient.close();
  const ns = `b${randomBytes(4).toString('hex')}`;

  // 1. uncontended
  const single: Subject[] = [
    await floorSubject(url, `${ns}-floor`),
    concordLock(await connect(url, { namespace: ns, member: 'u' }), 'u1'),
    concordShared(await connect(url, { namespace: ns, member: 's' }), 's1'),
    concordPermit(await connect(url, { namespace: ns, member: 'p' }), 'p1'),
    ...(sharedOnly
      ? []
      : [
          concordElection(await connect(url, { namespace: ns, member: 'e' }), 'e1'),
          etcd3LockSubject(new Etcd3({ hosts: httpHost(url) }), `${ns}-etcd3-lock`, 10),
          etcd3ElectionSubject(new Etcd3({ hosts: httpHost(url) }), `${ns}-etcd3-election`),
        ]),
  ];
  progress('uncontended');
  const unc = await uncontended(single, 10, 100);
  for (const s of single) await s.close();
  const floorName = single[0]?.name ?? '';
  const floor = unc.get(floorName);
  const exclusive = unc.get('concord lock');

  // 5. shared holders acquired together, against one exclusive hand-off (measured alike, interleaved)
  progress('shared together');
  const eight: number[] = [];
  const one: number[] = [];
  for (let round = 0; round < 5; round++) {
    one.push(...(await together(url, `${ns}-x${String(round)}`, 1, false, 20)));
    eight.push(...(await together(url, `${ns}-s${String(round)}`, 8, true, 20)));
  }
  const togetherStats = stats(eight);
  const handoffStats = stats(one);
  const sharedSection = (): void => {
    const sharedUnc = unc.get('concord shared lock');
    const permitUnc = unc.get('concord semaphore permit (limit 3)');
    out(`### Shared locks and semaphores`);
    out();
    out(
      `Uncontended acquire + release, p50: shared lock ${ms(sharedUnc?.p50 ?? 0)} ms, ${exclusive && sharedUnc ? (sharedUnc.p50 / exclusive.p50).toFixed(2) : '-'}x the exclusive lock's ${ms(exclusive?.p50 ?? 0)} ms (target <= 1.2x); a semaphore permit ${ms(permitUnc?.p50 ?? 0)} ms, ${exclusive && permitUnc ? (permitUnc.p50 / exclusive.p50).toFixed(2) : '-'}x. Both are the exclusive lock's two writes: a put guarded by "no exclusive request in line" (a permit: "nobody in line"), then a delete.`,
    );
    out();
    out(`| 8 coordinators waiting shared behind one exclusive holder: release -> the last of the 8 holds | n | p50 | p99 | mean |`);
    out(`|---|---|---|---|---|`);
    out(
      `| 8 shared holders granted together | ${togetherStats.n} | ${ms(togetherStats.p50)} | ${ms(togetherStats.p99)} | ${ms(togetherStats.mean)} |`,
    );
    out(
      `| one exclusive hand-off (the same run, interleaved) | ${handoffStats.n} | ${ms(handoffStats.p50)} | ${ms(handoffStats.p99)} | ${ms(handoffStats.mean)} |`,
    );
    out();
    out(
      `Each shared waiter watches only the last exclusive request ahead of it (etcd's rwmutex recipe): the release wakes all 8 at once, and each reads once (its own key and the last exclusive request ahead of it) before it holds. All 8 coordinators run in this one process, so their wake-ups and reads share one event loop. p50 ratio ${(togetherStats.p50 / handoffStats.p50).toFixed(2)}x one hand-off.`,
    );
    out();
  };
  if (sharedOnly) {
    out(`## etcd: shared locks and semaphores`);
    out();
    out(
      `One etcd member on 127.0.0.1 (started by the benchmark); Node ${process.version}; ${cpus().length} × ${cpus()[0]?.model.trim() ?? 'cpu'}, load average ${loadAtStart} at the start. Times in ms.`,
    );
    out();
    out(`| subject | p50 | p99 | mean | p50 / floor |`);
    out(`|---|---|---|---|---|`);
    for (const [name, s] of unc)
      out(`| ${name} | ${ms(s.p50)} | ${ms(s.p99)} | ${ms(s.mean)} | ${floor ? (s.p50 / floor.p50).toFixed(2) : '-'}x |`);
    out();
    sharedSection();
    out(`Run on ${new Date().toISOString().slice(0, 10)}, load average ${loadavg()[0]?.toFixed(1) ?? '?'} at the end.`);
  } else {
    // 2. hand-off
    const ca = await connect(url, { namespace: ns, member: 'ha' });
    const cb = await connect(url, { namespace: ns, member: 'hb' });
    const queuedB = (): Promise<void> =>
      new Promise<void>((resolve) => {
        (cb as unknown as EventEmitter).once(kQueued, () => {
          resolve();
        });
      });
    progress('hand-off');
    const concordHandoff = await handoff(concordLock(ca, 'h'), concordLock(cb, 'h'), queuedB, 200);
    const concordElectionHandoff = await handoff(concordElection(ca, 'he'), concordElection(cb, 'he'), queuedB, 100);
    await ca.close();
    await cb.close();
    const la = etcd3LockSubject(new Etcd3({ hosts: httpHost(url) }), `${ns}-h`, 10);
    const lb = etcd3LockSubject(new Etcd3({ hosts: httpHost(url) }), `${ns}-h`, 10);
    const lockHandoff = await handoff(la, lb, () => sleep(30), 100);
    await la.close();
    await lb.close();
    const ea = etcd3ElectionSubject(new Etcd3({ hosts: httpHost(url) }), `${ns}-he`);
    const eb = etcd3ElectionSubject(new Etcd3({ hosts: httpHost(url) }), `${ns}-he`);
    const electionHandoff = await handoff(ea, eb, () => sleep(30), 100);
    await ea.close();
    await eb.close();

    // 3. leader failover after SIGKILL
    progress('failover');
    const concordFailover = await failover(url, 'concord', 5);
    const etcd3Failover = await failover(url, 'etcd3', 5);

    // 4. watch latency across processes
    progress('watch latency');
    const watch = await watchLatency(url, 200);

    out(`## etcd`);
    out();
    out(
      `etcd ${version}, one member on 127.0.0.1 (started by the benchmark); Node ${process.version}; ${cpus().length} × ${cpus()[0]?.model.trim() ?? 'cpu'}, load average ${loadAtStart} at the start. One run, every subject against the same server. Times in ms.`,
    );
    out();
    out(`### Uncontended acquire + release`);
    out();
    out(`| subject | p50 | p99 | mean | p50 / floor |`);
    out(`|---|---|---|---|---|`);
    for (const [name, s] of unc)
      out(`| ${name} | ${ms(s.p50)} | ${ms(s.p99)} | ${ms(s.mean)} | ${floor ? (s.p50 / floor.p50).toFixed(2) : '-'}x |`);
    out();
    out(
      `concord's uncontended lock is the floor's two writes plus a compare: a put guarded by "no key under this lock's prefix" (on the session's lease, granted at connect), then a delete guarded by the key's create revision; the rest is client-side work (the core's bookkeeping and the driver's). etcd3's Lock grants a lease for every attempt and revokes it to release; its Election grants a lease, writes, then reads who is ahead.`,
    );
    out();
    out(
      "Where the time goes (node --cpu-prof on a loop of acquire + release, and etcd's grpc_server_* counters for the requests and messages per operation): the floor and concord's lock both make two unary calls (Txn + DeleteRange; Txn + Txn), and the client's CPU is most of the latency: 1.3-1.6 ms of CPU per acquire + release for the floor alone, nearly all in @grpc/grpc-js, Node's http2 and protobufjs; concord's own code (core and driver) is under a tenth of its total. What grew since November 26 (1.06-1.15x then): (1) the held key's watch (December 4, so that a holder hears of its key deleted from outside): our own release's delete comes back as one Watch message per acquire + release, decoded and dropped. It is the loss detection, so it stays. (2) The try-lock request carried, in every request, a failure branch of two reads (for a key of ours left by a lost answer): encoding and decoding it cost 7-19% of the client CPU per acquire + release in three same-process A/B runs. It is now sent only when a key of ours may be there: held, in line, or left by a call that failed. The entry time written into a waiting contender's value (member, newline, ms) is on the queued path only: an uncontended acquire writes the member alone.",
    );
    out();
    out(`### Hand-off: holder's release -> blocked waiter holds the lock`);
    out();
    out(`| subject | n | p50 | p99 | mean |`);
    out(`|---|---|---|---|---|`);
    for (const [name, s] of [
      ['concord lock (waiter watches its predecessor)', concordHandoff],
      ['concord leadership (resign -> next campaigner leads)', concordElectionHandoff],
      ['etcd3 Lock (retry every 10 ms)', lockHandoff],
      ['etcd3 Election (resign -> next campaigner elected)', electionHandoff],
    ] as const) {
      out(`| ${name} | ${s.n} | ${ms(s.p50)} | ${ms(s.p99)} | ${ms(s.mean)} |`);
    }
    out();
    out(
      "The hand-off's tail (p99 33-83 ms in two November runs) was looked for in each hand-off's phases, with a 1 ms timer measuring this process's event-loop stalls, a GC observer, and etcd's WAL fsync histogram, on a host at load average 15-17 (2 cores): 52 of 400 hand-offs took over 10 ms (p99 61 ms). In 43 of them this process's event loop stood still for over 4 ms while no GC ran (GC ran inside only 2): the process was waiting for a CPU. In 36 the holder's delete alone took over 8 ms: etcd was waiting too, not for its disk (98% of its WAL fsyncs under 8 ms, all under 32 ms). A waiter released on right after it queued (its watch perhaps not yet created) and one surely watching had the same tail (p99 84 and 52 ms, max 97 and 87 ms), and this etcd runs without auto-compaction. A hand-off passes between the processes four times (the delete, the watch event, the waiter's read, its answer), each a wait for the scheduler on a loaded machine: that is the tail, not watch creation, compaction, timers or GC. On a quiet host (2026-12-06, load 1.4) the hand-off's p99 was 10.1 ms, beside 8.98 ms for the floor's put + delete in the same run: the rest of the tail is as long as etcd's own slowest writes.",
    );
    out();
    out(`### Leader failover: the leader process is SIGKILLed -> a campaigner in another process leads`);
    out();
    out(
      `TTL ${FAILOVER_TTL_MS} ms (etcd's minimum lease) on both sides; etcd deletes the dead lease's keys when it expires, and checks for expired leases every 500 ms. Target: TTL + 0.5 s.`,
    );
    out();
    out(`| subject | runs | p50 | max | max - TTL |`);
    out(`|---|---|---|---|---|`);
    for (const [name, s] of [
      ['concord campaign', concordFailover],
      ['etcd3 Election', etcd3Failover],
    ] as const) {
      out(`| ${name} | ${s.n} | ${ms(s.p50)} | ${ms(s.max)} | ${ms(s.max - FAILOVER_TTL_MS)} |`);
    }
    out();
    out(`### A join seen by a watcher in another process`);
    out();
    out(
      `join() called -> the watcher process has the event (process.hrtime, CLOCK_MONOTONIC on both sides): n ${watch.n}, p50 ${ms(watch.p50)}, p99 ${ms(watch.p99)}, mean ${ms(watch.mean)}.`,
    );
    out();
    sharedSection();
    out(`Run on ${new Date().toISOString().slice(0, 10)}.`);
  }
} finally {
  await server.stop();
}

const text = `${lines.join('\n')}\n`;
process.stdout.write(text);
const dir = fileURLToPath(new URL('./results/', import.meta.url));
if (!existsSync(dir)) mkdirSync(dir, { recursive: true });
writeFileSync(`${dir}${sharedOnly ? 'etcd-shared' : 'etcd'}.md`, text);
process.exit(0);
