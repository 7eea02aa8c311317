/**
 * concord demo: group membership and partitioning, made real. Worker processes join a group through a partitioner and
 * process the tasks whose keys they own, holding each task's lock. Midway one worker is killed with SIGKILL; the
 * survivors take over its keys once it leaves the group. The demo ends with a check that every task completed exactly
 * once, and exits 0 only when it holds.
 */
import { randomBytes } from 'node:crypto';
import { isConcordError } from '../../errors.js';
import { parseUrl } from '../../url.js';
import type { Coordinator } from '../../types.js';
import type { CommandSpec, Parsed } from '../args.js';
import { BACKEND_OPTIONS, HELP_OPTION, backendUrl, open, signalExitCode, type Context } from '../context.js';
import { CliError, EXIT } from '../output.js';
import { Failover, chooseVictim } from './failover.js';
import { Fleet, type DemoWorker, type TaskMessage } from './fleet.js';
import { Ledger } from './ledger.js';
import { Observer } from './observer.js';
import { taskKey } from './protocol.js';
import { DemoView, type WorkerRow } from './view.js';

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
  const ledger = new Ledger(taskCount);
  const failover = new Failover();
  let fleet: Fleet | undefined;
  let finishing = false;
  let startedTasks: number | undefined;
  let finishedTasks: number | undefined;

  // The demo's own view of the group, to show shares of the ring and see the killed worker leave.
  const observer = new Observer(algorithm, taskCount);

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
    const owned = observer.holdings((task) => ledger.isDone(task));
    return (fleet?.workers ?? []).map((worker) => {
      const mine = owned.get(worker.member);
      return {
        name: worker.name,
        pid: worker.process.pid,
        status: worker.status,
        completions: ledger.completionsBy(worker.name),
        share: observer.isMember(worker.member) ? (mine?.total ?? 0) / taskCount : undefined,
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

  let deadline: NodeJS.Timeout | undefined;
  let timedOut = false;
  try {
    await coordinator.group(groupName).create();
    observer.follow(
      coordinator,
      groupName,
      (event) => {
        const worker = fleet?.byMember(event.member);
        if (event.type === 'leave' && worker) {
          const note = failover.left(worker, sharesText);
          if (note !== undefined) view.event(note);
          else if (!finishing) view.event(`${worker.name} left the group`);
        }
        if (event.type === 'join' && worker && !finishing) view.event(`${worker.name} joined the group (pid ${worker.process.pid ?? '?'})`);
        wake();
      },
      (error) => {
        if (!finishing) ledger.violations.push(`the observer's watch failed: ${error instanceof Error ? error.message : String(error)}`);
        wake();
      },
    );

    /**
     * Once half of the tasks are done, kills a worker in the middle of a task (that task must then be redone by a
     * survivor): `candidate`, which has just claimed one, or any other. Without `anyone`, waits for such a moment.
     */
    const maybeKill = (candidate: DemoWorker | undefined, anyone: boolean): void => {
      if (!fleet || !killOne || failover.happened || finishing || ledger.accepted < Math.floor(taskCount / 2)) return;
      const victim = chooseVictim(fleet.running(), candidate, anyone);
      if (!victim) return;
      const owned = new Set<number>();
      for (let task = 1; task <= taskCount; task++) if (observer.owner(task) === victim.member && !ledger.isDone(task)) owned.add(task);
      const note = failover.killed(victim, ledger.accepted, owned, taskCount);
      ledger.workerGone(victim.name);
      fleet.kill(victim);
      view.event(note);
    };

    const onTask = (worker: DemoWorker, message: TaskMessage): void => {
      if (message.type === 'peek') {
        fleet?.send(worker, { type: 'claimed', id: message.id, done: ledger.isDone(message.task) });
      } else if (message.type === 'claim') {
        const { done } = ledger.claim(worker.name, message.task, BigInt(message.token));
        worker.current = done ? undefined : message.task;
        const note = failover.claimed(worker, message.task);
        if (note !== undefined) view.event(note);
        fleet?.send(worker, { type: 'claimed', id: message.id, done });
        maybeKill(worker, false);
      } else {
        if (worker.current === message.task) worker.current = undefined;
        const recorded = ledger.complete(worker.name, message.task, BigInt(message.token));
        fleet?.send(worker, { type: 'recorded', id: message.id, accepted: recorded === 'accepted' });
        if (recorded !== 'accepted') return;
        const note = failover.completed(worker, message.task);
        if (note !== undefined) view.event(note);
        view.progress(ledger.accepted);
        // Without locks (the negative control) nobody claims: kill whoever is last.
        maybeKill(undefined, unsafe);
        if (ledger.accepted === taskCount) wake();
      }
    };

    const workerArgs = [
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
      '--session-ttl',
      String(sessionTtlMs),
    ];
    const namespace = args.string('namespace');
    if (namespace !== undefined) workerArgs.push('--namespace', namespace);
    const connectTimeoutMs = args.integer('connect-timeout');
    if (connectTimeoutMs !== undefined) workerArgs.push('--connect-timeout', String(connectTimeoutMs));
    if (unsafe) workerArgs.push('--unsafe-no-locks');
    const workers = new Fleet({
      count: workerCount,
      group: groupName,
      args: workerArgs,
      interrupted: context.interrupted,
      onTask,
      onChange: (worker, failure) => {
        if (worker.status !== 'running' && worker.status !== 'starting') ledger.workerGone(worker.name);
        if (failure !== undefined) view.event(`${worker.name} failed: ${failure}`);
        wake();
      },
    });
    fleet = workers;

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
    const allGone = (): boolean => workers.workers.every((worker) => worker.status !== 'starting' && worker.status !== 'running');

    // Everyone ready and visible in the group: start together.
    while (
      !stopped() &&
      !allGone() &&
      !(
        workers.workers.every((worker) => worker.ready || worker.status !== 'starting') &&
        workers.workers.every((worker) => worker.status !== 'starting' || observer.isMember(worker.member))
      )
    ) {
      await nextWake();
    }
    if (!stopped() && !allGone()) {
      const members = workers.start();
      startedTasks = performance.now();
      view.event(`all ${members.length} workers joined; shares: ${sharesText()}`);
      maybeKill(undefined, false);
    }
    while (!stopped() && ledger.accepted < taskCount && workers.running().length > 0) await nextWake();
    context.interrupted.removeEventListener('abort', onInterrupt);

    const stuck = timedOut
      ? workers
          .running()
          .map(
            (worker) =>
              `${worker.name} was ${worker.current === undefined ? 'not running a task' : `running ${taskKey(worker.current)}`} when time ran out`,
          )
      : [];
    if (ledger.accepted === taskCount) finishedTasks = performance.now();
    view.stop(rows());
    // Finish: let the workers leave cleanly; anything that will not go is killed.
    finishing = true;
    await workers.finish();

    const verdict = ledger.verdict({
      timedOut,
      interrupted: context.interrupted.aborted,
      failures: workers.workers
        .filter((worker) => worker.status === 'failed')
        .map((worker) => `${worker.name} failed: ${worker.failure ?? 'unknown reason'}`),
      stuck,
    });
    view.summary({
      rows: rows(),
      elapsedMs: elapsed(),
      startupMs: startedTasks === undefined ? undefined : startedTasks - started,
      tasksMs: startedTasks === undefined || finishedTasks === undefined ? undefined : finishedTasks - startedTasks,
      kill: failover.summary(started, (task) => ledger.completion(task)?.worker),
      stale: ledger.stale,
      verdict,
      scope: coordinator.features.scope,
    });
    if (context.interrupted.aborted) return signalExitCode(context.signalName() ?? 'SIGINT');
    return verdict.pass ? EXIT.ok : EXIT.failure;
  } finally {
    clearTimeout(deadline);
    view.stop(undefined);
    fleet?.close();
    finishing = true;
    await observer.close();
    await deleteGroup(coordinator, groupName, sessionTtlMs);
    await coordinator.close();
  }
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
