/** concord elect GROUP -- CMD: runs CMD only while this process leads GROUP. */
import { isConcordError } from '../errors.js';
import type { Leadership } from '../types.js';
import type { CommandSpec, Parsed } from './args.js';
import { Child } from './child.js';
import { BACKEND_OPTIONS, HELP_OPTION, open, signalExitCode, type Context } from './context.js';
import { note } from './output.js';

/** Pause before campaigning again after a lost session or connection. */
const RETRY_MS = 1000;

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(done, ms);
    function done(): void {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    }
    signal.addEventListener('abort', done, { once: true });
  });
}

export const spec: CommandSpec = {
  name: 'elect',
  summary: 'Campaign for leadership of a group and run a command only while this process is the leader.',
  description: [
    'When elected, the command starts with CONCORD_TERM (the leadership term, strictly increasing with every new',
    'leader), CONCORD_GROUP and CONCORD_MEMBER, in a process group of its own. When leadership is lost, every process',
    'of that group gets SIGTERM, then SIGKILL after --grace, and concord campaigns again once none is left. When the',
    'command exits by itself, what it left running is ended the same way; concord resigns and exits with its code. On',
    'SIGINT, SIGTERM or SIGHUP, concord passes the signal to the group, waits for it (up to --grace), resigns and exits.',
    'If concord itself is killed (even by SIGKILL), the group is killed at once.',
  ].join('\n'),
  positionals: [{ name: 'GROUP', arity: '1' }],
  command: 'required',
  options: [
    { name: 'grace', type: 'integer', value: 'MS', min: 0, default: 5000, description: 'after SIGTERM, wait this long before SIGKILL' },
    { name: 'quiet', type: 'boolean', description: 'no notes on stderr' },
    ...BACKEND_OPTIONS,
    HELP_OPTION,
  ],
  examples: ['concord elect scheduler -- node scheduler.js', 'concord elect cron --grace 10000 -- ./run-cron.sh'],
};

export async function run(args: Parsed, context: Context): Promise<number> {
  const group = args.positionals[0] ?? '';
  const graceMs = args.integer('grace') ?? 5000;
  const quiet = args.flag('quiet');
  const coordinator = await open(args, context);
  const interruptedCode = (): number => signalExitCode(context.signalName() ?? 'SIGINT');
  try {
    for (;;) {
      if (!quiet) note(`campaigning for leadership of "${group}" as ${coordinator.member}`);
      let leadership: Leadership;
      try {
        leadership = await coordinator.group(group).campaign({ signal: context.interrupted });
      } catch (error) {
        if (context.interrupted.aborted) return interruptedCode();
        // The session is being replaced or the backend is briefly away: a supervisor keeps campaigning.
        if (!isConcordError(error, 'ERR_SESSION_LOST') && !isConcordError(error, 'ERR_CONNECTION')) throw error;
        if (!quiet) note(`campaign interrupted (${error.message}); trying again`);
        await sleep(RETRY_MS, context.interrupted);
        continue;
      }
      if (context.interrupted.aborted) {
        await leadership.resign();
        return interruptedCode();
      }
      if (!quiet) note(`elected leader of "${group}" (term ${leadership.term}); starting the command`);
      let child: Child;
      try {
        child = await Child.start(args.rest, {
          CONCORD_TERM: leadership.term.toString(),
          CONCORD_GROUP: group,
          CONCORD_MEMBER: coordinator.member,
        });
      } catch (error) {
        await leadership.resign();
        throw error;
      }
      // The group gets the signal concord got, then the grace period, then SIGKILL.
      const onInterrupt = (): void => {
        void child.stop({ graceMs, first: context.signalName() ?? 'SIGTERM' });
      };
      if (context.interrupted.aborted) onInterrupt();
      else context.interrupted.addEventListener('abort', onInterrupt, { once: true });
      const lost = new Promise<'lost'>((resolve) => {
        // Lost while the command was starting: the signal has aborted already and fires no event.
        if (leadership.signal.aborted) resolve('lost');
        leadership.signal.addEventListener(
          'abort',
          () => {
            resolve('lost');
          },
          { once: true },
        );
      });
      const outcome = await Promise.race([child.exited, lost]);
      if (outcome === 'lost' && child.running) {
        if (!quiet) note(`lost leadership of "${group}" (term ${leadership.term}); stopping the command`);
        await child.stop({ graceMs });
        context.interrupted.removeEventListener('abort', onInterrupt);
        await leadership.resign();
        if (context.interrupted.aborted) return interruptedCode();
        continue;
      }
      await child.exited;
      // What the command left running in its group is ended before leadership is given up.
      const exit = await child.stop({ graceMs });
      context.interrupted.removeEventListener('abort', onInterrupt);
      await leadership.resign();
      if (!quiet) note(`the command exited with code ${exit.code}; resigned leadership of "${group}"`);
      return exit.code;
    }
  } finally {
    await coordinator.close();
  }
}
