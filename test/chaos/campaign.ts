/**
 * One chaos campaign: start the backend, start the clients, run the nemesis over the workload for the given time,
 * heal, quiesce, judge convergence, stop everything, then run the checkers over the recorded history.
 *
 * The harness keeps the fenced register and answers every write at once; it is the one place that sees writes in
 * the order a storage would. The history (each client incarnation's file, the register's log, the nemesis's log and
 * the schedule) goes to a folder that is kept when an anomaly is found (or when asked to), and removed otherwise.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, readFileSync, readdirSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { checkAll, type Anomaly, type ConvergenceOutcome, type ProcOutcome } from './checkers.js';
import { DRIVERS, type Backend } from './drivers.js';
import { Nemesis } from './nemesis.js';
import {
  finalRoles,
  type ClientConfig,
  type NemesisRecord,
  type Recorded,
  type RegisterWrite,
  type ToClient,
  type ToHarness,
  type UnsafeMode,
  type Views,
} from './protocol.js';
import { FencedRegister } from './register.js';
import { describeEpisode, FAULT_KINDS, planSchedule, type FaultKind } from './schedule.js';

const CLIENT = fileURLToPath(new URL('./client.ts', import.meta.url));

export interface CampaignOptions {
  readonly driver: string;
  readonly seconds: number;
  readonly seed: number;
  /** Client processes (default 4). */
  readonly clients?: number;
  /** Deliberately unsafe behaviour of client 0, for a negative control. */
  readonly unsafe?: UnsafeMode;
  /** Only these faults (default: every fault the driver has). */
  readonly faults?: readonly FaultKind[];
  /** Hot lock names (default 2). */
  readonly locks?: number;
  /** Semaphores of PERMIT_LIMIT permits (default 2), used where the driver has shared locks. */
  readonly semaphores?: number;
  /** Mean pause between a lane's episodes, in TTLs. */
  readonly gapTtl?: number;
  /** How long a stopping client waits for its operations to settle (default 20 s). */
  readonly settleMs?: number;
  /** Where the history goes (default a new temporary folder). */
  readonly dir?: string;
  /** Keep the history folder even without anomalies. */
  readonly keep?: boolean;
  /** Progress lines (default: none). */
  readonly log?: (line: string) => void;
}

export interface CampaignResult {
  readonly driver: string;
  readonly seed: number;
  readonly clients: number;
  readonly seconds: number;
  readonly unsafe: UnsafeMode | undefined;
  readonly startedAt: string;
  /** Wall time of the whole campaign, start-up and shutdown included. */
  readonly elapsedMs: number;
  readonly operations: number;
  /** Per operation: how many ended ok, and failures by code. */
  readonly opsByKind: Record<string, { ok: number; failed: Record<string, number> }>;
  /** Holds recorded: lock holds (of which `shared` were shared), permits and leaderships. */
  readonly holds: { lock: number; shared: number; permit: number; lead: number };
  /** The workload took shared holds and permits (the driver has shared locks). */
  readonly sharedLocks: boolean;
  readonly writes: { accepted: number; refused: number };
  readonly faults: Partial<Record<FaultKind, number>>;
  readonly incarnations: number;
  readonly convergence: ConvergenceOutcome | undefined;
  readonly anomalies: readonly Anomaly[];
  /** The history folder, when kept. */
  readonly dir: string | undefined;
  readonly rerun: string;
  /** The history, for printing excerpts. */
  readonly history: { records: readonly Recorded[]; register: readonly RegisterWrite[]; nemesis: readonly NemesisRecord[] };
}

/** One client index: its current process and the incarnations before it. */
interface Slot {
  readonly index: number;
  incarnation: number;
  proc: string;
  child: ChildProcess | undefined;
  paused: boolean;
  restarting: boolean;
  ready: boolean;
  readonly holding: Set<string>;
  quiet: (() => void) | undefined;
  readonly views: Map<number, (views: Views | { error: string }) => void>;
}

interface Incarnation {
  readonly proc: string;
  killed: boolean;
  done: boolean;
  /** Resolves once the process said it is done (closed, census taken). */
  readonly finished: Promise<void>;
  onDone: () => void;
  exited: Promise<{ code: number | null; signal: string | null }>;
  exit: { code: number | null; signal: string | null } | undefined;
  child: ChildProcess;
}

export function rerunCommand(o: {
  driver: string;
  seconds: number;
  seed: number;
  clients: number;
  unsafe?: UnsafeMode | undefined;
}): string {
  const unsafe = o.unsafe ? ` --unsafe ${o.unsafe}` : '';
  return `npm run chaos -- --driver ${o.driver} --seconds ${o.seconds} --seed ${o.seed} --clients ${o.clients}${unsafe}`;
}

export async function runCampaign(options: CampaignOptions): Promise<CampaignResult> {
  const spec = DRIVERS[options.driver];
  if (!spec) throw new Error(`unknown driver ${options.driver}; known: ${Object.keys(DRIVERS).join(', ')}`);
  const availability = spec.available();
  if (!availability.ok) throw new Error(availability.reason);
  const clients = options.clients ?? 4;
  const log = options.log ?? (() => undefined);
  const faults = (options.faults ?? spec.faults).filter((f) => spec.faults.includes(f));
  for (const f of options.faults ?? [])
    if (!FAULT_KINDS.includes(f) || !spec.faults.includes(f)) throw new Error(`${options.driver} has no fault ${f}`);
  const dir = options.dir ?? mkdtempSync(path.join(tmpdir(), `concord-chaos-${options.driver}-`));
  const started = performance.now();
  const startedAt = new Date().toISOString();
  const epoch = process.hrtime.bigint();
  const now = (): number => Number(process.hrtime.bigint() - epoch);
  const namespace = `chaos${options.seed}x${Math.floor(Math.random() * 1e9).toString(36)}`;

  const registerLog: RegisterWrite[] = [];
  const nemesisLog: NemesisRecord[] = [];
  const registerFd = openSync(path.join(dir, 'register.jsonl'), 'a');
  const nemesisFd = openSync(path.join(dir, 'nemesis.jsonl'), 'a');
  const register = new FencedRegister((w) => {
    registerLog.push(w);
    writeSync(registerFd, `${JSON.stringify(w)}\n`);
  });
  const recordNemesis = (r: NemesisRecord): void => {
    nemesisLog.push(r);
    writeSync(nemesisFd, `${JSON.stringify(r)}\n`);
    log(`nemesis ${r.phase} ${r.detail}`);
  };

  const slots: Slot[] = [];
  const incarnations: Incarnation[] = [];
  let nextViewId = 0;
  let backend: Backend | undefined;
  let convergence: ConvergenceOutcome | undefined;
  let sharedLocks = false;
  const unquiet: string[] = [];
  let readyWaiters: Array<() => void> = [];

  const settleMs = options.settleMs ?? 20_000;
  const spawnClient = async (slot: Slot): Promise<void> => {
    if (!backend) throw new Error('no backend');
    slot.incarnation++;
    slot.proc = `c${slot.index}.${slot.incarnation}`;
    slot.ready = false;
    slot.holding.clear();
    const config: ClientConfig = {
      index: slot.index,
      incarnation: slot.incarnation,
      proc: slot.proc,
      url: await backend.urlFor(slot.index),
      namespace,
      ttlMs: spec.ttlMs,
      seed: options.seed,
      epoch: epoch.toString(),
      history: path.join(dir, `${slot.proc}.jsonl`),
      locks: Array.from({ length: options.locks ?? 2 }, (_, i) => `hot${i}`),
      semaphores: Array.from({ length: options.semaphores ?? 2 }, (_, i) => `pool${i}`),
      unsafe: options.unsafe,
      settleMs,
    };
    const out = openSync(path.join(dir, `${slot.proc}.log`), 'a');
    let child: ChildProcess;
    try {
      child = fork(CLIENT, [JSON.stringify(config)], { execArgv: ['--import', 'tsx'], stdio: ['ignore', out, out, 'ipc'] });
    } finally {
      closeSync(out);
    }
    let onDone = (): void => undefined;
    const finished = new Promise<void>((resolve) => (onDone = resolve));
    const incarnation: Incarnation = {
      proc: slot.proc,
      killed: false,
      done: false,
      finished,
      onDone,
      exit: undefined,
      child,
      exited: new Promise((resolve) => {
        child.once('exit', (code, signal) => {
          incarnation.exit = { code, signal };
          resolve({ code, signal });
        });
      }),
    };
    incarnations.push(incarnation);
    slot.child = child;
    child.on('error', () => undefined); // sends to a dead child: its exit is what counts
    child.on('message', (raw: unknown) => {
      const m = raw as ToHarness;
      if (m.t === 'write') {
        const accepted = register.write(
          { proc: incarnation.proc, hold: m.hold, key: m.key, token: BigInt(m.token), shared: m.shared, seq: m.seq, look: m.look },
          now(),
        );
        tell(child, { t: 'ack', seq: m.seq, accepted });
      } else if (m.t === 'hold') {
        if (slot.child !== child) return;
        if (m.on) slot.holding.add(m.key);
        else slot.holding.delete(m.key);
      } else if (m.t === 'ready') {
        if (m.sharedLocks) sharedLocks = true;
        if (slot.child !== child) return;
        slot.ready = true;
        for (const wake of readyWaiters.splice(0)) wake();
      } else if (m.t === 'quiet') {
        if (slot.child === child) slot.quiet?.();
      } else if (m.t === 'views') {
        const resolve = slot.views.get(m.id);
        slot.views.delete(m.id);
        resolve?.(m.views);
      } else {
        incarnation.done = true;
        incarnation.onDone();
      }
    });
  };

  // Should the harness die, its clients go with it: a stopped (SIGSTOP) one would never hear its channel close.
  const killClients = (): void => {
    for (const inc of incarnations) {
      if (inc.exit) continue;
      inc.child.kill('SIGCONT');
      inc.child.kill('SIGKILL');
    }
  };
  const onSignal = (signal: NodeJS.Signals): void => {
    killClients();
    process.removeListener(signal, onSignal);
    // As servers.ts does: the last listener lets the signal do what it would have done.
    if (process.listenerCount(signal) === 0) process.kill(process.pid, signal);
  };
  process.on('exit', killClients);
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.on(signal, onSignal);

  try {
    log(`starting ${options.driver}`);
    backend = await spec.start(dir);
    for (let index = 0; index < clients; index++) {
      slots.push({
        index,
        incarnation: 0,
        proc: '',
        child: undefined,
        paused: false,
        restarting: false,
        ready: false,
        holding: new Set(),
        quiet: undefined,
        views: new Map(),
      });
    }
    await Promise.all(slots.map((slot) => spawnClient(slot)));
    await waitFor(
      () => slots.every((s) => s.ready),
      (wake) => readyWaiters.push(wake),
      90_000,
      'every client to connect',
    );
    readyWaiters = [];
    log(`${clients} clients connected; workload and nemesis for ${options.seconds} s`);

    const schedule = planSchedule({
      seed: options.seed,
      seconds: options.seconds,
      clients,
      ttlMs: spec.ttlMs,
      faults,
      members: backend.members,
      ...(options.gapTtl === undefined ? {} : { gapTtl: options.gapTtl }),
    });
    writeFileSync(path.join(dir, 'schedule.txt'), `${schedule.map(describeEpisode).join('\n')}\n`);
    const workloadStart = performance.now();
    const elapsed = (): number => performance.now() - workloadStart;
    const active = backend;
    const nemesis = new Nemesis(
      schedule,
      {
        backend: active,
        running: (i) => {
          const s = slots[i];
          return (
            s !== undefined &&
            s.child !== undefined &&
            !s.paused &&
            !s.restarting &&
            s.child.exitCode === null &&
            s.child.signalCode === null
          );
        },
        pause: (i) => {
          const s = slots[i];
          if (!s?.child?.pid) return;
          s.paused = true;
          signalChild(s.child.pid, 'SIGSTOP');
        },
        resume: (i) => {
          const s = slots[i];
          if (!s?.child?.pid) return;
          signalChild(s.child.pid, 'SIGCONT');
          s.paused = false;
        },
        kill: async (i) => {
          const s = slots[i];
          const inc = incarnations.find((x) => x.child === s?.child);
          if (!s || !inc) return;
          s.restarting = true;
          inc.killed = true;
          inc.child.kill('SIGKILL');
          await inc.exited;
        },
        restart: async (i) => {
          const s = slots[i];
          if (!s) return;
          await spawnClient(s);
          s.restarting = false;
        },
        holders: (prefix) =>
          slots
            .filter((s) => !s.paused && !s.restarting && [...s.holding].some((k) => k.startsWith(prefix)))
            .map((s) => s.index)
            .sort((a, b) => a - b),
      },
      recordNemesis,
      now,
      elapsed,
    );
    await nemesis.run(options.seconds * 1000);
    const rest = options.seconds * 1000 - elapsed();
    if (rest > 0) await sleep(rest);
    // Heal whatever is left (every episode heals itself; this is a belt for the braces).
    for (const s of slots) {
      for (const link of active.links(s.index)) link.pass();
      if (s.paused && s.child?.pid) signalChild(s.child.pid, 'SIGCONT');
      s.paused = false;
    }
    recordNemesis({ at: now(), episode: -1, kind: 'heal', phase: 'heal', client: -1, detail: 'the nemesis is done; everything healed' });

    // Quiesce: the workload stops, every client joins with final capabilities and opens a partitioner.
    log('quiescing');
    const quiet = slots.map(
      (s) =>
        new Promise<void>((resolve) => {
          s.quiet = resolve;
          if (s.child) tell(s.child, { t: 'quiesce' });
        }),
    );
    const quietTimeout = 30_000;
    const results = await Promise.all(quiet.map((p) => settledWithin(p, quietTimeout)));
    results.forEach((ok, i) => {
      const s = slots[i];
      if (!ok && s) unquiet.push(s.proc);
    });
    const quietAt = performance.now();
    const allowance = spec.ttlMs + spec.detectionMs + 1000;
    log(`quiet; checking convergence (within ${allowance} ms)`);
    const expected = {
      members: slots
        .filter((s) => finalRoles(s.index).member)
        .map((s) => s.proc)
        .sort(),
      partition: slots
        .filter((s) => finalRoles(s.index).partitioner)
        .map((s) => s.proc)
        .sort(),
    };
    for (;;) {
      const views = await Promise.all(
        slots.map((s) => {
          const child = s.child;
          if (!child) return Promise.resolve<Views | { error: string }>({ error: 'no process' });
          const id = ++nextViewId;
          return withTimeout(
            new Promise<Views | { error: string }>((resolve) => {
              s.views.set(id, resolve);
              tell(child, { t: 'views', id } satisfies ToClient);
            }),
            5000,
            { error: 'no answer within 5 s' },
          );
        }),
      );
      const problems = disagreements(expected, views);
      const waited = performance.now() - quietAt;
      if (problems.length === 0) {
        convergence = { ok: true, ms: Math.round(waited), problems: [], at: now() };
        break;
      }
      if (waited > allowance) {
        convergence = { ok: false, ms: undefined, problems, at: now() };
        break;
      }
      await sleep(100);
    }
    log(convergence.ok ? `converged after ${convergence.ms} ms` : `did not converge: ${convergence.problems.join('; ')}`);

    log('stopping clients');
    for (const s of slots) if (s.child) tell(s.child, { t: 'stop' });
    // Each must settle its operations, close and take its census, then exit by itself soon after.
    await Promise.all(
      incarnations.map(async (inc) => {
        if (inc.exit) return;
        await settledWithin(Promise.race([inc.finished, inc.exited]), settleMs + 20_000);
        // The census waits up to 3 s for handles to close.
        await settledWithin(inc.exited, 8000);
      }),
    );
  } finally {
    // Anything still running is killed: nothing outlives the campaign.
    killClients();
    await Promise.all(incarnations.map((inc) => inc.exited));
    process.removeListener('exit', killClients);
    for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.removeListener(signal, onSignal);
    closeSync(registerFd);
    closeSync(nemesisFd);
    await backend?.close();
  }

  // ---- judge
  const records: Recorded[] = [];
  for (const file of readdirSync(dir).filter((f) => /^c\d+\.\d+\.jsonl$/.test(f))) {
    const proc = file.replace(/\.jsonl$/, '');
    for (const line of readFileSync(path.join(dir, file), 'utf8').split('\n')) {
      if (line.trim() === '') continue;
      try {
        records.push({ ...(JSON.parse(line) as Recorded), proc });
      } catch {
        // A line cut short by SIGKILL: the history up to it stands.
      }
    }
  }
  records.sort((a, b) => a.at - b.at);
  const procs: ProcOutcome[] = incarnations.map((inc) => ({
    proc: inc.proc,
    killed: inc.killed,
    exited: inc.killed || (inc.exit !== undefined && inc.exit.signal !== 'SIGKILL' && inc.done),
    exitCode: inc.exit?.code ?? null,
    signal: inc.exit?.signal ?? null,
  }));
  const judged = { records, register: registerLog, nemesis: nemesisLog, procs, convergence, unquiet };
  const anomalies = checkAll(judged);

  const opsByKind: Record<string, { ok: number; failed: Record<string, number> }> = {};
  const invoked = new Map<string, string>();
  let operations = 0;
  for (const r of records) {
    if (r.k === 'inv') {
      invoked.set(`${r.proc}#${r.op}`, r.f);
      operations++;
    } else if (r.k === 'ok' || r.k === 'fail') {
      const f = invoked.get(`${r.proc}#${r.op}`) ?? '?';
      const entry = (opsByKind[f] ??= { ok: 0, failed: {} });
      if (r.k === 'ok') entry.ok++;
      else entry.failed[r.code] = (entry.failed[r.code] ?? 0) + 1;
    }
  }
  const faultsRun: Partial<Record<FaultKind, number>> = {};
  for (const r of nemesisLog) if (r.phase === 'start') faultsRun[r.kind as FaultKind] = (faultsRun[r.kind as FaultKind] ?? 0) + 1;
  const result: CampaignResult = {
    driver: options.driver,
    seed: options.seed,
    clients,
    seconds: options.seconds,
    unsafe: options.unsafe,
    startedAt,
    elapsedMs: Math.round(performance.now() - started),
    operations,
    opsByKind,
    holds: {
      lock: records.filter((r) => r.k === 'hold' && r.kind === 'lock').length,
      shared: records.filter((r) => r.k === 'hold' && r.kind === 'lock' && r.shared === true).length,
      permit: records.filter((r) => r.k === 'hold' && r.kind === 'permit').length,
      lead: records.filter((r) => r.k === 'hold' && r.kind === 'lead').length,
    },
    sharedLocks,
    writes: { accepted: register.accepted, refused: register.refused },
    faults: faultsRun,
    incarnations: incarnations.length,
    convergence,
    anomalies,
    dir: anomalies.length > 0 || options.keep ? dir : undefined,
    rerun: rerunCommand({ ...options, clients }),
    history: { records, register: registerLog, nemesis: nemesisLog },
  };
  const { history: _history, ...summary } = result;
  writeFileSync(path.join(dir, 'summary.json'), `${JSON.stringify(summary, null, 2)}\n`);
  if (!result.dir) rmSync(dir, { recursive: true, force: true });
  return result;
}

function tell(child: ChildProcess, message: ToClient): void {
  // A child that died meanwhile: its exit is what counts.
  if (child.connected) child.send(message, () => undefined);
}

/** Resolves when `ready()` holds, re-checked whenever `subscribe`'s wake-up fires; rejects after `ms`. */
async function waitFor(ready: () => boolean, subscribe: (wake: () => void) => void, ms: number, what: string): Promise<void> {
  const deadline = performance.now() + ms;
  while (!ready()) {
    const left = deadline - performance.now();
    if (left <= 0) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await withTimeout(new Promise<void>((resolve) => subscribe(resolve)), left, undefined);
  }
}

/** The promise's value, or `fallback` after `ms` (the timer does not outlive the race). */
async function withTimeout<T, F>(promise: Promise<T>, ms: number, fallback: F): Promise<T | F> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([promise, new Promise<F>((resolve) => (timer = setTimeout(() => resolve(fallback), ms)))]);
  } finally {
    clearTimeout(timer);
  }
}

async function settledWithin(promise: Promise<unknown>, ms: number): Promise<boolean> {
  const TIMEOUT = Symbol('timeout');
  return (await withTimeout(promise, ms, TIMEOUT)) !== TIMEOUT;
}

const sameList = (a: readonly unknown[], b: readonly unknown[]): boolean => JSON.stringify(a) === JSON.stringify(b);

/**
 * What keeps the clients' views from agreeing with each other and with the final roles (protocol.ts): members()
 * of the watched group is exactly the clients meant to be in it, with their final capabilities, and every watcher's
 * view equals it; members() of the partitioned group is exactly the clients with a partitioner, and every
 * partitioner's view equals it.
 * A client still in the partitioned group after closing its partitioner is a problem like any other: a close whose
 * leave could not reach the backend owes it, and must pay once the backend answers.
 */
export function disagreements(
  expected: { readonly members: readonly string[]; readonly partition: readonly string[] },
  views: ReadonlyArray<Views | { error: string }>,
): string[] {
  const problems: string[] = [];
  const want = expected.members.map((id): [string, string] => [id, `{"final":true,"proc":${JSON.stringify(id)}}`]);
  views.forEach((v, i) => {
    const who = `client ${i}`;
    if ('error' in v) {
      problems.push(`${who}: ${v.error}`);
      return;
    }
    if (!sameList(v.members, want)) problems.push(`${who}: members() ${JSON.stringify(v.members)} is not ${JSON.stringify(want)}`);
    if (!sameList(v.watch, v.members))
      problems.push(`${who}: watcher's view ${JSON.stringify(v.watch)} != members() ${JSON.stringify(v.members)}`);
    if (!sameList(v.partitionMembers, expected.partition)) {
      problems.push(`${who}: partitioned group ${JSON.stringify(v.partitionMembers)} is not ${JSON.stringify(expected.partition)}`);
    }
    if (v.partitioner !== null && !sameList(v.partitioner, v.partitionMembers)) {
      problems.push(`${who}: partitioner ${JSON.stringify(v.partitioner)} != members() ${JSON.stringify(v.partitionMembers)}`);
    }
  });
  return problems;
}

/**
 * Stops or resumes a client. One that has already exited (it was exiting as it was chosen: its exit is recorded and
 * judged by the checkers) is not the nemesis's concern.
 */
function signalChild(pid: number, signal: 'SIGSTOP' | 'SIGCONT'): void {
  try {
    process.kill(pid, signal);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ESRCH') throw error;
  }
}
