/**
 * The demo's failover: once half of the tasks are done, one worker is killed, in the middle of a task when one is
 * busy; then what followed is recorded: when it left the group, when a survivor first took over one of its keys, and
 * who redid the task it was running.
 */
import { formatMs } from '../output.js';
import type { DemoWorker } from './fleet.js';
import { taskKey } from './protocol.js';
import type { Summary } from './view.js';

interface Kill {
  readonly victim: DemoWorker;
  readonly at: number;
  readonly doneAtKill: number;
  /** The task it was running, if any. */
  readonly inFlight: number | undefined;
  /** Tasks it owned that were not done yet. */
  readonly owned: ReadonlySet<number>;
  leftAt: number | undefined;
  resumedAt: number | undefined;
  resumedBy: DemoWorker | undefined;
  redoneBy: DemoWorker | undefined;
}

/**
 * The worker to kill among those running: `candidate` if it is in the middle of a task, else any that is; with
 * `anyone`, the last one when none is busy. Undefined: wait for a better moment.
 */
export function chooseVictim(running: readonly DemoWorker[], candidate: DemoWorker | undefined, anyone: boolean): DemoWorker | undefined {
  if (running.length < 2) return undefined;
  const busy =
    candidate?.status === 'running' && candidate.current !== undefined ? candidate : running.find((worker) => worker.current !== undefined);
  return busy ?? (anyone ? running[running.length - 1] : undefined);
}

export class Failover {
  #kill: Kill | undefined;

  get happened(): boolean {
    return this.#kill !== undefined;
  }

  /** `victim` is being killed now, with `doneAtKill` tasks done, owning the unfinished tasks `owned`; returns the note. */
  killed(victim: DemoWorker, doneAtKill: number, owned: ReadonlySet<number>, taskCount: number): string {
    this.#kill = {
      victim,
      at: performance.now(),
      doneAtKill,
      inFlight: victim.current,
      owned,
      leftAt: undefined,
      resumedAt: undefined,
      resumedBy: undefined,
      redoneBy: undefined,
    };
    return `killed ${victim.name} (pid ${victim.process.pid ?? '?'}, SIGKILL) at ${doneAtKill}/${taskCount} tasks${victim.current !== undefined ? `, in the middle of ${taskKey(victim.current)}` : ''}`;
  }

  /** The victim left the group: the note to show, the first time. */
  left(worker: DemoWorker, shares: () => string): string | undefined {
    const kill = this.#kill;
    if (!kill || kill.victim !== worker || kill.leftAt !== undefined) return undefined;
    kill.leftAt = performance.now();
    return `${worker.name} left the group ${formatMs(kill.leftAt - kill.at)} after the kill; shares now: ${shares()}`;
  }

  /** `worker` claimed `task`: the note to show when it is the first survivor to take over one of the victim's keys. */
  claimed(worker: DemoWorker, task: number): string | undefined {
    const kill = this.#kill;
    if (!kill || kill.resumedAt !== undefined || worker === kill.victim || !kill.owned.has(task)) return undefined;
    kill.resumedAt = performance.now();
    kill.resumedBy = worker;
    return `${worker.name} took over ${kill.victim.name}'s keys ${formatMs(kill.resumedAt - kill.at)} after the kill (${taskKey(task)})`;
  }

  /** `worker` completed `task`: the note to show when that is the task the victim was running. */
  completed(worker: DemoWorker, task: number): string | undefined {
    const kill = this.#kill;
    if (!kill || kill.inFlight !== task || worker === kill.victim) return undefined;
    kill.redoneBy = worker;
    return `${worker.name} redid ${taskKey(task)}, which ${kill.victim.name} was running when it was killed`;
  }

  /** For the summary; `completedBy` names who completed a task, for an in-flight task redone unseen. */
  summary(started: number, completedBy: (task: number) => string | undefined): Summary['kill'] {
    const kill = this.#kill;
    if (!kill) return undefined;
    return {
      victim: kill.victim.name,
      atMs: kill.at - started,
      doneAtKill: kill.doneAtKill,
      leftAfterMs: kill.leftAt === undefined ? undefined : kill.leftAt - kill.at,
      resumedAfterMs: kill.resumedAt === undefined ? undefined : kill.resumedAt - kill.at,
      resumedBy: kill.resumedBy?.name,
      inFlight: kill.inFlight === undefined ? undefined : taskKey(kill.inFlight),
      redoneBy: kill.redoneBy?.name ?? (kill.inFlight !== undefined ? completedBy(kill.inFlight) : undefined),
    };
  }
}
