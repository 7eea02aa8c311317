/**
 * What `concord lock` and `concord semaphore` share: wait for a hold (an exclusive or shared lock, or a semaphore's
 * permit), run the command in a process group of its own while it lasts, and release it once no process of that group
 * is left. The environment, exit codes, --timeout, --grace and the signal forwarding are the same for every kind.
 */
import { isConcordError } from '../errors.js';
import type { Coordinator, HeldLock, Holder } from '../types.js';
import type { OptionSpec, Parsed } from './args.js';
import { Child } from './child.js';
import { open, signalExitCode, type Context } from './context.js';
import { CliError, EXIT, formatMs, note } from './output.js';

/** What is held, as the notes and errors name it, and how to get it. */
export interface HoldTarget {
  /** As the notes and errors say it: 'lock "deploy"', 'shared lock "reports"', 'a permit of semaphore "pool"'. */
  readonly what: string;
  /** The name the command gets in CONCORD_LOCK. */
  readonly name: string;
  acquire(options: { readonly signal: AbortSignal; readonly timeoutMs?: number }): Promise<HeldLock>;
  /** Every current holder, for the message of a timeout. */
  holders(): Promise<Holder[]>;
  /** Said after the holders in that message, e.g. 'all 3 permits taken'. */
  readonly busy?: (holders: readonly Holder[]) => string;
}

/** The options of every command that runs a command while holding something. */
export const HOLD_OPTIONS: readonly OptionSpec[] = [
  {
    name: 'timeout',
    type: 'integer',
    value: 'MS',
    min: 0,
    description: 'give up waiting after MS milliseconds (0: one attempt; default: wait)',
  },
  {
    name: 'grace',
    type: 'integer',
    value: 'MS',
    min: 0,
    default: 5000,
    description: "after SIGTERM to the command's group, wait this long before SIGKILL",
  },
  { name: 'quiet', type: 'boolean', description: 'no notes on stderr' },
];

/** The help text of such a command: what its hold allows (`modes`, already wrapped), then what they all share. */
export function holdDescription(noun: 'lock' | 'permit', modes: readonly string[]): string {
  return [
    ...modes,
    'The command gets CONCORD_FENCING_TOKEN (strictly greater for every later hold of NAME), CONCORD_LOCK (NAME) and',
    'CONCORD_MEMBER. It runs in a process group of its own: SIGINT, SIGTERM and SIGHUP are forwarded to every process',
    `of that group. The ${noun} is released only once no process of the group is left: when the command exits, what it`,
    `left running gets SIGTERM, then SIGKILL after --grace. If the ${noun} is lost while the command runs, the group gets`,
    'SIGTERM, then SIGKILL after --grace. If concord itself is killed (even by SIGKILL), the group is killed at once.',
    `concord exits with the command's exit code; ${EXIT.timeout} when --timeout runs out first; ${EXIT.lost} when the ${noun} was lost.`,
  ].join('\n');
}

function describeHolders(holders: readonly Holder[]): string {
  if (holders.length === 0) return '';
  return `held by ${holders.map((holder) => holder.member).join(', ')}`;
}

/** A driver without shared locks is reported naming the backend, which the library's message does not. */
function withBackend(coordinator: Coordinator, error: unknown): unknown {
  if (!isConcordError(error, 'ERR_NOT_SUPPORTED')) return error;
  const scheme = coordinator.url.slice(0, coordinator.url.indexOf(':') + 1);
  return new CliError(`the ${scheme}// driver has no shared locks or semaphores (the README's "Driver capabilities" says which do)`);
}

function describeReason(reason: unknown): string {
  return reason instanceof Error ? reason.message : 'session lost';
}

/**
 * Connects, waits for what `target` names, and runs `args.rest` while holding it. Resolves with concord's exit code:
 * the command's own, or 128 + N when a signal came before the command started.
 */
export async function runHolding(args: Parsed, context: Context, target: (coordinator: Coordinator) => HoldTarget): Promise<number> {
  const timeoutMs = args.integer('timeout');
  const graceMs = args.integer('grace') ?? 5000;
  const quiet = args.flag('quiet');
  const coordinator = await open(args, context);
  try {
    let hold: HoldTarget;
    let held: HeldLock;
    try {
      hold = target(coordinator);
    } catch (error) {
      throw withBackend(coordinator, error);
    }
    try {
      held = await hold.acquire({ signal: context.interrupted, ...(timeoutMs !== undefined ? { timeoutMs } : {}) });
    } catch (error) {
      if (isConcordError(error, 'ERR_LOCK_TIMEOUT')) {
        const holders = await hold.holders().catch(() => []);
        const detail = [hold.busy?.(holders), describeHolders(holders)].filter((part) => part !== undefined && part !== '');
        throw new CliError(
          `timed out after ${formatMs(timeoutMs ?? 0)} waiting for ${hold.what}${detail.length > 0 ? ` (${detail.join(', ')})` : ''}`,
          EXIT.timeout,
        );
      }
      if (context.interrupted.aborted) return signalExitCode(context.signalName() ?? 'SIGINT');
      throw withBackend(coordinator, error);
    }
    if (context.interrupted.aborted) {
      await held.release();
      return signalExitCode(context.signalName() ?? 'SIGINT');
    }
    if (!quiet) note(`holding ${hold.what} (fencing token ${held.token})`);
    let child: Child;
    try {
      child = await Child.start(args.rest, {
        CONCORD_FENCING_TOKEN: held.token.toString(),
        CONCORD_LOCK: hold.name,
        CONCORD_MEMBER: coordinator.member,
      });
    } catch (error) {
      await held.release();
      throw error;
    }
    // A signal that came while the command was starting is passed on now.
    const early = context.signalName();
    if (early !== undefined) child.kill(early);
    let lost = false;
    const onLost = (): void => {
      // A release by us also aborts the signal; only a loss while the command runs matters.
      if (!child.running) return;
      lost = true;
      note(`lost ${hold.what} while the command ran (${describeReason(held.signal.reason)}); stopping it`);
      void child.stop({ graceMs });
    };
    // Lost while the command was starting (concord stalled, say): the signal has aborted already and fires no event.
    if (held.signal.aborted) onLost();
    else held.signal.addEventListener('abort', onLost, { once: true });
    await child.exited;
    // The command's own process is done; what it left running in its group is ended before the hold is released.
    const exit = await child.stop({ graceMs });
    held.signal.removeEventListener('abort', onLost);
    await held.release();
    if (lost) throw new CliError(`the command was stopped because ${hold.what} was lost (its exit code was ${exit.code})`, EXIT.lost);
    return exit.code;
  } finally {
    await coordinator.close();
  }
}
