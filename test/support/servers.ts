/**
 * Launchers for real backend servers (Redis, etcd, ZooKeeper) used by the tests.
 *
 * There is no Docker engine on the project's machines, so tests start the Debian binaries themselves, on free
 * loopback ports, each in its own temporary folder, and can stop, SIGKILL, SIGSTOP and restart them on the same port.
 * PostgreSQL and MariaDB already run on every machine (URL helpers below); tests that kill or restart a database server
 * start a private one (startPostgres, startMariadb).
 *
 * Every spawned process is tracked and SIGKILLed when the test process exits, so no server outlives a run.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

export interface ServerHandle {
  /** e.g. `redis://127.0.0.1:PORT`, `etcd://127.0.0.1:PORT`, `zookeeper://127.0.0.1:PORT`. */
  readonly url: string;
  readonly host: string;
  readonly port: number;
  /** pid of the current process (changes on restart); -1 when none was ever started. */
  readonly pid: number;
  /** Temporary folder holding config, data and `server.log`. */
  readonly dir: string;
  /** Path of the server's combined stdout/stderr log. */
  readonly logFile: string;
  /** True while a process is running (paused counts as running). */
  readonly running: boolean;
  /** Graceful stop (SIGTERM, SIGKILL after 10 s), waits for exit, removes the temp folder. Idempotent. */
  stop(): Promise<void>;
  /** SIGKILL, waits for exit. Keeps the data folder so restart() finds the old data. */
  kill(): Promise<void>;
  /** SIGSTOP, and waits (synchronously) until every thread has stopped: from then on the server answers nothing. */
  pause(): void;
  /** SIGCONT. */
  resume(): void;
  /** Starts again on the same port(s) and waits until ready. Kills a still-running process first. */
  restart(): Promise<void>;
}

export type ServerKind = 'redis' | 'etcd' | 'zookeeper' | 'postgres' | 'mysql';
export type Availability = { ok: true } | { ok: false; reason: string };

export const LOOPBACK = '127.0.0.1';

// ---------------------------------------------------------------------------------------------------------------
// Process bookkeeping: nothing we spawn may outlive the test process.

const liveChildren = new Set<ChildProcess>();
/** Children started as the leader of a process group of their own: signalled as a group (a postmaster and its backends). */
const groupLeaders = new Set<ChildProcess>();
const tempDirs = new Set<string>();
let exitHooksInstalled = false;

function killAllSync(): void {
  for (const child of liveChildren) {
    try {
      if (child.pid !== undefined) process.kill(groupLeaders.has(child) ? -child.pid : child.pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
  liveChildren.clear();
  if (process.env.CONCORD_KEEP_TMP) return;
  for (const dir of tempDirs) {
    try {
      fs.rmSync(dir, { recursive: true, force: true });
    } catch {
      // best effort at exit
    }
  }
  tempDirs.clear();
}

function installExitHooks(): void {
  if (exitHooksInstalled) return;
  exitHooksInstalled = true;
  // 'exit' handlers must be synchronous: SIGKILL needs no waiting.
  process.on('exit', killAllSync);
  // A signal would end the process without 'exit': clean up, then let the signal do what it would have done.
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    const onSignal = (): void => {
      killAllSync();
      process.removeListener(signal, onSignal);
      if (process.listenerCount(signal) === 0) process.kill(process.pid, signal);
    };
    process.on(signal, onSignal);
  }
}

function makeTempDir(prefix: string): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `concord-${prefix}-`));
  tempDirs.add(dir);
  return dir;
}

/** Last `lines` lines of a log file, for error messages. */
export function logTail(file: string, lines = 20): string {
  try {
    const fd = fs.openSync(file, 'r');
    try {
      const size = fs.fstatSync(fd).size;
      const length = Math.min(size, 64 * 1024);
      const buf = Buffer.alloc(length);
      fs.readSync(fd, buf, 0, length, size - length);
      return buf.toString('utf8').trimEnd().split('\n').slice(-lines).join('\n');
    } finally {
      fs.closeSync(fd);
    }
  } catch {
    return '(no log)';
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Binaries and availability

function isCI(): boolean {
  const ci = process.env.CI;
  return ci !== undefined && ci !== '' && ci !== '0' && ci.toLowerCase() !== 'false';
}

/** Absolute path of an executable: `name` itself when absolute, else the first match on PATH. */
export function findBinary(name: string): string | undefined {
  if (path.isAbsolute(name)) return fs.existsSync(name) ? name : undefined;
  for (const dir of (process.env.PATH ?? '').split(path.delimiter)) {
    if (!dir) continue;
    const candidate = path.join(dir, name);
    if (fs.existsSync(candidate)) return candidate;
  }
  return undefined;
}

/**
 * Checks that a binary exists. Missing under CI: throws `"<name> not found: <installHint>"` so the suite fails loudly;
 * missing locally: returns `{ ok: false, reason }` with that same message, for `describe.skipIf`.
 */
export function requireBinary(name: string, installHint: string): Availability {
  if (findBinary(name) !== undefined) return { ok: true };
  const reason = `${name} not found: ${installHint}`;
  if (isCI()) throw new Error(reason);
  return { ok: false, reason };
}

const REDIS_BIN = ['/usr/bin/redis-server', 'redis-server'];
const ETCD_BIN = ['/usr/bin/etcd', 'etcd'];
const ETCDCTL_BIN = ['/usr/bin/etcdctl', 'etcdctl'];
const ZK_JAR_DIRS = ['/usr/share/java', '/usr/share/zookeeper/lib'];
const POSTGRES_BIN = ['/usr/lib/postgresql', '/usr/bin/postgres', '/usr/sbin/postgres'];
const MYSQL_BIN = ['/usr/sbin/mariadbd', '/usr/sbin/mysqld', '/usr/bin/mariadbd', '/usr/bin/mysqld'];

const INSTALL_HINTS: Record<ServerKind, string> = {
  redis: 'apt-get install -y redis-server',
  etcd: 'apt-get update && apt-get install -y etcd-server etcd-client',
  zookeeper: 'apt-get update && apt-get install -y zookeeper (needs a Java runtime, e.g. default-jre-headless)',
  postgres: 'apt-get install -y postgresql (or set CONCORD_TEST_POSTGRES_URL)',
  mysql: 'apt-get install -y mariadb-server (or set CONCORD_TEST_MYSQL_URL)',
};

function firstBinary(candidates: readonly string[]): string | undefined {
  for (const c of candidates) {
    const found = findBinary(c);
    if (found !== undefined) return found;
  }
  return undefined;
}

function javaBinary(): string | undefined {
  const home = process.env.JAVA_HOME;
  if (home && fs.existsSync(path.join(home, 'bin', 'java'))) return path.join(home, 'bin', 'java');
  return findBinary('java');
}

function zookeeperJarDir(): string | undefined {
  return ZK_JAR_DIRS.find((dir) => fs.existsSync(path.join(dir, 'zookeeper.jar')));
}

/** Whether a server kind can be used here. Synchronous, never throws (see requireServer for the CI rule). */
export function available(kind: ServerKind): Availability {
  const missing = (what: string): Availability => ({ ok: false, reason: `${what} not found: ${INSTALL_HINTS[kind]}` });
  switch (kind) {
    case 'redis':
      return firstBinary(REDIS_BIN) ? { ok: true } : missing('redis-server');
    case 'etcd':
      return firstBinary(ETCD_BIN) ? { ok: true } : missing('etcd');
    case 'zookeeper':
      if (!zookeeperJarDir()) return missing('zookeeper (/usr/share/java/zookeeper.jar)');
      return javaBinary() ? { ok: true } : missing('java');
    case 'postgres':
      if (process.env.CONCORD_TEST_POSTGRES_URL) return { ok: true };
      return POSTGRES_BIN.some((p) => fs.existsSync(p)) ? { ok: true } : missing('postgres');
    case 'mysql':
      if (process.env.CONCORD_TEST_MYSQL_URL) return { ok: true };
      return MYSQL_BIN.some((p) => fs.existsSync(p)) ? { ok: true } : missing('mariadbd');
  }
}

/** available(kind), but under CI a missing server throws instead of letting the suite skip. */
export function requireServer(kind: ServerKind): Availability {
  const result = available(kind);
  if (!result.ok && isCI()) throw new Error(result.reason);
  return result;
}

// ---------------------------------------------------------------------------------------------------------------
// PostgreSQL / MariaDB: already running on the machine, never started here.

export function postgresUrl(): string {
  return process.env.CONCORD_TEST_POSTGRES_URL || 'postgres://postgres@127.0.0.1:5432/test';
}

export function mysqlUrl(): string {
  return process.env.CONCORD_TEST_MYSQL_URL || 'mysql://root@127.0.0.1:3306/test';
}

/** True when a TCP connection to host:port succeeds within timeoutMs. */
export function isReachable(host: string, port: number, timeoutMs = 1000): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ host, port });
    const done = (ok: boolean): void => {
      clearTimeout(timer);
      socket.destroy();
      resolve(ok);
    };
    const timer = setTimeout(() => done(false), timeoutMs);
    socket.once('connect', () => done(true));
    socket.once('error', () => done(false));
  });
}

/**
 * Whether the already-running PostgreSQL / MariaDB answers on its URL's host and port. Under CI an unreachable
 * server throws (the suite must not silently skip); locally it returns a reason to skip with.
 */
export async function requireReachable(kind: 'postgres' | 'mysql'): Promise<Availability> {
  const url = new URL(kind === 'postgres' ? postgresUrl() : mysqlUrl());
  const port = Number(url.port || (kind === 'postgres' ? 5432 : 3306));
  const host = url.hostname || LOOPBACK;
  if (await isReachable(host, port)) return { ok: true };
  const reason = `${kind} not reachable at ${host}:${port}: ${INSTALL_HINTS[kind]}, and start it`;
  if (isCI()) throw new Error(reason);
  return { ok: false, reason };
}

// ---------------------------------------------------------------------------------------------------------------
// Ports

const handedOut = new Set<number>();

function ephemeralLow(): number {
  try {
    const [low] = fs.readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/);
    const n = Number(low);
    return Number.isInteger(n) && n > 0 ? n : 32768;
  } catch {
    return 32768;
  }
}

function tryListen(port: number): Promise<number | undefined> {
  return new Promise((resolve) => {
    const server = net.createServer();
    server.unref();
    server.once('error', () => resolve(undefined));
    server.listen({ port, host: LOOPBACK, exclusive: true }, () => {
      const address = server.address();
      const bound = typeof address === 'object' && address !== null ? address.port : undefined;
      server.close(() => resolve(bound));
    });
  });
}

/**
 * A free loopback port. Picked below the kernel's ephemeral range on purpose: outgoing connections take their local
 * ports from that range, and one of them could sit on a killed server's port just when the test restarts it.
 */
export async function freePort(): Promise<number> {
  const low = ephemeralLow();
  if (low > 11000) {
    for (let attempt = 0; attempt < 50; attempt++) {
      const candidate = 10000 + Math.floor(Math.random() * (low - 10000));
      if (handedOut.has(candidate)) continue;
      if ((await tryListen(candidate)) !== undefined) {
        handedOut.add(candidate);
        return candidate;
      }
    }
  }
  for (let attempt = 0; attempt < 20; attempt++) {
    const port = await tryListen(0);
    if (port !== undefined && !handedOut.has(port)) {
      handedOut.add(port);
      return port;
    }
  }
  throw new Error('no free loopback port found');
}

// ---------------------------------------------------------------------------------------------------------------
// Readiness probes (each bounded by its own timeout, so a SIGSTOPped server cannot hang a poll)

/**
 * Sends `payload` over a fresh TCP connection and resolves with what came back once `complete` says so, the peer
 * closes, or `timeoutMs` passes (then with whatever arrived, possibly ''). Never rejects.
 */
export function tcpExchange(
  port: number,
  payload: string,
  complete: (received: string) => boolean = () => false,
  timeoutMs = 1000,
  host = LOOPBACK,
): Promise<string> {
  return new Promise((resolve) => {
    let received = '';
    const socket = net.connect({ host, port });
    const done = (): void => {
      clearTimeout(timer);
      socket.destroy();
      resolve(received);
    };
    const timer = setTimeout(done, timeoutMs);
    socket.setEncoding('utf8');
    socket.once('connect', () => socket.write(payload));
    socket.on('data', (chunk: string) => {
      received += chunk;
      if (complete(received)) done();
    });
    socket.once('end', done);
    socket.once('close', done);
    socket.once('error', done);
  });
}

/** Sends a ZooKeeper four-letter word (ruok, srvr, stat, mntr, cons, dump are whitelisted) and returns the reply. */
export function fourLetterWord(port: number, word: string, timeoutMs = 1000): Promise<string> {
  return tcpExchange(port, word, () => false, timeoutMs);
}

async function redisReady(port: number): Promise<boolean> {
  // -LOADING while an AOF is replayed: only +PONG means ready.
  const reply = await tcpExchange(port, 'PING\r\n', (r) => r.includes('\r\n'));
  return reply.startsWith('+PONG');
}

async function zookeeperReady(port: number): Promise<boolean> {
  // `ruok` says imok before the server serves requests; `srvr` reports a Mode only once it does.
  const reply = await fourLetterWord(port, 'srvr');
  return /^Mode: /m.test(reply);
}

function httpJson(port: number, method: 'GET' | 'POST', urlPath: string, body?: string, timeoutMs = 1000): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      {
        host: LOOPBACK,
        port,
        method,
        path: urlPath,
        agent: false, // no keep-alive sockets left behind
        headers: body === undefined ? {} : { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) },
      },
      (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => (text += chunk));
        res.on('end', () => {
          clearTimeout(timer);
          try {
            resolve(JSON.parse(text) as unknown);
          } catch {
            reject(new Error(`bad JSON from ${urlPath}: ${text.slice(0, 200)}`));
          }
        });
        res.on('error', reject);
      },
    );
    const timer = setTimeout(() => req.destroy(new Error(`timeout on ${urlPath}`)), timeoutMs);
    req.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    req.end(body);
  });
}

async function etcdReady(port: number): Promise<boolean> {
  try {
    // /health answers true only with a leader and a served read: ready for clients.
    const health = (await httpJson(port, 'GET', '/health')) as { health?: unknown };
    return health.health === 'true' || health.health === true;
  } catch {
    return false;
  }
}

// ---------------------------------------------------------------------------------------------------------------
// One managed server process

interface LaunchSpec {
  name: string;
  port: number;
  url: string;
  dir: string;
  startTimeoutMs: number;
  /** Writes config files / creates data folders; runs before every start (the folder may have been removed). */
  prepare(): void;
  /** Start it in a process group of its own and signal the whole group (servers that fork workers). */
  processGroup?: boolean;
  command(): { file: string; args: string[]; env?: NodeJS.ProcessEnv };
  ready(): Promise<boolean>;
}

class StartupError extends Error {
  constructor(
    message: string,
    readonly addressInUse: boolean,
  ) {
    super(message);
    this.name = 'StartupError';
  }
}

const ADDRESS_IN_USE = /address already in use|EADDRINUSE|BindException/i;

class ManagedServer implements ServerHandle {
  readonly host = LOOPBACK;
  readonly url: string;
  readonly port: number;
  readonly dir: string;
  readonly logFile: string;
  private child: ChildProcess | undefined;
  private alive = false;
  private exited: Promise<void> = Promise.resolve();
  private exitInfo = '';
  private removed = false;

  constructor(private readonly spec: LaunchSpec) {
    this.url = spec.url;
    this.port = spec.port;
    this.dir = spec.dir;
    this.logFile = path.join(spec.dir, 'server.log');
  }

  get pid(): number {
    return this.child?.pid ?? -1;
  }

  #target(pid: number): number {
    return this.spec.processGroup ? -pid : pid;
  }

  get running(): boolean {
    return this.alive;
  }

  /** Spawns and waits for readiness; on failure the process is killed and the error carries the log tail. */
  async start(): Promise<void> {
    installExitHooks();
    if (this.removed) {
      fs.mkdirSync(this.dir, { recursive: true });
      tempDirs.add(this.dir);
      this.removed = false;
    }
    this.spec.prepare();
    const { file, args, env } = this.spec.command();
    fs.appendFileSync(this.logFile, `\n=== ${new Date().toISOString()} ${file} ${args.join(' ')}\n`);
    const out = fs.openSync(this.logFile, 'a');
    let child: ChildProcess;
    try {
      child = spawn(file, args, {
        cwd: this.dir,
        env: env ?? process.env,
        stdio: ['ignore', out, out],
        detached: this.spec.processGroup === true,
      });
    } finally {
      fs.closeSync(out);
    }
    this.child = child;
    this.alive = true;
    this.exitInfo = '';
    liveChildren.add(child);
    if (this.spec.processGroup) groupLeaders.add(child);
    this.exited = new Promise<void>((resolve) => {
      const onGone = (info: string): void => {
        this.exitInfo = info;
        liveChildren.delete(child);
        groupLeaders.delete(child);
        if (this.child === child) this.alive = false;
        resolve();
      };
      child.once('exit', (code, signal) => onGone(signal ? `killed by ${signal}` : `exit code ${code}`));
      child.once('error', (err) => onGone(`spawn error: ${err.message}`));
    });

    const started = performance.now();
    const deadline = started + this.spec.startTimeoutMs;
    while (performance.now() < deadline) {
      if (!this.alive || this.child !== child) break;
      if (await this.spec.ready()) return;
      await sleep(50);
    }
    const died = !this.alive;
    const why = died ? `exited during startup (${this.exitInfo})` : `not ready within ${this.spec.startTimeoutMs} ms`;
    if (!died) await this.kill();
    const tail = logTail(this.logFile);
    throw new StartupError(
      `${this.spec.name} on ${this.host}:${this.port} ${why}; last lines of ${this.logFile}:\n${tail}`,
      ADDRESS_IN_USE.test(tail),
    );
  }

  async stop(): Promise<void> {
    if (this.alive && this.child?.pid !== undefined) {
      const pid = this.#target(this.child.pid);
      signal(pid, 'SIGTERM');
      signal(pid, 'SIGCONT'); // a SIGSTOPped process would otherwise never act on SIGTERM
      const timer = setTimeout(() => signal(pid, 'SIGKILL'), 10_000);
      await this.exited;
      clearTimeout(timer);
    }
    await this.exited;
    if (!this.removed) {
      this.removed = true;
      tempDirs.delete(this.dir);
      if (!process.env.CONCORD_KEEP_TMP) await fs.promises.rm(this.dir, { recursive: true, force: true });
    }
  }

  async kill(): Promise<void> {
    if (this.alive && this.child?.pid !== undefined) signal(this.#target(this.child.pid), 'SIGKILL');
    await this.exited;
    // The workers of a group may outlive their leader by a moment; a restart must not meet them.
    if (this.spec.processGroup && this.child?.pid !== undefined) await waitForGroupGone(this.child.pid);
  }

  pause(): void {
    if (!this.alive || this.child?.pid === undefined) throw new Error(`${this.spec.name} is not running`);
    signal(this.#target(this.child.pid), 'SIGSTOP');
    waitUntilStopped(this.child.pid, `${this.spec.name} (pid ${this.child.pid})`);
  }

  resume(): void {
    if (this.alive && this.child?.pid !== undefined) signal(this.#target(this.child.pid), 'SIGCONT');
  }

  async restart(): Promise<void> {
    await this.kill();
    // The port is ours, but a connection in the kernel's hands can briefly hold it: retry a few times.
    for (let attempt = 1; ; attempt++) {
      try {
        await this.start();
        return;
      } catch (err) {
        if (!(err instanceof StartupError && err.addressInUse) || attempt >= 5) throw err;
        await sleep(200 * attempt);
      }
    }
  }
}

/**
 * Blocks until every thread of `pid` is stopped. kill(SIGSTOP) only queues the signal and wakes one thread, which
 * then stops the others: on a busy machine the rest of an etcd or a JVM kept serving requests for a while after
 * kill() returned (measured here: 9 of 150 requests sent right after SIGSTOP were answered).
 */
function waitUntilStopped(pid: number, what: string, timeoutMs = 5000): void {
  const deadline = performance.now() + timeoutMs;
  const nap = new Int32Array(new SharedArrayBuffer(4));
  while (!allThreadsStopped(pid)) {
    if (performance.now() > deadline) throw new Error(`${what} did not stop within ${timeoutMs} ms of SIGSTOP`);
    Atomics.wait(nap, 0, 0, 1); // a synchronous 1 ms sleep: pause() is synchronous by contract
  }
}

function allThreadsStopped(pid: number): boolean {
  let tasks: string[];
  try {
    tasks = fs.readdirSync(`/proc/${pid}/task`);
  } catch {
    return true; // gone, or no procfs (not Linux): nothing to wait for
  }
  for (const task of tasks) {
    let stat: string;
    try {
      stat = fs.readFileSync(`/proc/${pid}/task/${task}/stat`, 'utf8');
    } catch {
      continue; // the thread exited meanwhile
    }
    // The state follows the command name, which is in parentheses and may itself contain ') '.
    const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
    if (state !== 'T' && state !== 't' && state !== 'Z' && state !== 'X') return false;
  }
  return true;
}

/** Whether a process of group `pgid` still runs (zombies, which hold nothing, do not count). */
function groupAlive(pgid: number): boolean {
  let pids: string[];
  try {
    pids = fs.readdirSync('/proc').filter((name) => /^\d+$/.test(name));
  } catch {
    try {
      process.kill(-pgid, 0);
      return true;
    } catch {
      return false;
    }
  }
  for (const pid of pids) {
    let stat: string;
    try {
      stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    } catch {
      continue;
    }
    // After the parenthesised command: state, ppid, pgrp.
    const [state, , pgrp] = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    if (Number(pgrp) === pgid && state !== 'Z' && state !== 'X') return true;
  }
  return false;
}

/** Resolves once no process of the group `pgid` runs. */
async function waitForGroupGone(pgid: number, timeoutMs = 10_000): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (groupAlive(pgid)) {
    if (performance.now() > deadline) throw new Error(`process group ${pgid} still alive ${timeoutMs} ms after SIGKILL`);
    await sleep(20);
  }
}

function signal(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(pid, sig);
  } catch {
    // the process is already gone
  }
}

/** Fresh ports for a first start: another process may grab a port between freePort() and the bind, so retry. */
async function startWithFreshPorts<T>(attempts: number, launch: () => Promise<T>): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await launch();
    } catch (err) {
      if (!(err instanceof StartupError && err.addressInUse) || attempt >= attempts) throw err;
    }
  }
}

async function launch(spec: LaunchSpec): Promise<ManagedServer> {
  const server = new ManagedServer(spec);
  try {
    await server.start();
    return server;
  } catch (err) {
    await server.stop();
    throw err;
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Redis

export interface RedisOptions {
  /** AOF with fsync always, so acknowledged writes survive kill() + restart(). Default false: no persistence. */
  persistence?: boolean;
  /** More redis-server options, after the defaults (a later option wins), e.g. `['--cluster-enabled', 'yes']`. */
  args?: readonly string[];
}

export function startRedis(opts: RedisOptions = {}): Promise<ServerHandle> {
  const bin = firstBinary(REDIS_BIN);
  if (!bin) throw new Error(`redis-server not found: ${INSTALL_HINTS.redis}`);
  return startWithFreshPorts(3, async () => {
    const port = await freePort();
    const dir = makeTempDir('redis');
    return launch({
      name: 'redis-server',
      port,
      url: `redis://${LOOPBACK}:${port}`,
      dir,
      startTimeoutMs: 10_000,
      prepare: () => undefined,
      command: () => ({
        file: bin,
        // No config file: only these flags apply, whatever /etc/redis/redis.conf says.
        args: [
          '--port',
          String(port),
          '--bind',
          LOOPBACK,
          '--dir',
          dir,
          '--daemonize',
          'no',
          '--logfile',
          '',
          '--save',
          '',
          '--appendonly',
          opts.persistence ? 'yes' : 'no',
          '--appendfsync',
          'always',
          '--enable-debug-command',
          'local', // lets tests use DEBUG SLEEP and friends
          ...(opts.args ?? []),
        ],
      }),
      ready: () => redisReady(port),
    });
  });
}

/**
 * A redis-server replicating from `master` (a FaultProxy in front of the master stages replication lag). The replica
 * tells the master its own listening port, so a Sentinel watching the master finds it at 127.0.0.1:port directly.
 */
export function startRedisReplica(master: { host: string; port: number }): Promise<ServerHandle> {
  const bin = firstBinary(REDIS_BIN);
  if (!bin) throw new Error(`redis-server not found: ${INSTALL_HINTS.redis}`);
  return startWithFreshPorts(3, async () => {
    const port = await freePort();
    const dir = makeTempDir('redis-replica');
    return launch({
      name: 'redis-server (replica)',
      port,
      url: `redis://${LOOPBACK}:${port}`,
      dir,
      startTimeoutMs: 10_000,
      prepare: () => undefined,
      command: () => ({
        file: bin,
        args: [
          '--port',
          String(port),
          '--bind',
          LOOPBACK,
          '--dir',
          dir,
          '--daemonize',
          'no',
          '--logfile',
          '',
          '--save',
          '',
          '--appendonly',
          'no',
          '--replicaof',
          master.host,
          String(master.port),
          '--enable-debug-command',
          'local',
        ],
      }),
      ready: () => redisReady(port),
    });
  });
}

export interface SentinelOptions {
  /** How long the master must be unreachable before it is judged down (sentinel down-after-milliseconds). */
  downAfterMs?: number;
  /** sentinel failover-timeout. */
  failoverTimeoutMs?: number;
}

/** A Redis Sentinel (quorum 1) watching `master` under `name`; its url is `redis+sentinel://127.0.0.1:PORT/NAME`. */
export function startSentinel(name: string, master: { host: string; port: number }, opts: SentinelOptions = {}): Promise<ServerHandle> {
  const bin = firstBinary(REDIS_BIN);
  if (!bin) throw new Error(`redis-server not found: ${INSTALL_HINTS.redis}`);
  return startWithFreshPorts(3, async () => {
    const port = await freePort();
    const dir = makeTempDir('redis-sentinel');
    const conf = path.join(dir, 'sentinel.conf');
    return launch({
      name: 'redis-sentinel',
      port,
      url: `redis+sentinel://${LOOPBACK}:${port}/${name}`,
      dir,
      startTimeoutMs: 10_000,
      // Sentinel rewrites its config file as it learns: each start begins from the same one.
      prepare: () => {
        fs.writeFileSync(
          conf,
          [
            `port ${port}`,
            `bind ${LOOPBACK}`,
            `dir ${dir}`,
            `sentinel monitor ${name} ${master.host} ${master.port} 1`,
            `sentinel down-after-milliseconds ${name} ${opts.downAfterMs ?? 1000}`,
            `sentinel failover-timeout ${name} ${opts.failoverTimeoutMs ?? 10_000}`,
            '',
          ].join('\n'),
        );
      },
      command: () => ({ file: bin, args: [conf, '--sentinel'] }),
      ready: () => redisReady(port),
    });
  });
}

// ---------------------------------------------------------------------------------------------------------------
// etcd

export interface EtcdOptions {
  /** Raft heartbeat in ms (etcd default 100; startEtcd's default 50). */
  heartbeatMs?: number;
  /** Raft election timeout in ms (etcd default 1000, startEtcd's default 500): how long a dead leader goes unnoticed. */
  electionMs?: number;
}

interface EtcdMemberSpec {
  name: string;
  clientPort: number;
  peerPort: number;
}

function etcdEnv(): NodeJS.ProcessEnv {
  // ETCD_* variables in the environment would override our flags.
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('ETCD_')) env[k] = v;
  return env;
}

function etcdSpec(
  bin: string,
  member: EtcdMemberSpec,
  all: readonly EtcdMemberSpec[],
  token: string,
  dir: string,
  opts: EtcdOptions,
): LaunchSpec {
  const peer = (m: EtcdMemberSpec): string => `http://${LOOPBACK}:${m.peerPort}`;
  const client = `http://${LOOPBACK}:${member.clientPort}`;
  return {
    name: `etcd ${member.name}`,
    port: member.clientPort,
    url: `etcd://${LOOPBACK}:${member.clientPort}`,
    dir,
    startTimeoutMs: 10_000,
    prepare: () => undefined,
    command: () => ({
      file: bin,
      env: etcdEnv(),
      args: [
        '--name',
        member.name,
        '--data-dir',
        path.join(dir, 'data'),
        '--listen-client-urls',
        client,
        '--advertise-client-urls',
        client,
        '--listen-peer-urls',
        peer(member),
        '--initial-advertise-peer-urls',
        peer(member),
        '--initial-cluster',
        all.map((m) => `${m.name}=${peer(m)}`).join(','),
        '--initial-cluster-token',
        token,
        '--initial-cluster-state',
        'new', // ignored on restart, when the data folder already exists
        '--heartbeat-interval',
        String(opts.heartbeatMs ?? 100),
        '--election-timeout',
        String(opts.electionMs ?? 1000),
        '--logger',
        'zap',
        '--log-outputs',
        'stderr',
        '--log-level',
        'warn',
      ],
    }),
    ready: () => etcdReady(member.clientPort),
  };
}

export function startEtcd(opts: EtcdOptions = {}): Promise<ServerHandle> {
  const bin = firstBinary(ETCD_BIN);
  if (!bin) throw new Error(`etcd not found: ${INSTALL_HINTS.etcd}`);
  return startWithFreshPorts(3, async () => {
    const member = { name: 'm0', clientPort: await freePort(), peerPort: await freePort() };
    const token = `concord-${process.pid}-${member.clientPort}`;
    // Alone, a member waits one election timeout to elect itself after a restart, and has nobody to disagree with:
    // a short timeout makes restart() about twice as fast at no cost.
    const timing = { heartbeatMs: 50, electionMs: 500, ...opts };
    return launch(etcdSpec(bin, member, [member], token, makeTempDir('etcd'), timing));
  });
}

export interface EtcdCluster {
  /** `etcd://127.0.0.1:p1,127.0.0.1:p2,...` */
  readonly url: string;
  /** `http://127.0.0.1:pN` for each member, in member order (the form the etcd3 package wants). */
  readonly endpoints: readonly string[];
  readonly members: readonly ServerHandle[];
  /** Index of the member that currently leads; waits (up to timeoutMs) while an election is in progress. */
  leader(timeoutMs?: number): Promise<number>;
  /** Kills every member and removes their folders (fast: a graceful stop of all members at once takes ~7 s). */
  stop(): Promise<void>;
}

interface StatusReply {
  header?: { member_id?: string };
  leader?: string;
}

export function startEtcdCluster(n = 3, opts: EtcdOptions = {}): Promise<EtcdCluster> {
  const bin = firstBinary(ETCD_BIN);
  if (!bin) throw new Error(`etcd not found: ${INSTALL_HINTS.etcd}`);
  return startWithFreshPorts(3, async () => {
    const specs: EtcdMemberSpec[] = [];
    for (let i = 0; i < n; i++) specs.push({ name: `m${i}`, clientPort: await freePort(), peerPort: await freePort() });
    const token = `concord-${process.pid}-${specs[0]?.clientPort ?? 0}`;
    const members = specs.map((m) => new ManagedServer(etcdSpec(bin, m, specs, token, makeTempDir('etcd'), opts)));
    // Start all at once: no member is healthy before a quorum is up.
    const results = await Promise.allSettled(members.map((m) => m.start()));
    const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed) {
      await Promise.all(members.map((m) => m.kill()));
      await Promise.all(members.map((m) => m.stop()));
      throw failed.reason;
    }

    const leader = async (timeoutMs = 10_000): Promise<number> => {
      const deadline = performance.now() + timeoutMs;
      for (;;) {
        const ids = new Map<string, number>();
        const leaders: string[] = [];
        await Promise.all(
          members.map(async (m, index) => {
            if (!m.running) return;
            try {
              const status = (await httpJson(m.port, 'POST', '/v3/maintenance/status', '{}')) as StatusReply;
              if (status.header?.member_id) ids.set(status.header.member_id, index);
              if (status.leader && status.leader !== '0') leaders.push(status.leader);
            } catch {
              // paused or dying member: ask the others
            }
          }),
        );
        for (const id of leaders) {
          const index = ids.get(id);
          if (index !== undefined && members[index]?.running) return index;
        }
        if (performance.now() > deadline) throw new Error(`no etcd leader within ${timeoutMs} ms`);
        await sleep(50);
      }
    };

    return {
      url: `etcd://${specs.map((m) => `${LOOPBACK}:${m.clientPort}`).join(',')}`,
      endpoints: specs.map((m) => `http://${LOOPBACK}:${m.clientPort}`),
      members,
      leader,
      stop: async () => {
        // SIGKILL first: members stopping gracefully together wait on each other for etcd's request timeout (~7 s).
        await Promise.all(members.map((m) => m.kill()));
        await Promise.all(members.map((m) => m.stop()));
      },
    };
  });
}

/** Path of etcdctl, if installed (handy for debugging a cluster by hand). */
export function etcdctlBinary(): string | undefined {
  return firstBinary(ETCDCTL_BIN);
}

// ---------------------------------------------------------------------------------------------------------------
// ZooKeeper

// What QuorumPeerMain needs in standalone mode. A classpath of every jar in /usr/share/java also works but starts
// slower and puts several SLF4J bindings on it (which one wins is arbitrary).
const ZK_JARS = [
  'zookeeper.jar',
  'zookeeper-jute.jar',
  'slf4j-api.jar',
  'slf4j-simple.jar',
  'metrics-core.jar',
  'commons-cli.jar',
  'snappy-java.jar',
  'netty-buffer.jar',
  'netty-codec.jar',
  'netty-common.jar',
  'netty-handler.jar',
  'netty-resolver.jar',
  'netty-transport.jar',
  'netty-transport-native-epoll.jar',
  'netty-transport-native-unix-common.jar',
];

function zookeeperClasspath(jarDir: string): string {
  const minimal = ZK_JARS.map((jar) => path.join(jarDir, jar));
  if (minimal.every((jar) => fs.existsSync(jar))) return minimal.join(path.delimiter);
  const all = fs
    .readdirSync(jarDir)
    .filter((f) => f.endsWith('.jar'))
    .map((f) => path.join(jarDir, f));
  return ['/etc/zookeeper/conf', ...all].join(path.delimiter);
}

export interface ZooKeeperOptions {
  /** ms; sessions may be 2x..20x this long (minSessionTimeout is pinned to 1000 ms below). Default 500. */
  tickTime?: number;
}

interface ZooKeeperMemberSpec {
  /** 1-based, as ZooKeeper's myid. */
  id: number;
  clientPort: number;
  quorumPort: number;
  electionPort: number;
}

function zookeeperSpec(member: ZooKeeperMemberSpec, all: readonly ZooKeeperMemberSpec[], dir: string, tickTime: number): LaunchSpec {
  const jarDir = zookeeperJarDir();
  const java = javaBinary();
  if (!jarDir || !java) throw new Error(`zookeeper not found: ${INSTALL_HINTS.zookeeper}`);
  const classpath = zookeeperClasspath(jarDir);
  const cfg = path.join(dir, 'zoo.cfg');
  const ensemble = all.length > 1;
  return {
    name: ensemble ? `zookeeper ${member.id}` : 'zookeeper',
    port: member.clientPort,
    url: `zookeeper://${LOOPBACK}:${member.clientPort}`,
    dir,
    startTimeoutMs: ensemble ? 60_000 : 20_000,
    prepare: () => {
      fs.mkdirSync(path.join(dir, 'data'), { recursive: true });
      if (ensemble) fs.writeFileSync(path.join(dir, 'data', 'myid'), `${member.id}\n`);
      fs.writeFileSync(
        cfg,
        [
          `tickTime=${tickTime}`,
          `dataDir=${path.join(dir, 'data')}`,
          `clientPort=${member.clientPort}`,
          `clientPortAddress=${LOOPBACK}`,
          'minSessionTimeout=1000',
          'maxSessionTimeout=60000',
          'maxClientCnxns=0',
          'admin.enableServer=false',
          '4lw.commands.whitelist=ruok,srvr,stat,mntr,cons,dump',
          // The txn log still reaches the page cache, which survives SIGKILL; only an OS crash could lose it.
          'forceSync=no',
          'autopurge.purgeInterval=0',
          ...(ensemble
            ? ['initLimit=20', 'syncLimit=4', ...all.map((m) => `server.${m.id}=${LOOPBACK}:${m.quorumPort}:${m.electionPort}`)]
            : []),
          '',
        ].join('\n'),
      );
    },
    command: () => ({
      file: java,
      args: [
        '-Xms32m',
        '-Xmx256m',
        '-XX:+UseSerialGC',
        '-XX:TieredStopAtLevel=1', // C1 only: starts faster, fast enough for tests
        '-Djava.net.preferIPv4Stack=true',
        '-Dorg.slf4j.simpleLogger.defaultLogLevel=warn',
        '-Dorg.slf4j.simpleLogger.showDateTime=true',
        '-Dzookeeper.jmx.log4j.disable=true',
        '-cp',
        classpath,
        'org.apache.zookeeper.server.quorum.QuorumPeerMain',
        cfg,
      ],
    }),
    ready: () => zookeeperReady(member.clientPort),
  };
}

export function startZooKeeper(opts: ZooKeeperOptions = {}): Promise<ServerHandle> {
  const tickTime = opts.tickTime ?? 500;
  return startWithFreshPorts(3, async () => {
    const member = { id: 1, clientPort: await freePort(), quorumPort: 0, electionPort: 0 };
    return launch(zookeeperSpec(member, [member], makeTempDir('zookeeper'), tickTime));
  });
}

export interface ZooKeeperEnsemble {
  /** `zookeeper://127.0.0.1:p1,127.0.0.1:p2,...` */
  readonly url: string;
  readonly members: readonly ServerHandle[];
  /** Index of the member that leads now; waits (up to timeoutMs) while an election is in progress. */
  leader(timeoutMs?: number): Promise<number>;
  /** Kills every member and removes their folders. */
  stop(): Promise<void>;
}

/** n ZooKeeper servers forming one ensemble on loopback ports (a quorum elects a leader in a few seconds). */
export function startZooKeeperEnsemble(n = 3, opts: ZooKeeperOptions = {}): Promise<ZooKeeperEnsemble> {
  const tickTime = opts.tickTime ?? 500;
  return startWithFreshPorts(3, async () => {
    const specs: ZooKeeperMemberSpec[] = [];
    for (let id = 1; id <= n; id++) {
      specs.push({ id, clientPort: await freePort(), quorumPort: await freePort(), electionPort: await freePort() });
    }
    const members = specs.map((m) => new ManagedServer(zookeeperSpec(m, specs, makeTempDir('zookeeper'), tickTime)));
    // Start all at once: no member serves before a quorum is up.
    const results = await Promise.allSettled(members.map((m) => m.start()));
    const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed) {
      await Promise.all(members.map((m) => m.kill()));
      await Promise.all(members.map((m) => m.stop()));
      throw failed.reason;
    }
    const leader = async (timeoutMs = 20_000): Promise<number> => {
      const deadline = performance.now() + timeoutMs;
      for (;;) {
        const modes = await Promise.all(
          members.map((m) => (m.running ? fourLetterWord(m.port, 'srvr').catch(() => '') : Promise.resolve(''))),
        );
        const index = modes.findIndex((reply) => /^Mode: leader/m.test(reply));
        if (index >= 0) return index;
        if (performance.now() > deadline) throw new Error(`no ZooKeeper leader within ${timeoutMs} ms`);
        await sleep(50);
      }
    };
    return {
      url: `zookeeper://${specs.map((m) => `${LOOPBACK}:${m.clientPort}`).join(',')}`,
      members,
      leader,
      stop: async () => {
        await Promise.all(members.map((m) => m.kill()));
        await Promise.all(members.map((m) => m.stop()));
      },
    };
  });
}

// ---------------------------------------------------------------------------------------------------------------
// Private PostgreSQL and MariaDB servers, for tests that kill or restart the database (the machine's own stay up)

/** uid and gid of a system user, from /etc/passwd. */
function systemUser(name: string): { uid: number; gid: number } | undefined {
  try {
    for (const line of fs.readFileSync('/etc/passwd', 'utf8').split('\n')) {
      const [user, , uid, gid] = line.split(':');
      if (user === name) return { uid: Number(uid), gid: Number(gid) };
    }
  } catch {
    // no passwd file
  }
  return undefined;
}

/** PostgreSQL refuses to run as root, and mariadb-install-db wants a user: as root, servers run as their system user. */
function owner(name: string, dir: string): { uid: number; gid: number } | undefined {
  if (process.getuid?.() !== 0) return undefined;
  const user = systemUser(name);
  if (!user) throw new Error(`running as root, and there is no "${name}" user to run the server as`);
  fs.chownSync(dir, user.uid, user.gid);
  return user;
}

function runAs(user: { uid: number; gid: number } | undefined, file: string, args: string[]): { file: string; args: string[] } {
  if (!user) return { file, args };
  return { file: 'setpriv', args: [`--reuid=${user.uid}`, `--regid=${user.gid}`, '--clear-groups', '--', file, ...args] };
}

function runSync(file: string, args: string[], what: string, logFile: string): void {
  const result = spawnSync(file, args, { encoding: 'utf8', timeout: 120_000 });
  fs.appendFileSync(logFile, `=== ${what}: ${file} ${args.join(' ')}\n${result.stdout}${result.stderr}`);
  if (result.status !== 0)
    throw new Error(`${what} failed (${result.error?.message ?? `exit ${String(result.status)}`}):\n${logTail(logFile)}`);
}

function postgresBinDir(): string | undefined {
  const root = '/usr/lib/postgresql';
  try {
    const versions = fs
      .readdirSync(root)
      .filter((v) => fs.existsSync(path.join(root, v, 'bin', 'postgres')))
      .sort((a, b) => Number(b) - Number(a));
    if (versions[0] !== undefined) return path.join(root, versions[0], 'bin');
  } catch {
    // not the Debian layout
  }
  const onPath = findBinary('postgres');
  return onPath === undefined ? undefined : path.dirname(onPath);
}

function postgresReady(bin: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const child = spawn(path.join(bin, 'pg_isready'), ['-q', '-h', LOOPBACK, '-p', String(port), '-t', '1'], { stdio: 'ignore' });
    child.once('error', () => resolve(false));
    child.once('exit', (code) => resolve(code === 0));
  });
}

/** A server certificate and its key (PEM files); the server gets copies in its own folder, the key at mode 0600. */
export interface ServerTls {
  readonly cert: string;
  readonly key: string;
  /** CA file the server trusts for client certificates. */
  readonly ca?: string;
}

/** Copies the TLS files into a server's folder, owned by the user it runs as (servers refuse a key others can read). */
function installTls(tls: ServerTls, dir: string, user: { uid: number; gid: number } | undefined): void {
  const copy = (from: string, name: string, mode: number): void => {
    const to = path.join(dir, name);
    fs.copyFileSync(from, to);
    fs.chmodSync(to, mode);
    if (user) fs.chownSync(to, user.uid, user.gid);
  };
  copy(tls.cert, 'tls-cert.pem', 0o644);
  copy(tls.key, 'tls-key.pem', 0o600);
  if (tls.ca !== undefined) copy(tls.ca, 'tls-ca.pem', 0o644);
}

export interface PostgresOptions {
  /** Serve TLS (ssl=on) with this certificate; clients may still connect without. */
  tls?: ServerTls;
  /** pg_hba.conf lines put before initdb's own (which trust every local and loopback connection). */
  hba?: readonly string[];
  /** More postgres options, after the defaults (a later `-c` wins), e.g. `['-c', 'max_connections=3000']`. */
  args?: readonly string[];
}

/**
 * A PostgreSQL server of its own (initdb in a temporary folder, trust authentication, database `postgres`), with the
 * server's default durability. kill() takes the postmaster and every backend down at once, as a crash would.
 */
export function startPostgres(opts: PostgresOptions = {}): Promise<ServerHandle> {
  const bin = postgresBinDir();
  if (!bin) throw new Error(`postgres not found: ${INSTALL_HINTS.postgres}`);
  return startWithFreshPorts(3, async () => {
    const port = await freePort();
    const dir = makeTempDir('postgres');
    const user = owner('postgres', dir);
    const data = path.join(dir, 'data');
    return launch({
      name: 'postgres',
      port,
      url: `postgres://postgres@${LOOPBACK}:${port}/postgres`,
      dir,
      startTimeoutMs: 30_000,
      processGroup: true,
      prepare: () => {
        if (opts.tls) installTls(opts.tls, dir, user);
        if (fs.existsSync(path.join(data, 'PG_VERSION'))) return;
        const initdb = ['-D', data, '-U', 'postgres', '-A', 'trust', '-E', 'UTF8', '--locale=C', '--no-sync'];
        const { file, args } = runAs(user, path.join(bin, 'initdb'), initdb);
        runSync(file, args, 'initdb', path.join(dir, 'server.log'));
        if (opts.hba?.length) {
          // The first matching line wins: these go first.
          const hba = path.join(data, 'pg_hba.conf');
          fs.writeFileSync(hba, `${opts.hba.join('\n')}\n${fs.readFileSync(hba, 'utf8')}`);
        }
      },
      command: () =>
        runAs(user, path.join(bin, 'postgres'), [
          '-D',
          data,
          '-p',
          String(port),
          '-c',
          `listen_addresses=${LOOPBACK}`,
          '-c',
          `unix_socket_directories=${dir}`,
          '-c',
          'max_connections=60',
          '-c',
          'shared_buffers=16MB',
          ...(opts.tls
            ? [
                '-c',
                'ssl=on',
                '-c',
                `ssl_cert_file=${path.join(dir, 'tls-cert.pem')}`,
                '-c',
                `ssl_key_file=${path.join(dir, 'tls-key.pem')}`,
                ...(opts.tls.ca !== undefined ? ['-c', `ssl_ca_file=${path.join(dir, 'tls-ca.pem')}`] : []),
              ]
            : []),
          ...(opts.args ?? []),
        ]),
      ready: () => postgresReady(bin, port),
    });
  });
}

async function mariadbReady(port: number): Promise<boolean> {
  // The greeting packet: protocol version 10 after the 4-byte header (an error packet starts with 0xff).
  const greeting = await tcpExchange(port, '', (r) => r.length > 5);
  return greeting.length > 5 && greeting.charCodeAt(4) === 10;
}

export interface MariadbOptions {
  /** Serve TLS with this certificate (--ssl-cert, --ssl-key, --ssl-ca); clients may still connect without. */
  tls?: ServerTls;
  /** More mariadbd options, after the defaults (a later option wins). */
  args?: readonly string[];
}

/**
 * A MariaDB server of its own (mariadb-install-db in a temporary folder; root without a password over TCP, database
 * `test`), with the server's default durability (InnoDB flushes its log at each commit).
 */
export function startMariadb(opts: MariadbOptions = {}): Promise<ServerHandle> {
  const bin = firstBinary(MYSQL_BIN);
  const install = firstBinary(['mariadb-install-db', 'mysql_install_db']);
  if (!bin || !install) throw new Error(`mariadbd not found: ${INSTALL_HINTS.mysql}`);
  return startWithFreshPorts(3, async () => {
    const port = await freePort();
    const dir = makeTempDir('mariadb');
    const user = owner('mysql', dir);
    const data = path.join(dir, 'data');
    const tmp = path.join(dir, 'tmp');
    const init = path.join(dir, 'init.sql');
    const asUser = user ? ['--user=mysql'] : [];
    return launch({
      name: 'mariadbd',
      port,
      url: `mysql://root@${LOOPBACK}:${port}/test`,
      dir,
      startTimeoutMs: 60_000,
      prepare: () => {
        fs.writeFileSync(
          init,
          [
            "CREATE USER IF NOT EXISTS 'root'@'127.0.0.1';",
            "GRANT ALL PRIVILEGES ON *.* TO 'root'@'127.0.0.1' WITH GRANT OPTION;",
            'CREATE DATABASE IF NOT EXISTS test;',
            '',
          ].join('\n'),
        );
        if (user) fs.chownSync(init, user.uid, user.gid);
        // A temporary folder of its own: a server starting up deletes the leftover temporary tables of its tmpdir,
        // and with /tmp shared that was another server's bootstrap ("Unknown table 'mysql.tmp_user_sys'").
        fs.mkdirSync(tmp, { recursive: true });
        if (user) fs.chownSync(tmp, user.uid, user.gid);
        if (opts.tls) installTls(opts.tls, dir, user);
        if (fs.existsSync(path.join(data, 'mysql'))) return;
        const args = [
          '--no-defaults',
          `--datadir=${data}`,
          `--tmpdir=${tmp}`,
          '--auth-root-authentication-method=normal',
          '--skip-test-db',
          ...asUser,
        ];
        runSync(install, args, 'mariadb-install-db', path.join(dir, 'server.log'));
      },
      command: () => ({
        file: bin,
        args: [
          '--no-defaults',
          `--datadir=${data}`,
          `--tmpdir=${tmp}`,
          `--port=${port}`,
          `--bind-address=${LOOPBACK}`,
          `--socket=${path.join(dir, 'mysqld.sock')}`,
          `--pid-file=${path.join(dir, 'mysqld.pid')}`,
          `--init-file=${init}`,
          '--skip-name-resolve',
          '--performance-schema=OFF',
          '--innodb-buffer-pool-size=32M',
          '--innodb-use-native-aio=0',
          '--max-connections=200',
          ...(opts.tls
            ? [
                `--ssl-cert=${path.join(dir, 'tls-cert.pem')}`,
                `--ssl-key=${path.join(dir, 'tls-key.pem')}`,
                ...(opts.tls.ca !== undefined ? [`--ssl-ca=${path.join(dir, 'tls-ca.pem')}`] : []),
              ]
            : []),
          ...asUser,
          ...(opts.args ?? []),
        ],
      }),
      ready: () => mariadbReady(port),
    });
  });
}
