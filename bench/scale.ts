/**
 * Scale benchmark: how concord's costs grow with locks held, coordinators in a group, groups and watchers, on every
 * network driver (Redis, etcd, ZooKeeper, PostgreSQL, MySQL), each against a private server this script starts.
 * Run: npx tsx bench/scale.ts [redis] [etcd] [zookeeper] [postgres] [mysql]   (none named: all five)
 * Writes bench/results/scale.json (merged with earlier runs of the drivers not named), bench/results/scale.md and the
 * plot bench/results/scale.svg. CONCORD_SCALE_MAX=100 (or --max=100) caps every size for a quick check; --report
 * measures nothing and writes the report again from scale.json.
 *
 * Measured, per driver:
 *   1. one coordinator holding 0 / 1 / 10 / 100 / 1,000 / 10,000 locks (sessionTtlMs 3000, so TTL/3 is 1 s): the
 *      backend requests and server CPU per TTL/3 window, and the requests, latency and CPU of one more acquire +
 *      release at that many held;
 *   2. 10 / 100 / 1,000 coordinators joining one group (default settings), spread over child processes, with 10
 *      watchers in another: the time until all have joined and every watcher has seen every one, then over a window
 *      the server's CPU, requests, sockets and memory, and the members' client CPU and memory, per coordinator;
 *   3. 1,000 groups with a member each, and 10 / 100 watchers (in child processes) on one of them: from join() to each
 *      watcher's event, p50 / p99, and to the last watcher's.
 * Server CPU is utime + stime from /proc/<pid>/stat, summed over the server's process and its descendants (PostgreSQL:
 * the postmaster and every backend; the others are one process of many threads, which /proc/<pid>/stat sums).
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, readdirSync, readlinkSync, writeFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { Redis } from 'ioredis';
import mysql from 'mysql2/promise';
import pg from 'pg';
import { connect, DEFAULTS, type HeldLock } from '../src/index.js';
import { ms, sleep, stats } from './support.js';
import {
  fourLetterWord,
  startEtcd,
  startMariadb,
  startPostgres,
  startRedis,
  startZooKeeper,
  type ServerHandle,
} from '../test/support/servers.js';

const CHILD = fileURLToPath(new URL('./scale-child.ts', import.meta.url));
const RESULTS = fileURLToPath(new URL('./results/', import.meta.url));
const DRIVERS = ['redis', 'etcd', 'zookeeper', 'postgres', 'mysql'] as const;
type DriverKey = (typeof DRIVERS)[number];

const maxArg = process.argv.find((a) => a.startsWith('--max='))?.slice('--max='.length);
const MAX = Number(maxArg ?? process.env.CONCORD_SCALE_MAX ?? 10_000);
const capped = (sizes: readonly number[]): number[] => sizes.filter((n) => n <= MAX);
const LOCKS_HELD = capped([0, 1, 10, 100, 1000, 10_000]);
const MEMBERS = capped([10, 100, 1000]);
const WATCHERS = capped([10, 100]);
const GROUPS = Math.min(1000, MAX);
const LOCK_TTL_MS = 3000;
/** Steady-state window of the members scenario: two renewal periods at the default TTL. */
const MEMBERS_WINDOW_MS = Math.round((2 * DEFAULTS.sessionTtlMs) / 3);
const JOINS = 20;
/** The longest a child may take over one command (1,000 connects on a busy machine take about a minute). */
const ASK_LIMIT_MS = 300_000;
const ACQUIRE_LIMIT_MS = 30_000;
const CYCLES = 40;

// ---- the server's side, from /proc

const TICKS_PER_SECOND = Number(spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).stdout.trim()) || 100;

interface ProcStat {
  readonly ppid: number;
  readonly ticks: number;
}

function procStat(pid: number): ProcStat | undefined {
  try {
    const text = readFileSync(`/proc/${String(pid)}/stat`, 'utf8');
    // The command name is in parentheses and may hold spaces: fields count from the last ')'.
    const fields = text.slice(text.lastIndexOf(')') + 2).split(' ');
    return { ppid: Number(fields[1]), ticks: Number(fields[11]) + Number(fields[12]) };
  } catch {
    return undefined;
  }
}

/** `root` and every process below it. */
function processTree(root: number): number[] {
  const children = new Map<number, number[]>();
  for (const entry of readdirSync('/proc')) {
    const pid = Number(entry);
    if (!Number.isInteger(pid)) continue;
    const s = procStat(pid);
    if (!s) continue;
    children.set(s.ppid, [...(children.get(s.ppid) ?? []), pid]);
  }
  const tree: number[] = [];
  const todo = [root];
  for (let pid = todo.pop(); pid !== undefined; pid = todo.pop()) {
    tree.push(pid);
    todo.push(...(children.get(pid) ?? []));
  }
  return tree;
}

interface ServerSample {
  /** CPU seconds, user + system, summed over the tree. */
  readonly cpuS: number;
  /** Private (anonymous) resident memory, bytes: what connections cost, without the shared buffers. */
  readonly anonBytes: number;
  readonly sockets: number;
}

function serverSample(root: number): ServerSample {
  let ticks = 0;
  let anon = 0;
  let sockets = 0;
  for (const pid of processTree(root)) {
    ticks += procStat(pid)?.ticks ?? 0;
    try {
      anon += Number(/RssAnon:\s+(\d+)/.exec(readFileSync(`/proc/${String(pid)}/status`, 'utf8'))?.[1] ?? 0) * 1024;
      for (const fd of readdirSync(`/proc/${String(pid)}/fd`)) {
        try {
          if (readlinkSync(`/proc/${String(pid)}/fd/${fd}`).startsWith('socket:')) sockets++;
        } catch {
          // closed meanwhile
        }
      }
    } catch {
      // exited meanwhile
    }
  }
  return { cpuS: ticks / TICKS_PER_SECOND, anonBytes: anon, sockets };
}

// ---- backends

interface Backend {
  readonly key: DriverKey;
  readonly title: string;
  readonly version: string;
  readonly url: string;
  /** The process whose tree is the server. */
  readonly pid: number;
  /** What requests() counts. */
  readonly requestsWhat: string;
  /** The server's count of requests so far (its own reads excluded). */
  requests(): Promise<number>;
  stop(): Promise<void>;
}

async function redisBackend(): Promise<Backend> {
  const server = await startRedis();
  const admin = new Redis({ host: server.host, port: server.port });
  const version = /redis_version:(\S+)/.exec(await admin.info('server'))?.[1] ?? '?';
  return {
    key: 'redis',
    title: 'Redis',
    version: `redis-server ${version}`,
    url: server.url,
    pid: server.pid,
    requestsWhat: 'commands executed (INFO commandstats, INFO excluded): a script counts once, and so does each command it runs inside',
    requests: async () => {
      let n = 0;
      for (const m of (await admin.info('commandstats')).matchAll(/cmdstat_([^:]+):calls=(\d+)/g)) if (m[1] !== 'info') n += Number(m[2]);
      return n;
    },
    stop: async () => {
      await admin.quit();
      await server.stop();
    },
  };
}

async function etcdBackend(): Promise<Backend> {
  const server = await startEtcd();
  const metrics = async (): Promise<string> => (await fetch(`http://${server.host}:${String(server.port)}/metrics`)).text();
  const version = (await (await fetch(`http://${server.host}:${String(server.port)}/version`)).json()) as { etcdserver?: string };
  return {
    key: 'etcd',
    title: 'etcd',
    version: `etcd ${version.etcdserver ?? '?'}`,
    url: server.url,
    pid: server.pid,
    requestsWhat:
      'gRPC messages received (grpc_server_msg_received_total: a unary call, or one message on a stream such as a lease keep-alive)',
    requests: async () => {
      let n = 0;
      for (const m of (await metrics()).matchAll(/^grpc_server_msg_received_total\{[^}]*\} (\S+)$/gm)) n += Number(m[1]);
      return n;
    },
    stop: () => server.stop(),
  };
}

async function zookeeperBackend(): Promise<Backend> {
  const server = await startZooKeeper();
  const mntr = async (): Promise<string> => fourLetterWord(server.port, 'mntr');
  const version = /zk_version\s+([^\s,-]+)/.exec(await mntr())?.[1] ?? '?';
  return {
    key: 'zookeeper',
    title: 'ZooKeeper',
    version: `ZooKeeper ${version}`,
    url: server.url,
    pid: server.pid,
    requestsWhat: 'packets received (mntr zk_packets_received: every request, pings included)',
    requests: async () => Number(/zk_packets_received\s+(\d+)/.exec(await mntr())?.[1] ?? NaN),
    stop: () => server.stop(),
  };
}

/**
 * A PostgreSQL of its own: test/support's default allows 60 connections, and 1,000 coordinators need about two each
 * (the LISTEN connection, on which renewals run, and a pooled one); with pg_stat_statements, which counts each
 * statement as it ends (pg_stat_database's counts reach the view up to 10 s late from an idle backend).
 */
async function postgresBackend(): Promise<Backend> {
  const server: ServerHandle = await startPostgres({
    args: ['-c', 'max_connections=3000', '-c', 'shared_buffers=64MB', '-c', 'shared_preload_libraries=pg_stat_statements'],
  });
  const url = server.url;
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  await client.query('CREATE EXTENSION IF NOT EXISTS pg_stat_statements');
  const { rows } = await client.query<{ v: string }>("SELECT current_setting('server_version') AS v");
  let reads = 0;
  return {
    key: 'postgres',
    title: 'PostgreSQL',
    version: `PostgreSQL ${rows[0]?.v ?? '?'}`,
    url,
    pid: server.pid,
    requestsWhat: 'statements (pg_stat_statements calls, BEGIN and COMMIT included, this reader excluded)',
    requests: async () => {
      const r = await client.query<{ n: string | null }>('SELECT sum(calls) AS n FROM pg_stat_statements');
      // Each read counts itself once it ends: the reads so far are not requests of the subject.
      return Number(r.rows[0]?.n ?? 0) - reads++;
    },
    stop: async () => {
      await client.end().catch(() => undefined);
      await server.stop();
    },
  };
}

async function mysqlBackend(): Promise<Backend> {
  // 1,000 coordinators open up to three pooled connections each.
  const server: ServerHandle = await startMariadb({ args: ['--max-connections=4000'] });
  const u = new URL(server.url);
  const admin = await mysql.createConnection({ host: u.hostname, port: Number(u.port), user: u.username, database: u.pathname.slice(1) });
  const [rows] = await admin.query<mysql.RowDataPacket[]>('SELECT VERSION() AS v');
  let reads = 0;
  return {
    key: 'mysql',
    title: 'MySQL (MariaDB)',
    version: `MariaDB ${String(rows[0]?.v ?? '?')}`,
    url: server.url,
    pid: server.pid,
    requestsWhat: "statements (SHOW GLOBAL STATUS Questions, this reader's excluded)",
    requests: async () => {
      const [r] = await admin.query<mysql.RowDataPacket[]>("SHOW GLOBAL STATUS LIKE 'Questions'");
      return Number(r[0]?.Value ?? 0) - ++reads;
    },
    stop: async () => {
      await admin.end().catch(() => undefined);
      await server.stop();
    },
  };
}

const START: Record<DriverKey, () => Promise<Backend>> = {
  redis: redisBackend,
  etcd: etcdBackend,
  zookeeper: zookeeperBackend,
  postgres: postgresBackend,
  mysql: mysqlBackend,
};

// ---- child processes

interface Reply {
  readonly op: string;
  readonly [k: string]: unknown;
}

/** A bench/scale-child.ts process: commands in, replies out; `event` and `all` lines go to onEvent. */
class Child {
  readonly #process: ChildProcess;
  readonly #replies: Reply[] = [];
  readonly #waiting: Array<(r: Reply) => void> = [];
  onEvent: (r: Reply) => void = () => undefined;

  constructor(url: string, namespace: string) {
    this.#process = spawn(process.execPath, ['--import', 'tsx', CHILD, url, namespace], { stdio: ['pipe', 'pipe', 'inherit'] });
    createInterface({ input: this.#process.stdout! }).on('line', (line) => {
      const r = JSON.parse(line) as Reply;
      if (r.op === 'event' || r.op === 'all') {
        this.onEvent(r);
        return;
      }
      const take = this.#waiting.shift();
      if (take) take(r);
      else this.#replies.push(r);
    });
  }

  async ask(command: object): Promise<Reply> {
    this.#process.stdin!.write(`${JSON.stringify(command)}\n`);
    const r =
      this.#replies.shift() ??
      (await within(
        new Promise<Reply>((resolve) => this.#waiting.push(resolve)),
        ASK_LIMIT_MS,
        `child ${(command as { op?: string }).op ?? ''}`,
      ));
    if (r.op === 'error') throw new Error(`child: ${String(r.message)}`);
    return r;
  }

  async usage(): Promise<{ cpuUs: number; rss: number }> {
    const r = await this.ask({ op: 'usage' });
    return { cpuUs: Number(r.cpuUs), rss: Number(r.rss) };
  }

  async close(): Promise<void> {
    if (this.#process.exitCode !== null) return;
    const exited = new Promise((resolve) => this.#process.once('exit', resolve));
    this.#process.stdin!.write(`${JSON.stringify({ op: 'close' })}\n`);
    await Promise.race([exited, sleep(60_000)]);
    if (this.#process.exitCode === null) this.#process.kill('SIGKILL');
  }
}

/** `total` coordinators over processes of at most `perChild` each. */
function split(total: number, perChild: number): number[] {
  const n = Math.max(1, Math.ceil(total / perChild));
  return Array.from({ length: n }, (_v, i) => Math.floor((total * (i + 1)) / n) - Math.floor((total * i) / n));
}

/** `p`, or a rejection after `limitMs`: a stuck backend fails its case instead of the run. */
async function within<T>(p: Promise<T>, limitMs: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => {
      reject(new Error(`${what}: no answer within ${String(limitMs / 1000)} s`));
    }, limitMs);
  });
  try {
    return await Promise.race([p, late]);
  } finally {
    clearTimeout(timer);
  }
}

const hr = (): bigint => process.hrtime.bigint();
const msSince = (t0: bigint, at: unknown): number => Number(BigInt(String(at)) - t0) / 1e6;

async function pool(count: number, width: number, task: (i: number) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(width, count) }, async () => {
      while (next < count) await task(next++);
    }),
  );
}

// ---- 1. locks held

interface LocksRow {
  readonly held: number;
  /** Time to take the locks that were added for this row, ms. */
  readonly fillMs: number;
  readonly requestsPerWindow: number;
  readonly serverCpuMsPerWindow: number;
  readonly cycleRequests: number;
  readonly cycleP50Ms: number;
  readonly cycleServerCpuUs: number;
  readonly cycleClientCpuUs: number;
}

interface LocksResult {
  readonly rows: LocksRow[];
  /** close() of the coordinator holding them all, ms. */
  readonly closeMs: number;
}

async function locks(b: Backend): Promise<LocksResult> {
  const c = await connect(b.url, { namespace: `sl${randomBytes(3).toString('hex')}`, member: 'holder', sessionTtlMs: LOCK_TTL_MS });
  const windowMs = LOCK_TTL_MS / 3;
  const held: HeldLock[] = [];
  const rows: LocksRow[] = [];
  const limit = { timeoutMs: ACQUIRE_LIMIT_MS };
  for (let i = 0; i < 5; i++) await (await c.lock('probe').acquire(limit)).release();
  for (const n of LOCKS_HELD) {
    const f0 = performance.now();
    const from = held.length;
    await pool(n - from, 32, async (i) => {
      held.push(await c.lock(`l${String(from + i)}`).acquire(limit));
    });
    const fillMs = performance.now() - f0;
    await sleep(500);
    // Three renewal periods.
    const r0 = await b.requests();
    const s0 = serverSample(b.pid);
    const t0 = performance.now();
    await sleep(3 * windowMs);
    const r1 = await b.requests();
    const s1 = serverSample(b.pid);
    const windows = (performance.now() - t0) / windowMs;
    const background = (r1 - r0) / (performance.now() - t0);
    // One more lock, taken and given back, with all of them held.
    const samples: number[] = [];
    const q0 = await b.requests();
    const z0 = serverSample(b.pid);
    const u0 = process.cpuUsage();
    const c0 = performance.now();
    for (let i = 0; i < CYCLES; i++) {
      const t = performance.now();
      await (await c.lock('probe').acquire(limit)).release();
      samples.push(performance.now() - t);
    }
    const spent = performance.now() - c0;
    const u1 = process.cpuUsage(u0);
    const z1 = serverSample(b.pid);
    const q1 = await b.requests();
    rows.push({
      held: n,
      fillMs,
      requestsPerWindow: (r1 - r0) / windows,
      serverCpuMsPerWindow: ((s1.cpuS - s0.cpuS) * 1000) / windows,
      cycleRequests: (q1 - q0 - background * spent) / CYCLES,
      cycleP50Ms: stats(samples).p50,
      cycleServerCpuUs: ((z1.cpuS - z0.cpuS) * 1e6) / CYCLES,
      cycleClientCpuUs: (u1.user + u1.system) / CYCLES,
    });
    console.error(`  ${b.key} locks ${String(n)}: ${JSON.stringify(rows[rows.length - 1])}`);
  }
  const k0 = performance.now();
  await c.close();
  return { rows, closeMs: performance.now() - k0 };
}

// ---- 2. coordinators in one group

interface MembersRow {
  readonly n: number;
  readonly connectMs: number;
  /** From the first join() call to the last one returning. */
  readonly joinMs: number;
  /** From the first join() call to the last of the 10 watchers having seen all n. */
  readonly seenMs: number;
  readonly requestsPerS: number;
  /** % of one core. */
  readonly serverCpuPct: number;
  readonly clientCpuPct: number;
  readonly watcherCpuPct: number;
  readonly clientKbPerMember: number;
  readonly serverKbPerMember: number;
  readonly serverSocketsPerMember: number;
  readonly closeMs: number;
}

const WATCHERS_OF_MEMBERS = 10;

async function members(b: Backend, n: number): Promise<MembersRow> {
  const namespace = `sm${randomBytes(3).toString('hex')}`;
  const anchor = await connect(b.url, { namespace, member: 'anchor' });
  await anchor.group('g').join({ create: true });
  const watchers = new Child(b.url, namespace);
  const sizes = split(n, 250);
  const children = sizes.map(() => new Child(b.url, namespace));
  const done: Promise<unknown>[] = [];
  try {
    const empty = await Promise.all(children.map((ch) => ch.usage()));
    const seenAll = new Promise<unknown[]>((resolve) => {
      const at: unknown[] = [];
      watchers.onEvent = (r) => {
        at.push(r.at);
        if (at.length === WATCHERS_OF_MEMBERS) resolve(at);
      };
    });
    await watchers.ask({ op: 'count', from: 0, count: WATCHERS_OF_MEMBERS, group: 'g', anchor: 'anchor', expect: n });
    const base = serverSample(b.pid);
    const k0 = performance.now();
    let from = 0;
    await Promise.all(
      children.map((ch, i) => {
        const count = sizes[i] ?? 0;
        const start = from;
        from += count;
        return ch.ask({ op: 'members', from: start, count });
      }),
    );
    const connectMs = performance.now() - k0;
    const t0 = hr();
    const joined = await Promise.all(children.map((ch) => ch.ask({ op: 'join', group: 'g' })));
    const seen = await within(seenAll, ASK_LIMIT_MS, 'watchers seeing every member');
    const joinMs = Math.max(...joined.map((r) => msSince(t0, r.at)));
    const seenMs = Math.max(...seen.map((at) => msSince(t0, at)));
    // Renewals of the joins' moment spread out first.
    await sleep(1000);
    const r0 = await b.requests();
    const s0 = serverSample(b.pid);
    const c0 = await Promise.all(children.map((ch) => ch.usage()));
    const w0 = await watchers.usage();
    const t = performance.now();
    await sleep(MEMBERS_WINDOW_MS);
    const c1 = await Promise.all(children.map((ch) => ch.usage()));
    const w1 = await watchers.usage();
    const s1 = serverSample(b.pid);
    const r1 = await b.requests();
    const elapsedS = (performance.now() - t) / 1000;
    const sum = (xs: readonly number[]): number => xs.reduce((a, x) => a + x, 0);
    const x0 = performance.now();
    done.push(...children.map((ch) => ch.close()), watchers.close());
    await Promise.all(done);
    const closeMs = performance.now() - x0;
    return {
      n,
      connectMs,
      joinMs,
      seenMs,
      requestsPerS: (r1 - r0) / elapsedS,
      serverCpuPct: ((s1.cpuS - s0.cpuS) / elapsedS) * 100,
      clientCpuPct: ((sum(c1.map((u) => u.cpuUs)) - sum(c0.map((u) => u.cpuUs))) / 1e6 / elapsedS) * 100,
      watcherCpuPct: ((w1.cpuUs - w0.cpuUs) / 1e6 / elapsedS) * 100,
      clientKbPerMember: (sum(c1.map((u) => u.rss)) - sum(empty.map((u) => u.rss))) / 1024 / n,
      serverKbPerMember: (s1.anonBytes - base.anonBytes) / 1024 / n,
      serverSocketsPerMember: (s1.sockets - base.sockets) / n,
      closeMs,
    };
  } finally {
    if (done.length === 0) await Promise.all([...children.map((ch) => ch.close()), watchers.close()]);
    await anchor.close();
  }
}

// ---- 3. join fan-out, 1,000 groups

interface FanoutRow {
  readonly watchers: number;
  readonly groups: number;
  readonly joins: number;
  /** join() -> one watcher's event, over every (join, watcher). */
  readonly p50Ms: number;
  readonly p99Ms: number;
  /** join() -> the last watcher's event, over the joins. */
  readonly lastP50Ms: number;
  readonly lastP99Ms: number;
}

async function fanout(b: Backend, namespace: string, watchers: number, jitterMs: number): Promise<FanoutRow> {
  const sizes = split(watchers, 25);
  const children = sizes.map(() => new Child(b.url, namespace));
  const joiner = await connect(b.url, { namespace, member: 'joiner' });
  try {
    let pending: { t0: bigint; left: number; type: string; seen: number[]; resolve: () => void } | undefined;
    for (const ch of children) {
      ch.onEvent = (r) => {
        if (!pending || r.member !== 'joiner' || r.type !== pending.type) return;
        if (pending.type === 'join') pending.seen.push(msSince(pending.t0, r.at));
        if (--pending.left === 0) pending.resolve();
      };
    }
    let from = 0;
    await Promise.all(
      children.map((ch, i) => {
        const count = sizes[i] ?? 0;
        const start = from;
        from += count;
        return ch.ask({ op: 'fanout', from: start, count, group: 'g0', anchor: 'filler' });
      }),
    );
    const all: number[] = [];
    const last: number[] = [];
    const step = async (type: 'join' | 'leave'): Promise<number[]> => {
      const seen: number[] = [];
      const reached = new Promise<void>((resolve) => {
        pending = { t0: hr(), left: watchers, type, seen, resolve };
      });
      if (type === 'join') await joiner.group('g0').join();
      else await joiner.group('g0').leave();
      await within(reached, ACQUIRE_LIMIT_MS, `${type} reaching every watcher`);
      return seen;
    };
    for (let i = 0; i < JOINS + 2; i++) {
      if (jitterMs > 0) await sleep(Math.random() * jitterMs);
      const seen = await step('join');
      if (i >= 2) {
        all.push(...seen);
        last.push(Math.max(...seen));
      }
      await step('leave');
    }
    const s = stats(all);
    const l = stats(last);
    return { watchers, groups: GROUPS, joins: JOINS, p50Ms: s.p50, p99Ms: s.p99, lastP50Ms: l.p50, lastP99Ms: l.p99 };
  } finally {
    await Promise.all(children.map((ch) => ch.close()));
    await joiner.close();
  }
}

// ---- one driver

interface DriverResult {
  readonly key: DriverKey;
  readonly title: string;
  readonly version: string;
  readonly requestsWhat: string;
  readonly ranAt: string;
  readonly load: string;
  readonly locks?: LocksResult;
  readonly members: MembersRow[];
  readonly fanout: FanoutRow[];
  readonly groupsMs?: number;
  readonly errors: string[];
}

const message = (e: unknown): string => (e instanceof Error ? (e.message.split('\n')[0] ?? '') : String(e));

async function runDriver(key: DriverKey): Promise<DriverResult> {
  console.error(`scale: ${key}`);
  const b = await START[key]();
  const errors: string[] = [];
  let lockResult: LocksResult | undefined;
  const memberRows: MembersRow[] = [];
  const fanoutRows: FanoutRow[] = [];
  let groupsMs: number | undefined;
  const load = loadavg()[0]?.toFixed(1) ?? '?';
  try {
    try {
      lockResult = await locks(b);
    } catch (e) {
      errors.push(`locks: ${message(e)}`);
    }
    for (const n of MEMBERS) {
      try {
        const row = await members(b, n);
        memberRows.push(row);
        console.error(`  ${key} members ${String(n)}: ${JSON.stringify(row)}`);
      } catch (e) {
        errors.push(`${String(n)} coordinators: ${message(e)}`);
        break;
      }
    }
    try {
      const namespace = `sf${randomBytes(3).toString('hex')}`;
      const filler = await connect(b.url, { namespace, member: 'filler' });
      try {
        const g0 = performance.now();
        await pool(GROUPS, 25, async (i) => {
          await filler.group(`g${String(i)}`).join({ create: true });
        });
        groupsMs = performance.now() - g0;
        const jitterMs = key === 'mysql' ? 60 : 0;
        for (const w of WATCHERS) {
          const row = await fanout(b, namespace, w, jitterMs);
          fanoutRows.push(row);
          console.error(`  ${key} fan-out ${String(w)}: ${JSON.stringify(row)}`);
        }
      } finally {
        await filler.close();
      }
    } catch (e) {
      errors.push(`fan-out: ${message(e)}`);
    }
  } finally {
    await b.stop();
  }
  return {
    key,
    title: b.title,
    version: b.version,
    requestsWhat: b.requestsWhat,
    ranAt: new Date().toISOString().slice(0, 10),
    load,
    ...(lockResult ? { locks: lockResult } : {}),
    members: memberRows,
    fanout: fanoutRows,
    ...(groupsMs !== undefined ? { groupsMs } : {}),
    errors,
  };
}

// ---- growth: the exponent between the smallest and the largest size

function growth(points: ReadonlyArray<readonly [number, number]>): string {
  const usable = points.filter(([x, y]) => x > 0 && Number.isFinite(y));
  const first = usable[0];
  const final = usable[usable.length - 1];
  if (!first || !final || first === final) return '-';
  const [x0, y0] = first;
  const [x1, y1] = final;
  if (y0 <= 0 && y1 <= 0) return 'constant (none)';
  const ratio = y1 / Math.max(y0, 1e-9);
  const k = Math.log(Math.max(ratio, 1e-9)) / Math.log(x1 / x0);
  const word = k < 0.15 ? 'constant' : k > 0.8 && k < 1.25 ? 'linear' : k <= 0.8 ? 'sublinear' : 'superlinear';
  return `${word} (×${ratio < 10 ? ratio.toFixed(2) : ratio.toFixed(0)} for ×${String(x1 / x0)})`;
}

// ---- the plot: small multiples, log-log, one line per driver

const COLORS: Record<DriverKey, string> = {
  redis: '#d62728',
  etcd: '#1f77b4',
  zookeeper: '#2ca02c',
  postgres: '#9467bd',
  mysql: '#ff7f0e',
};

interface Panel {
  readonly title: string;
  readonly xLabel: string;
  readonly series: ReadonlyArray<{ key: DriverKey; points: ReadonlyArray<readonly [number, number]> }>;
}

function svg(panels: readonly Panel[], drivers: readonly DriverResult[]): string {
  const W = 330;
  const H = 240;
  const cols = 3;
  const rows = Math.ceil(panels.length / cols);
  const pad = { l: 52, r: 12, t: 34, b: 40 };
  const legendH = 30;
  const out: string[] = [];
  const esc = (s: string): string => s.replace(/&/g, '&amp;').replace(/</g, '&lt;');
  const fmt = (v: number): string => (v >= 1000 ? `${String(v / 1000)}k` : v >= 1 ? String(v) : String(v));
  out.push(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${String(W * cols)}" height="${String(H * rows + legendH)}" font-family="sans-serif" font-size="11">`,
    `<rect width="100%" height="100%" fill="white"/>`,
  );
  drivers.forEach((d, i) => {
    const x = 10 + i * 170;
    out.push(`<line x1="${String(x)}" y1="15" x2="${String(x + 24)}" y2="15" stroke="${COLORS[d.key]}" stroke-width="2.5"/>`);
    out.push(`<text x="${String(x + 30)}" y="19">${esc(d.title)}</text>`);
  });
  panels.forEach((p, i) => {
    const ox = (i % cols) * W;
    const oy = legendH + Math.floor(i / cols) * H;
    const pw = W - pad.l - pad.r;
    const ph = H - pad.t - pad.b;
    const pts = p.series.flatMap((s) => s.points.filter(([x, y]) => x > 0 && y > 0 && Number.isFinite(y)));
    out.push(`<text x="${String(ox + W / 2)}" y="${String(oy + 16)}" text-anchor="middle" font-weight="bold">${esc(p.title)}</text>`);
    if (pts.length === 0) return;
    const lx = (v: number): number => Math.log10(v);
    const xs = pts.map(([x]) => lx(x));
    const ys = pts.map(([, y]) => lx(y));
    const x0 = Math.floor(Math.min(...xs));
    const x1 = Math.max(Math.ceil(Math.max(...xs)), x0 + 1);
    const y0 = Math.floor(Math.min(...ys));
    const y1 = Math.max(Math.ceil(Math.max(...ys)), y0 + 1);
    const px = (v: number): number => ox + pad.l + ((lx(v) - x0) / (x1 - x0)) * pw;
    const py = (v: number): number => oy + pad.t + ph - ((lx(v) - y0) / (y1 - y0)) * ph;
    out.push(
      `<rect x="${String(ox + pad.l)}" y="${String(oy + pad.t)}" width="${String(pw)}" height="${String(ph)}" fill="none" stroke="#999"/>`,
    );
    for (let e = x0; e <= x1; e++) {
      const v = 10 ** e;
      out.push(
        `<line x1="${px(v).toFixed(1)}" y1="${String(oy + pad.t)}" x2="${px(v).toFixed(1)}" y2="${String(oy + pad.t + ph)}" stroke="#eee"/>`,
        `<text x="${px(v).toFixed(1)}" y="${String(oy + pad.t + ph + 14)}" text-anchor="middle">${fmt(v)}</text>`,
      );
    }
    for (let e = y0; e <= y1; e++) {
      const v = 10 ** e;
      out.push(
        `<line x1="${String(ox + pad.l)}" y1="${py(v).toFixed(1)}" x2="${String(ox + pad.l + pw)}" y2="${py(v).toFixed(1)}" stroke="#eee"/>`,
        `<text x="${String(ox + pad.l - 4)}" y="${(py(v) + 4).toFixed(1)}" text-anchor="end">${fmt(Number(v.toPrecision(1)))}</text>`,
      );
    }
    out.push(`<text x="${String(ox + pad.l + pw / 2)}" y="${String(oy + H - 8)}" text-anchor="middle">${esc(p.xLabel)}</text>`);
    for (const s of p.series) {
      const ok = s.points.filter(([x, y]) => x > 0 && y > 0 && Number.isFinite(y));
      if (ok.length === 0) continue;
      const d = ok.map(([x, y], k) => `${k === 0 ? 'M' : 'L'}${px(x).toFixed(1)},${py(y).toFixed(1)}`).join(' ');
      out.push(`<path d="${d}" fill="none" stroke="${COLORS[s.key]}" stroke-width="2"/>`);
      for (const [x, y] of ok) out.push(`<circle cx="${px(x).toFixed(1)}" cy="${py(y).toFixed(1)}" r="2.5" fill="${COLORS[s.key]}"/>`);
    }
  });
  out.push('</svg>');
  return `${out.join('\n')}\n`;
}

// ---- the report

const n0 = (x: number): string => (Number.isFinite(x) ? Math.round(x).toLocaleString('en-US') : '-');
const n1 = (x: number): string => (Number.isFinite(x) ? (Math.abs(x) < 10 ? x.toFixed(1) : Math.round(x).toLocaleString('en-US')) : '-');
const size = (n: number): string => n.toLocaleString('en-US');

function report(drivers: readonly DriverResult[]): { md: string; plot: string } {
  const lines: string[] = [];
  const out = (line = ''): void => {
    lines.push(line);
  };
  const lockPoints = (d: DriverResult, f: (r: LocksRow) => number): Array<[number, number]> =>
    (d.locks?.rows ?? []).filter((r) => r.held > 0).map((r) => [r.held, f(r)]);
  const memberPoints = (d: DriverResult, f: (r: MembersRow) => number): Array<[number, number]> => d.members.map((r) => [r.n, f(r)]);
  const fanPoints = (d: DriverResult, f: (r: FanoutRow) => number): Array<[number, number]> => d.fanout.map((r) => [r.watchers, f(r)]);

  out('## Scale');
  out();
  out(
    `How concord's costs grow, on every network driver, each against a private server the benchmark starts (\`npx tsx bench/scale.ts\`; \`CONCORD_SCALE_MAX=100\` for a quick check). ${cpus().length} × ${cpus()[0]?.model.trim() ?? 'cpu'}, Node ${process.version}. Runs: ${drivers.map((d) => `${d.version} on ${d.ranAt} (load ${d.load})`).join('; ')}.`,
  );
  out();
  out(
    'A "request" is what the server itself counts, so it includes everything the client sends: ' +
      drivers.map((d) => `${d.title}: ${d.requestsWhat}`).join('; ') +
      '. Server CPU is utime + stime from `/proc/<pid>/stat`, summed over the server process and its descendants (the postmaster and every backend for PostgreSQL; one multi-threaded process for the others), in ms of one core. Client CPU is `process.cpuUsage()` of the processes holding the coordinators.',
  );
  out();
  out('![How the costs grow: log-log, one line per driver](bench/results/scale.svg)');
  out();
  out('### At a glance: how each cost grows');
  out();
  out(
    'The growth column compares the largest size with the smallest: "constant" means the cost does not depend on the size (exponent below 0.15 on a log-log scale), "linear" that it grows in proportion (exponent 0.8-1.25).',
  );
  out();
  out('| cost | driver | 1 | 10 | 100 | 1,000 | 10,000 | growth |');
  out('|---|---|---|---|---|---|---|---|');
  const growthRow = (what: string, d: DriverResult, points: ReadonlyArray<readonly [number, number]>, fmt: (x: number) => string): void => {
    const at = (x: number): string => {
      const p = points.find(([px]) => px === x);
      return p ? fmt(p[1]) : '';
    };
    out(`| ${what} | ${d.title} | ${at(1)} | ${at(10)} | ${at(100)} | ${at(1000)} | ${at(10_000)} | ${growth(points)} |`);
  };
  const metrics: Array<[string, (d: DriverResult) => Array<[number, number]>, (x: number) => string]> = [
    ['requests per TTL/3, by locks held', (d) => lockPoints(d, (r) => r.requestsPerWindow), n1],
    ['acquire + release requests, by locks held', (d) => lockPoints(d, (r) => r.cycleRequests), n1],
    ['acquire + release p50 ms, by locks held', (d) => lockPoints(d, (r) => r.cycleP50Ms), ms],
    ['time until all joined and seen by 10 watchers, ms, by coordinators', (d) => memberPoints(d, (r) => r.seenMs), n0],
    ['server requests/s, by coordinators', (d) => memberPoints(d, (r) => r.requestsPerS), n1],
    ['server CPU % of a core, by coordinators', (d) => memberPoints(d, (r) => r.serverCpuPct), n1],
    ['client CPU % of a core (all members), by coordinators', (d) => memberPoints(d, (r) => r.clientCpuPct), n1],
    ['join -> all watchers p99 ms, by watchers', (d) => fanPoints(d, (r) => r.lastP99Ms), ms],
  ];
  for (const [what, points, fmt] of metrics) for (const d of drivers) growthRow(what, d, points(d), fmt);
  out();

  out('### One coordinator holding many locks');
  out();
  out(
    `sessionTtlMs ${String(LOCK_TTL_MS)}: a renewal every ${String(LOCK_TTL_MS / 3)} ms (TTL/3). At each count the coordinator holds that many locks of distinct names; the requests and server CPU are per TTL/3 window over three windows (the whole server's count: renewals and anything else). Then one more lock is taken and given back ${String(CYCLES)} times with all of them held: requests (the background rate taken out), latency and CPU per acquire + release.`,
  );
  out();
  out(
    '| driver | locks held | time to take them | requests per TTL/3 | server CPU per TTL/3 | acquire + release: requests | p50 | server CPU | client CPU |',
  );
  out('|---|---|---|---|---|---|---|---|---|');
  for (const d of drivers) {
    for (const r of d.locks?.rows ?? []) {
      out(
        `| ${d.title} | ${size(r.held)} | ${n0(r.fillMs)} ms | ${n1(r.requestsPerWindow)} | ${n1(r.serverCpuMsPerWindow)} ms | ${n1(r.cycleRequests)} | ${ms(r.cycleP50Ms)} ms | ${n0(r.cycleServerCpuUs)} µs | ${n0(r.cycleClientCpuUs)} µs |`,
      );
    }
  }
  out();
  const closes = drivers.filter((d) => d.locks).map((d) => `${d.title} ${n0(d.locks?.closeMs ?? NaN)} ms`);
  const most = Math.max(...LOCKS_HELD);
  if (closes.length > 0) out(`close() of the coordinator holding ${size(most)} locks: ${closes.join(', ')}.`);
  out();

  out('### Coordinators in one group');
  out();
  out(
    `Default settings (sessionTtlMs ${String(DEFAULTS.sessionTtlMs)}: a renewal every ${(DEFAULTS.sessionTtlMs / 3000).toFixed(1)} s each). The coordinators are spread over child processes of at most 250 each; 10 watchers (one more process) follow the group. "Joined": from the first join() call to the last one returning; "seen": to the last of the 10 watchers having seen every member. Then over ${(MEMBERS_WINDOW_MS / 1000).toFixed(1)} s: the server's requests and CPU, the members' processes' CPU (and the watchers'), and per coordinator the client's resident memory, the server's private memory and its sockets.`,
  );
  out();
  out(
    '| driver | coordinators | connect | joined | seen by all watchers | requests/s | server CPU | client CPU | watchers CPU | client memory / coordinator | server memory / coordinator | server sockets / coordinator |',
  );
  out('|---|---|---|---|---|---|---|---|---|---|---|---|');
  for (const d of drivers) {
    for (const r of d.members) {
      out(
        `| ${d.title} | ${size(r.n)} | ${n0(r.connectMs)} ms | ${n0(r.joinMs)} ms | ${n0(r.seenMs)} ms | ${n1(r.requestsPerS)} | ${n1(r.serverCpuPct)} % | ${n1(r.clientCpuPct)} % | ${n1(r.watcherCpuPct)} % | ${n0(r.clientKbPerMember)} KB | ${n0(r.serverKbPerMember)} KB | ${r.serverSocketsPerMember.toFixed(1)} |`,
      );
    }
  }
  out();

  out(`### A join reaching many watchers, among ${size(GROUPS)} groups`);
  out();
  out(
    `${size(GROUPS)} groups with one member each exist (one coordinator joined them all); the watchers (in child processes of at most 25) follow one of them, and a coordinator joins and leaves it ${String(JOINS)} times. Per (join, watcher): from join() called to that watcher's event; "last watcher": to the event of the last of them, per join.${drivers.some((d) => d.key === 'mysql') ? ' MySQL watchers poll: a random pause before each join meets the poll at every phase.' : ''}`,
  );
  out();
  out('| driver | watchers | join -> a watcher p50 | p99 | join -> last watcher p50 | p99 |');
  out('|---|---|---|---|---|---|');
  for (const d of drivers) {
    for (const r of d.fanout) {
      out(`| ${d.title} | ${size(r.watchers)} | ${ms(r.p50Ms)} ms | ${ms(r.p99Ms)} ms | ${ms(r.lastP50Ms)} ms | ${ms(r.lastP99Ms)} ms |`);
    }
  }
  out();
  const groupTimes = drivers.filter((d) => d.groupsMs !== undefined).map((d) => `${d.title} ${n0(d.groupsMs ?? NaN)} ms`);
  if (groupTimes.length > 0)
    out(`Creating and joining the ${size(GROUPS)} groups (25 at a time, one coordinator): ${groupTimes.join(', ')}.`);
  out();

  out('### What was found');
  out();
  for (const d of drivers) {
    const rows = d.locks?.rows ?? [];
    const one = rows.find((r) => r.held === 1);
    const top = rows[rows.length - 1];
    const zero = rows.find((r) => r.held === 0);
    const found: string[] = [];
    if (one && top && top.held > 1) {
      found.push(
        `renewals per TTL/3 ${n1(one.requestsPerWindow)} requests and ${n1(one.serverCpuMsPerWindow)} ms of server CPU with 1 lock held, ${n1(top.requestsPerWindow)} requests and ${n1(top.serverCpuMsPerWindow)} ms with ${size(top.held)} (requests ${growth(lockPoints(d, (r) => r.requestsPerWindow))})`,
      );
    }
    if (zero && top && top.held > 0) {
      found.push(
        `acquire + release ${n1(zero.cycleRequests)} requests, p50 ${ms(zero.cycleP50Ms)} ms at 0 held; ${n1(top.cycleRequests)} requests, p50 ${ms(top.cycleP50Ms)} ms at ${size(top.held)}`,
      );
    }
    const big = d.members[d.members.length - 1];
    if (big) {
      found.push(
        `${size(big.n)} coordinators joined in ${n0(big.joinMs)} ms and were all seen by 10 watchers after ${n0(big.seenMs)} ms; they cost the server ${n1(big.requestsPerS)} requests/s and ${n1(big.serverCpuPct)} % of a core, the clients ${n1(big.clientCpuPct)} % and ${n0(big.clientKbPerMember)} KB each, and ${big.serverSocketsPerMember.toFixed(1)} server connections each`,
      );
    }
    const fan = d.fanout[d.fanout.length - 1];
    if (fan) found.push(`a join reached all ${size(fan.watchers)} watchers in p50 ${ms(fan.lastP50Ms)} ms, p99 ${ms(fan.lastP99Ms)} ms`);
    for (const e of d.errors) found.push(`not measured: ${e}`);
    out(`- ${d.title}: ${found.join('; ')}.`);
  }
  out();
  const postgres = drivers.find((d) => d.key === 'postgres');
  if (postgres?.errors.some((e) => e.includes('could not connect'))) {
    out(
      "PostgreSQL runs one server process per connection, and each coordinator has two (its pool's, and the LISTEN connection that carries notifications): 1,000 coordinators are 2,000 backend processes, more than this 2-core host started within the 10 s connect timeout.",
    );
    out();
  }
  const redis = drivers.find((d) => d.key === 'redis');
  if (redis && !growth(lockPoints(redis, (r) => r.requestsPerWindow)).startsWith('constant')) {
    out(
      "Redis renews with one script per TTL/3 however many locks are held (one round trip), but the script is sent every held lock's name and token and looks each one up (an HMGET per lock, counted among the commands above), to tell the holder of locks taken away from outside: the renewal's size and the server's work grow with the locks held, where the other drivers renew the session alone.",
    );
    out();
  }

  const panels: Panel[] = [
    {
      title: 'requests per TTL/3 vs locks held',
      xLabel: 'locks held by one coordinator',
      series: drivers.map((d) => ({ key: d.key, points: lockPoints(d, (r) => r.requestsPerWindow) })),
    },
    {
      title: 'acquire + release p50 (ms) vs locks held',
      xLabel: 'locks held by one coordinator',
      series: drivers.map((d) => ({ key: d.key, points: lockPoints(d, (r) => r.cycleP50Ms) })),
    },
    {
      title: 'all joined + seen (ms) vs coordinators',
      xLabel: 'coordinators in one group',
      series: drivers.map((d) => ({ key: d.key, points: memberPoints(d, (r) => r.seenMs) })),
    },
    {
      title: 'server requests/s vs coordinators',
      xLabel: 'coordinators in one group',
      series: drivers.map((d) => ({ key: d.key, points: memberPoints(d, (r) => r.requestsPerS) })),
    },
    {
      title: 'server CPU (% of a core) vs coordinators',
      xLabel: 'coordinators in one group',
      series: drivers.map((d) => ({ key: d.key, points: memberPoints(d, (r) => r.serverCpuPct) })),
    },
    {
      title: 'join -> last watcher p99 (ms) vs watchers',
      xLabel: `watchers of one group (${size(GROUPS)} groups)`,
      series: drivers.map((d) => ({ key: d.key, points: fanPoints(d, (r) => r.lastP99Ms) })),
    },
  ];
  return { md: `${lines.join('\n')}\n`, plot: svg(panels, drivers) };
}

// ---- the run

const named = process.argv.slice(2).filter((a) => !a.startsWith('--'));
for (const n of named)
  if (!(DRIVERS as readonly string[]).includes(n)) throw new Error(`unknown driver ${n}: one of ${DRIVERS.join(', ')}`);
// --report: no measuring, the report written again from scale.json.
const chosen = process.argv.includes('--report') ? [] : named.length > 0 ? (named as DriverKey[]) : [...DRIVERS];
if (!existsSync(RESULTS)) mkdirSync(RESULTS, { recursive: true });
const jsonFile = `${RESULTS}scale.json`;
const earlier = existsSync(jsonFile) ? (JSON.parse(readFileSync(jsonFile, 'utf8')) as DriverResult[]) : [];
const results = new Map<DriverKey, DriverResult>(earlier.map((d) => [d.key, d]));
for (const key of chosen) {
  try {
    results.set(key, await runDriver(key));
  } catch (e) {
    console.error(`scale: ${key} failed: ${message(e)}`);
    process.exitCode = 1;
  }
}
const ordered = DRIVERS.map((k) => results.get(k)).filter((d): d is DriverResult => d !== undefined);
writeFileSync(jsonFile, `${JSON.stringify(ordered, null, 1)}\n`);
const { md, plot } = report(ordered);
writeFileSync(`${RESULTS}scale.md`, md);
writeFileSync(`${RESULTS}scale.svg`, plot);
process.stdout.write(md);
process.exit();
