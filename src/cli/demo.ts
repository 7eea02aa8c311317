/**
 * concord demo: group membership and partitioning, made real. Worker processes join a group through a partitioner and
 * process the tasks whose keys they own, holding each task's lock. Midway one worker is killed with SIGKILL; the
 * survivors take over its keys once it leaves the group. The demo ends with a check that every task completed exactly
 * once, and exits 0 only when it holds.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { isConcordError } from '../errors.js';
import { HashRing, Rendezvous, ToozHashRing, type Placement } from '../placement/index.js';
import { parseUrl } from '../url.js';
import type { Coordinator, GroupWatch } from '../types.js';
import type { CommandSpec, Parsed } from './args.js';
import { BACKEND_OPTIONS, HELP_OPTION, backendUrl, launcherPath, open, signalExitCode, type Context } from './context.js';
import { isFromWorker, taskKey, type FromWorker, type ToWorker } from './demo-protocol.js';
import { DemoView, type WorkerRow } from './demo-view.js';
import { CliError, EXIT, formatMs } from './output.js';

export const spec: CommandSpec = {
  name: 'demo',
  summary: 'Run worker processes that share tasks through a group and per-task locks; kill one midway; check every task ran exactly once.',
  description: [
    'Each worker joins the group demo-<id> through a partitioner and processes the tasks whose keys it owns, holding the',
    "task's lock. Once half of the tasks are done, one worker is killed (SIGKILL); the others take over its keys when it",
    'leaves the group. On a terminal the progress is drawn live; otherwise it is printed as lines. The exit code is 0',
    'only when every task completed exactly once. Any backend reaching several processes works: --url redis://... etc.',
  ].join('\n'),
  positionals: [],
  options: [
    { name: 'workers', type: 'integer', value: 'N', min: 1, max: 32, default: 4, description: 'worker processes' },
    { name: 'tasks', type: 'integer', value: 'N', min: 1, max: 100_000, default: 200, description: 'tasks to process' },
    {
      name: 'work-ms',
      type: 'integer',
      value: 'MS',
      min: 0,
      max: 10_000,
      default: 20,
      description: 'average CPU time of one task (between half and 1.5 times this)',
    },
    { name: 'kill', type: 'boolean', default: true, description: 'kill a worker midway (--no-kill: let all finish)' },
    { name: 'algorithm', type: 'string', value: 'NAME', default: 'rendezvous', description: 'placement: rendezvous, ring or tooz' },
    { name: 'timeout', type: 'integer', value: 'MS', min: 1, default: 120_000, description: 'give up (and fail) after this long' },
    { name: 'plain', type: 'boolean', description: 'print lines even on a terminal' },
    // A negative control for the check: workers neither lock nor ask the ledger, so taken-over keys are redone.
    { name: 'unsafe-no-locks', type: 'boolean', hidden: true, description: 'workers skip the task locks and the completion check' },
    ...BACKEND_OPTIONS.filter((option) => option.name !== 'member' && option.name !== 'session-ttl'),
    {
      name: 'session-ttl',
      type: 'integer',
      value: 'MS',
      min: 1,
      default: 2000,
      description: 'session TTL of the workers: the longest a killed worker can hold its keys',
    },
    HELP_OPTION,
  ],
  examples: ['concord demo', 'concord demo --workers 6 --tasks 1000 --url redis://127.0.0.1:6379'],
};

type Status = WorkerRow['status'];

interface WorkerState {
  readonly index: number;
  readonly name: string;
  readonly member: string;
  readonly process: ChildProcess;
  status: Status;
  completions: number;
  /** The task it has claimed and not yet reported. */
  current: number | undefined;
  failure: string | undefined;
  stderr: string;
  ready: boolean;
}

interface TaskState {
  latestToken: bigint | undefined;
  claimant: { worker: WorkerState; token: bigint } | undefined;
  accepted: { worker: WorkerState; token: bigint } | undefined;
}

interface Kill {
  readonly victim: WorkerState;
  readonly at: number;
  readonly doneAtKill: number;
  /** The task it was running, if any. */
  readonly inFlight: number | undefined;
  /** Tasks it owned that were not done yet. */
  readonly owned: ReadonlySet<number>;
  leftAt: number | undefined;
  resumedAt: number | undefined;
  resumedBy: WorkerState | undefined;
  redoneBy: WorkerState | undefined;
}

function placementFor(algorithm: string): Placement {
  if (algorithm === 'ring') return new HashRing();
  if (algorithm === 'tooz') return new ToozHashRing();
  return new Rendezvous();
}

export async function run(args: Parsed, context: Context): Promise<number> {
  const workerCount = args.integer('workers') ?? 4;
  const taskCount = args.integer('tasks') ?? 200;
  const workMs = args.integer('work-ms') ?? 20;
  const sessionTtlMs = args.integer('session-ttl') ?? 2000;
  const timeoutMs = args.integer('timeout') ?? 120_000;
  const algorithm = args.string('algorithm') ?? 'rendezvous';
  if (algorithm !== 'rendezvous' && algorithm !== 'ring' && algorithm !== 'tooz') {
    throw new CliError(`--algorithm must be rendezvous, ring or tooz, got ${JSON.stringify(algorithm)}`, EXIT.usage);
  }
  const killOne = args.flag('kill') && workerCount >= 2;
  const unsafe = args.flag('unsafe-no-locks');
  const url = backendUrl(args);
  if (parseUrl(url).protocol.toLowerCase() === 'memory:') {
    throw new CliError(
      'the demo runs several processes, and memory:// lives inside one process; use the default SQLite file, sqlite:///path.db, or a server URL',
      EXIT.usage,
    );
  }

  const runId = randomBytes(3).toString('hex');
  const groupName = `demo-${runId}`;
  const coordinator = await open(args, context, { member: `${groupName}-observer`, sessionTtlMs });
  if (coordinator.features.scope === 'process') {
    await coordinator.close();
    throw new CliError(`the demo runs several processes, and ${coordinator.url} reaches only one process`, EXIT.usage);
  }
  const started = performance.now();
  const elapsed = (): number => performance.now() - started;
  const view = new DemoView({
    interactive: process.stdout.isTTY && !args.flag('plain'),
    workers: workerCount,
    tasks: taskCount,
    url: coordinator.url,
    group: groupName,
    elapsed,
  });

  const tasks: TaskState[] = Array.from({ length: taskCount + 1 }, () => ({
    latestToken: undefined,
    claimant: undefined,
    accepted: undefined,
  }));
  const workers: WorkerState[] = [];
  const byMember = new Map<string, WorkerState>();
  const violations: string[] = [];
  const stale: string[] = [];
  let accepted = 0;
  let kill: Kill | undefined;
  let finishing = false;
  let startedTasks: number | undefined;
  let finishedTasks: number | undefined;

  // The observer's view of the group, to show shares of the ring and see the killed worker leave.
  const placement = placementFor(algorithm);
  const owner: Array<string | undefined> = new Array<string | undefined>(taskCount + 1).fill(undefined);
  const recomputeOwners = (): void => {
    for (let task = 1; task <= taskCount; task++) owner[task] = placement.get(taskKey(task));
  };

  let wakeMain: (() => void) | undefined;
  const wake = (): void => {
    const resolve = wakeMain;
    wakeMain = undefined;
    resolve?.();
  };
  const nextWake = (): Promise<void> =>
    new Promise((resolve) => {
      wakeMain = resolve;
    });

  const rows = (): WorkerRow[] => {
    const owned = new Map<string, { total: number; done: number }>();
    for (let task = 1; task <= taskCount; task++) {
      const member = owner[task];
      if (member === undefined) continue;
      const entry = owned.get(member) ?? { total: 0, done: 0 };
      entry.total++;
      if (tasks[task]?.accepted) entry.done++;
      owned.set(member, entry);
    }
    return workers.map((worker) => {
      const mine = owned.get(worker.member);
      return {
        name: worker.name,
        pid: worker.process.pid,
        status: worker.status,
        completions: worker.completions,
        share: placement.has(worker.member) ? (mine?.total ?? 0) / taskCount : undefined,
        ownedTotal: mine?.total ?? 0,
        ownedDone: mine?.done ?? 0,
        current: worker.current,
      };
    });
  };

  const sharesText = (): string =>
    rows()
      .filter((row) => row.share !== undefined)
      .map((row) => `${row.name} ${Math.round((row.share ?? 0) * 100)}%`)
      .join(', ');

  let watch: GroupWatch | undefined;
  let watching: Promise<void> | undefined;
  let deadline: NodeJS.Timeout | undefined;
  let timedOut = false;
  try {
    await coordinator.group(groupName).create();
    watch = coordinator.group(groupName).watch({ initial: true });
    const stream = watch;
    watching = (async () => {
      for await (const event of stream) {
        if (event.type === 'leave') placement.remove(event.member);
        else {
          const weight = event.capabilities.weight;
          placement.add(event.member, typeof weight === 'number' && weight > 0 ? weight : 1);
        }
        recomputeOwners();
        const worker = byMember.get(event.member);
        if (event.type === 'leave' && worker) {
          if (kill && kill.victim === worker && kill.leftAt === undefined) {
            kill.leftAt = performance.now();
            view.event(`${worker.name} left the group ${formatMs(kill.leftAt - kill.at)} after the kill; shares now: ${sharesText()}`);
          } else if (!finishing) {
            view.event(`${worker.name} left the group`);
          }
        }
        if (event.type === 'join' && worker && !finishing) view.event(`${worker.name} joined the group (pid ${worker.process.pid ?? '?'})`);
        wake();
      }
    })().catch((error: unknown) => {
      if (!finishing) violations.push(`the observer's watch failed: ${error instanceof Error ? error.message : String(error)}`);
      wake();
    });

    const send = (worker: WorkerState, message: ToWorker): void => {
      if (worker.process.connected) worker.process.send(message, () => undefined);
    };

    /**
     * Once half of the tasks are done, kills a worker in the middle of a task (that task must then be redone by a
     * survivor): `candidate`, which has just claimed one, or any other. Without `anyone`, waits for such a moment.
     */
    const maybeKill = (candidate: WorkerState | undefined, anyone: boolean): void => {
      if (!killOne || kill || finishing || accepted < Math.floor(taskCount / 2)) return;
      const alive = workers.filter((worker) => worker.status === 'running');
      if (alive.length < 2) return;
      const busy =
        candidate?.status === 'running' && candidate.current !== undefined
          ? candidate
          : alive.find((worker) => worker.current !== undefined);
      const victim = busy ?? (anyone ? alive[alive.length - 1] : undefined);
      if (!victim) return;
      const owned = new Set<number>();
      for (let task = 1; task <= taskCount; task++) if (owner[task] === victim.member && !tasks[task]?.accepted) owned.add(task);
      kill = {
        victim,
        at: performance.now(),
        doneAtKill: accepted,
        inFlight: victim.current,
        owned,
        leftAt: undefined,
        resumedAt: undefined,
        resumedBy: undefined,
        redoneBy: undefined,
      };
      victim.status = 'killed';
      victim.process.kill('SIGKILL');
      view.event(
        `killed ${victim.name} (pid ${victim.process.pid ?? '?'}, SIGKILL) at ${accepted}/${taskCount} tasks${victim.current !== undefined ? `, in the middle of ${taskKey(victim.current)}` : ''}`,
      );
    };

    const onClaim = (worker: WorkerState, message: Extract<FromWorker, { type: 'claim' }>): void => {
      const task = tasks[message.task];
      if (!task) {
        violations.push(`${worker.name} claimed an unknown task ${message.task}`);
        send(worker, { type: 'claimed', id: message.id, done: true });
        return;
      }
      const token = BigInt(message.token);
      if (task.latestToken !== undefined && token <= task.latestToken) {
        violations.push(`${taskKey(message.task)}: ${worker.name} claimed with token ${token} after token ${task.latestToken}`);
      }
      if (task.claimant && task.claimant.worker !== worker && task.claimant.worker.status === 'running') {
        violations.push(`${taskKey(message.task)}: ${worker.name} claimed it while ${task.claimant.worker.name} still held it`);
      }
      task.latestToken = task.latestToken === undefined || token > task.latestToken ? token : task.latestToken;
      // A claim of a task already done ends there: the worker releases the lock without running it.
      task.claimant = task.accepted ? undefined : { worker, token };
      worker.current = task.accepted ? undefined : message.task;
      if (kill && kill.resumedAt === undefined && worker !== kill.victim && kill.owned.has(message.task)) {
        kill.resumedAt = performance.now();
        kill.resumedBy = worker;
        view.event(
          `${worker.name} took over ${kill.victim.name}'s keys ${formatMs(kill.resumedAt - kill.at)} after the kill (${taskKey(message.task)})`,
        );
      }
      send(worker, { type: 'claimed', id: message.id, done: task.accepted !== undefined });
      maybeKill(worker, false);
    };

    const onDone = (worker: WorkerState, message: Extract<FromWorker, { type: 'done' }>): void => {
      const task = tasks[message.task];
      if (worker.current === message.task) worker.current = undefined;
      if (!task) {
        send(worker, { type: 'recorded', id: message.id, accepted: false });
        return;
      }
      const token = BigInt(message.token);
      if (task.claimant?.worker === worker) task.claimant = undefined;
      if (task.latestToken !== undefined && token < task.latestToken) {
        // A fenced store refuses a write under an older token: its writer lost the lock before it finished.
        stale.push(`${taskKey(message.task)} from ${worker.name} (token ${token} < ${task.latestToken})`);
        send(worker, { type: 'recorded', id: message.id, accepted: false });
        return;
      }
      if (task.accepted) {
        violations.push(
          `${taskKey(message.task)} completed twice: by ${task.accepted.worker.name} (token ${task.accepted.token}) and by ${worker.name} (token ${token})`,
        );
        send(worker, { type: 'recorded', id: message.id, accepted: false });
        return;
      }
      task.accepted = { worker, token };
      worker.completions++;
      accepted++;
      if (kill && kill.inFlight === message.task && worker !== kill.victim) {
        kill.redoneBy = worker;
        view.event(`${worker.name} redid ${taskKey(message.task)}, which ${kill.victim.name} was running when it was killed`);
      }
      send(worker, { type: 'recorded', id: message.id, accepted: true });
      view.progress(accepted);
      // Without locks (the negative control) nobody claims: kill whoever is last.
      maybeKill(undefined, unsafe);
      if (accepted === taskCount) wake();
    };

    const launcher = launcherPath();
    for (let index = 1; index <= workerCount; index++) {
      const name = `worker-${index}`;
      const member = `${groupName}-${name}`;
      const workerArgs = [
        'demo-worker',
        '--url',
        url,
        '--group',
        groupName,
        '--tasks',
        String(taskCount),
        '--work-ms',
        String(workMs),
        '--algorithm',
        algorithm,
        '--member',
        member,
        '--session-ttl',
        String(sessionTtlMs),
      ];
      const namespace = args.string('namespace');
      if (namespace !== undefined) workerArgs.push('--namespace', namespace);
      const connectTimeoutMs = args.integer('connect-timeout');
      if (connectTimeoutMs !== undefined) workerArgs.push('--connect-timeout', String(connectTimeoutMs));
      if (unsafe) workerArgs.push('--unsafe-no-locks');
      // Workers run the same code as this process: the sources when it runs from them, even if a build exists.
      const env = import.meta.url.endsWith('.ts') ? { ...process.env, CONCORD_CLI_SOURCE: '1' } : process.env;
      const child = fork(launcher, workerArgs, {
        stdio: ['ignore', 'ignore', process.env.CONCORD_DEMO_WORKER_STDERR === '1' ? 'inherit' : 'pipe', 'ipc'],
        execArgv: [],
        env,
      });
      const worker: WorkerState = {
        index,
        name,
        member,
        process: child,
        status: 'starting',
        completions: 0,
        current: undefined,
        failure: undefined,
        stderr: '',
        ready: false,
      };
      workers.push(worker);
      byMember.set(member, worker);
      child.stderr?.setEncoding('utf8');
      child.stderr?.on('data', (chunk: string) => {
        worker.stderr = (worker.stderr + chunk).slice(-2000);
      });
      child.on('message', (message: unknown) => {
        if (!isFromWorker(message)) return;
        if (message.type === 'ready') {
          worker.ready = true;
          wake();
        } else if (message.type === 'peek')
          send(worker, { type: 'claimed', id: message.id, done: tasks[message.task]?.accepted !== undefined });
        else if (message.type === 'claim') onClaim(worker, message);
        else if (message.type === 'done') onDone(worker, message);
        else worker.failure = message.message;
      });
      child.on('error', (error) => {
        worker.failure ??= error.message;
      });
      child.on('exit', (code, signal) => {
        if (worker.status !== 'killed') {
          if (finishing && code === 0) worker.status = 'finished';
          else if (context.interrupted.aborted) worker.status = 'stopped';
          else {
            worker.status = 'failed';
            const detail = worker.failure ?? lastLine(worker.stderr) ?? (signal ? `killed by ${signal}` : `exit code ${code ?? '?'}`);
            worker.failure = detail;
            if (!context.interrupted.aborted) view.event(`${worker.name} failed: ${detail}`);
          }
        }
        worker.current = undefined;
        wake();
      });
    }

    deadline = setTimeout(() => {
      timedOut = true;
      wake();
    }, timeoutMs);
    const onInterrupt = (): void => {
      wake();
    };
    context.interrupted.addEventListener('abort', onInterrupt);
    view.start(rows);

    const stopped = (): boolean => timedOut || context.interrupted.aborted;
    const allGone = (): boolean => workers.every((worker) => worker.status !== 'starting' && worker.status !== 'running');

    // Everyone ready and visible in the group: start together.
    while (
      !stopped() &&
      !allGone() &&
      !(
        workers.every((worker) => worker.ready || worker.status !== 'starting') &&
        workers.every((worker) => worker.status !== 'starting' || placement.has(worker.member))
      )
    ) {
      await nextWake();
    }
    if (!stopped() && !allGone()) {
      const members = workers.filter((worker) => worker.status === 'starting').map((worker) => worker.member);
      for (const worker of workers) {
        if (worker.status === 'starting') {
          worker.status = 'running';
          send(worker, { type: 'start', members });
        }
      }
      startedTasks = performance.now();
      view.event(`all ${members.length} workers joined; shares: ${sharesText()}`);
      maybeKill(undefined, false);
    }
    while (!stopped() && accepted < taskCount && !workers.every((worker) => worker.status !== 'running')) await nextWake();
    context.interrupted.removeEventListener('abort', onInterrupt);

    const stuck = timedOut
      ? workers
          .filter((worker) => worker.status === 'running')
          .map(
            (worker) =>
              `${worker.name} was ${worker.current === undefined ? 'not running a task' : `running ${taskKey(worker.current)}`} when time ran out`,
          )
      : [];
    if (accepted === taskCount) finishedTasks = performance.now();
    view.stop(rows());
    // Finish: let the workers leave cleanly; anything that will not go is killed.
    finishing = true;
    for (const worker of workers) send(worker, { type: 'finish' });
    const exited = workers.map((worker) =>
      worker.process.exitCode !== null || worker.process.signalCode !== null
        ? Promise.resolve()
        : new Promise<void>((resolve) =>
            worker.process.once('exit', () => {
              resolve();
            }),
          ),
    );
    const force = setTimeout(() => {
      for (const worker of workers)
        if (worker.process.exitCode === null && worker.process.signalCode === null) worker.process.kill('SIGKILL');
    }, 10_000);
    await Promise.all(exited);
    clearTimeout(force);

    const verdict = check(tasks, taskCount, workers, violations, timedOut, context.interrupted.aborted, stuck);
    view.summary({
      rows: rows(),
      elapsedMs: elapsed(),
      startupMs: startedTasks === undefined ? undefined : startedTasks - started,
      tasksMs: startedTasks === undefined || finishedTasks === undefined ? undefined : finishedTasks - startedTasks,
      kill: kill
        ? {
            victim: kill.victim.name,
            atMs: kill.at - started,
            doneAtKill: kill.doneAtKill,
            leftAfterMs: kill.leftAt === undefined ? undefined : kill.leftAt - kill.at,
            resumedAfterMs: kill.resumedAt === undefined ? undefined : kill.resumedAt - kill.at,
            resumedBy: kill.resumedBy?.name,
            inFlight: kill.inFlight === undefined ? undefined : taskKey(kill.inFlight),
            redoneBy: kill.redoneBy?.name ?? (kill.inFlight !== undefined ? tasks[kill.inFlight]?.accepted?.worker.name : undefined),
          }
        : undefined,
      stale,
      verdict,
      scope: coordinator.features.scope,
    });
    if (context.interrupted.aborted) return signalExitCode(context.signalName() ?? 'SIGINT');
    return verdict.pass ? EXIT.ok : EXIT.failure;
  } finally {
    clearTimeout(deadline);
    view.stop(undefined);
    for (const worker of workers)
      if (worker.process.exitCode === null && worker.process.signalCode === null) worker.process.kill('SIGKILL');
    finishing = true;
    await watch?.close().catch(() => undefined);
    await watching;
    await deleteGroup(coordinator, groupName, sessionTtlMs);
    await coordinator.close();
  }
}

function lastLine(text: string): string | undefined {
  const lines = text
    .split('\n')
    .map((line) => line.trim())
    .filter((line) => line !== '');
  return lines[lines.length - 1];
}

export interface Verdict {
  readonly pass: boolean;
  readonly lines: string[];
}

function check(
  tasks: readonly TaskState[],
  taskCount: number,
  workers: readonly WorkerState[],
  violations: readonly string[],
  timedOut: boolean,
  interrupted: boolean,
  stuck: readonly string[],
): Verdict {
  const missing: number[] = [];
  for (let task = 1; task <= taskCount; task++) if (!tasks[task]?.accepted) missing.push(task);
  const failed = workers.filter((worker) => worker.status === 'failed');
  const lines: string[] = [];
  if (interrupted) lines.push('interrupted before the end');
  else if (timedOut) lines.push('timed out before the end');
  if (missing.length > 0)
    lines.push(
      `${missing.length} of ${taskCount} tasks never completed (${missing.slice(0, 5).map(taskKey).join(', ')}${missing.length > 5 ? ', ...' : ''})`,
    );
  for (const violation of violations.slice(0, 10)) lines.push(violation);
  if (violations.length > 10) lines.push(`... and ${violations.length - 10} more violations`);
  for (const worker of failed) lines.push(`${worker.name} failed: ${worker.failure ?? 'unknown reason'}`);
  lines.push(...stuck);
  const pass = lines.length === 0;
  if (pass)
    lines.push(taskCount === 1 ? 'the one task completed exactly once' : `every one of the ${taskCount} tasks completed exactly once`);
  return { pass, lines };
}

/** The demo's group goes away with it; a killed worker's membership may take up to a TTL to expire first. */
async function deleteGroup(coordinator: Coordinator, group: string, sessionTtlMs: number): Promise<void> {
  const end = performance.now() + sessionTtlMs + 2000;
  for (;;) {
    try {
      await coordinator.group(group).delete();
      return;
    } catch (error) {
      if (!isConcordError(error, 'ERR_GROUP_NOT_EMPTY') || performance.now() > end) return;
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}
