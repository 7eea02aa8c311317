/** concord lock NAME -- CMD: runs CMD while holding the lock NAME. */
import { isConcordError } from '../errors.js';
import type { HeldLock } from '../types.js';
import type { CommandSpec, Parsed } from './args.js';
import { Child } from './child.js';
import { BACKEND_OPTIONS, HELP_OPTION, open, signalExitCode, type Context } from './context.js';
import { CliError, EXIT, formatMs, note } from './output.js';

export const spec: CommandSpec = {
  name: 'lock',
  summary: 'Run a command while holding a lock, so that no two such commands run at once anywhere the backend reaches.',
  description: [
    'The command gets CONCORD_FENCING_TOKEN (strictly greater for every later holder of NAME), CONCORD_LOCK and',
    'CONCORD_MEMBER. It runs in a process group of its own: SIGINT, SIGTERM and SIGHUP are forwarded to every process',
    'of that group. The lock is released only once no process of the group is left: when the command exits, what it',
    'left running gets SIGTERM, then SIGKILL after --grace. If the lock is lost while the command runs, the group gets',
    'SIGTERM, then SIGKILL after --grace. If concord itself is killed (even by SIGKILL), the group is killed at once.',
    `concord exits with the command's exit code; ${EXIT.timeout} when --timeout runs out first; ${EXIT.lost} when the lock was lost.`,
  ].join('\n'),
  positionals: [{ name: 'NAME', arity: '1' }],
  command: 'required',
  options: [
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
    ...BACKEND_OPTIONS,
    HELP_OPTION,
  ],
  examples: [
    'concord lock nightly-backup --timeout 5000 -- ./backup.sh',
    'concord lock deploy -- sh -c \'echo "token $CONCORD_FENCING_TOKEN"\'',
  ],
};

export async function run(args: Parsed, context: Context): Promise<number> {
  const name = args.positionals[0] ?? '';
  const timeoutMs = args.integer('timeout');
  const graceMs = args.integer('grace') ?? 5000;
  const quiet = args.flag('quiet');
  const coordinator = await open(args, context);
  try {
    let held: HeldLock;
    try {
      held = await coordinator.lock(name).acquire({ signal: context.interrupted, ...(timeoutMs !== undefined ? { timeoutMs } : {}) });
    } catch (error) {
      if (isConcordError(error, 'ERR_LOCK_TIMEOUT')) {
        const holder = await coordinator
          .lock(name)
          .holder()
          .catch(() => undefined);
        throw new CliError(
          `timed out after ${formatMs(timeoutMs ?? 0)} waiting for lock "${name}"${holder ? ` (held by ${holder})` : ''}`,
          EXIT.timeout,
        );
      }
      if (context.interrupted.aborted) return signalExitCode(context.signalName() ?? 'SIGINT');
      throw error;
    }
    if (context.interrupted.aborted) {
      await held.release();
      return signalExitCode(context.signalName() ?? 'SIGINT');
    }
    if (!quiet) note(`holding lock "${name}" (fencing token ${held.token})`);
    let child: Child;
    try {
      child = await Child.start(args.rest, {
        CONCORD_FENCING_TOKEN: held.token.toString(),
        CONCORD_LOCK: name,
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
      note(`lost lock "${name}" while the command ran (${describeReason(held.signal.reason)}); stopping it`);
      void child.stop({ graceMs });
    };
    // Lost while the command was starting (concord stalled, say): the signal has aborted already and fires no event.
    if (held.signal.aborted) onLost();
    else held.signal.addEventListener('abort', onLost, { once: true });
    await child.exited;
    // The command's own process is done; what it left running in its group is ended before the lock is released.
    const exit = await child.stop({ graceMs });
    held.signal.removeEventListener('abort', onLost);
    await held.release();
    if (lost) throw new CliError(`the command was stopped because lock "${name}" was lost (its exit code was ${exit.code})`, EXIT.lost);
    return exit.code;
  } finally {
    await coordinator.close();
  }
}

function describeReason(reason: unknown): string {
  return reason instanceof Error ? reason.message : 'session lost';
}
