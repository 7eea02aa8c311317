/**
 * The demo's ledger of completions, and its verdict. It stands in for the database a real job would write to, and it
 * holds the demo's correctness claim: every task completed exactly once.
 *
 * Workers run each task holding the task's lock: inside it they claim the task (is it done already?), do the work, and
 * report the completion, waiting for the answer before they release, so a completion is recorded before anyone else
 * can claim. Like a fenced store, the ledger accepts a completion only under the newest fencing token it has seen for
 * the task: a holder that lost its lock cannot record a stale result. Pure bookkeeping: no processes, no clock.
 */
import { taskKey } from './protocol.js';

export interface Completion {
  readonly worker: string;
  readonly token: bigint;
}

/** What became of a reported completion. */
export type Recorded = 'accepted' | 'stale' | 'duplicate' | 'unknown';

export interface Verdict {
  readonly pass: boolean;
  readonly lines: string[];
}

/** How the run ended, beside what the ledger saw. */
export interface Outcome {
  readonly timedOut: boolean;
  readonly interrupted: boolean;
  /** One line per worker that failed. */
  readonly failures: readonly string[];
  /** One line per worker still busy when time ran out. */
  readonly stuck: readonly string[];
}

interface TaskState {
  latestToken: bigint | undefined;
  claimant: Completion | undefined;
  accepted: Completion | undefined;
}

export class Ledger {
  readonly taskCount: number;
  /** Breaches of mutual exclusion or of fencing: any of them fails the verdict. */
  readonly violations: string[] = [];
  /** Completions refused under an older token: the fencing doing its job, not a failure. */
  readonly stale: string[] = [];
  readonly #tasks: TaskState[];
  readonly #gone = new Set<string>();
  readonly #completions = new Map<string, number>();
  #accepted = 0;

  constructor(taskCount: number) {
    this.taskCount = taskCount;
    this.#tasks = Array.from({ length: taskCount + 1 }, () => ({ latestToken: undefined, claimant: undefined, accepted: undefined }));
  }

  /** Tasks completed so far. */
  get accepted(): number {
    return this.#accepted;
  }

  isDone(task: number): boolean {
    return this.#task(task)?.accepted !== undefined;
  }

  completion(task: number): Completion | undefined {
    return this.#task(task)?.accepted;
  }

  /** Completions accepted from `worker`. */
  completionsBy(worker: string): number {
    return this.#completions.get(worker) ?? 0;
  }

  /** `worker` runs no more (killed, failed, stopped): a claim of its own no longer stands in anyone's way. */
  workerGone(worker: string): void {
    this.#gone.add(worker);
  }

  /**
   * `worker` holds the task's lock under `token` and asks whether the task is done. A claim under a token no greater
   * than one seen before, or while another running worker's claim stands, is a violation. Returns whether the task
   * is done (an unknown task counts as done: there is nothing to run).
   */
  claim(worker: string, task: number, token: bigint): { readonly done: boolean } {
    const state = this.#task(task);
    if (!state) {
      this.violations.push(`${worker} claimed an unknown task ${task}`);
      return { done: true };
    }
    if (state.latestToken !== undefined && token <= state.latestToken) {
      this.violations.push(`${taskKey(task)}: ${worker} claimed with token ${token} after token ${state.latestToken}`);
    }
    if (state.claimant && state.claimant.worker !== worker && !this.#gone.has(state.claimant.worker)) {
      this.violations.push(`${taskKey(task)}: ${worker} claimed it while ${state.claimant.worker} still held it`);
    }
    if (state.latestToken === undefined || token > state.latestToken) state.latestToken = token;
    // A claim of a task already done ends there: the worker releases the lock without running it.
    state.claimant = state.accepted ? undefined : { worker, token };
    return { done: state.accepted !== undefined };
  }

  /** `worker` completed the task under `token`: accepted once per task, and only under the newest token seen. */
  complete(worker: string, task: number, token: bigint): Recorded {
    const state = this.#task(task);
    if (!state) return 'unknown';
    if (state.claimant?.worker === worker) state.claimant = undefined;
    if (state.latestToken !== undefined && token < state.latestToken) {
      // A fenced store refuses a write under an older token: its writer lost the lock before it finished.
      this.stale.push(`${taskKey(task)} from ${worker} (token ${token} < ${state.latestToken})`);
      return 'stale';
    }
    if (state.accepted) {
      this.violations.push(
        `${taskKey(task)} completed twice: by ${state.accepted.worker} (token ${state.accepted.token}) and by ${worker} (token ${token})`,
      );
      return 'duplicate';
    }
    state.accepted = { worker, token };
    this.#completions.set(worker, this.completionsBy(worker) + 1);
    this.#accepted++;
    return 'accepted';
  }

  /** The tasks never completed, in order. */
  missing(): number[] {
    const missing: number[] = [];
    for (let task = 1; task <= this.taskCount; task++) if (!this.isDone(task)) missing.push(task);
    return missing;
  }

  /** Pass only when every task completed exactly once, nothing breached the locks, and the run ended normally. */
  verdict(outcome: Outcome): Verdict {
    const missing = this.missing();
    const lines: string[] = [];
    if (outcome.interrupted) lines.push('interrupted before the end');
    else if (outcome.timedOut) lines.push('timed out before the end');
    if (missing.length > 0)
      lines.push(
        `${missing.length} of ${this.taskCount} tasks never completed (${missing.slice(0, 5).map(taskKey).join(', ')}${missing.length > 5 ? ', ...' : ''})`,
      );
    for (const violation of this.violations.slice(0, 10)) lines.push(violation);
    if (this.violations.length > 10) lines.push(`... and ${this.violations.length - 10} more violations`);
    lines.push(...outcome.failures, ...outcome.stuck);
    const pass = lines.length === 0;
    if (pass)
      lines.push(
        this.taskCount === 1 ? 'the one task completed exactly once' : `every one of the ${this.taskCount} tasks completed exactly once`,
      );
    return { pass, lines };
  }

  #task(task: number): TaskState | undefined {
    return Number.isInteger(task) && task >= 1 ? this.#tasks[task] : undefined;
  }
}
