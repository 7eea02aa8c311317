/** concord semaphore NAME --limit N -- CMD: runs CMD while holding one of N permits of the semaphore NAME. */
import { MAX_LIMIT } from '../lock/handle.js';
import type { CommandSpec, Parsed } from './args.js';
import { BACKEND_OPTIONS, HELP_OPTION, type Context } from './context.js';
import { HOLD_OPTIONS, holdDescription, runHolding } from './hold.js';
import { UsageError } from './output.js';

export const spec: CommandSpec = {
  name: 'semaphore',
  summary: 'Run a command while holding one of N permits, so that at most N such commands run at once anywhere.',
  description: holdDescription('permit', [
    'At most --limit commands hold a permit of NAME at once, waiting first come, first served; every process must give',
    'NAME the same --limit.',
  ]),
  positionals: [{ name: 'NAME', arity: '1' }],
  command: 'required',
  options: [
    {
      name: 'limit',
      type: 'integer',
      value: 'N',
      min: 1,
      max: MAX_LIMIT,
      description: 'the most commands holding a permit of NAME at once (required)',
    },
    ...HOLD_OPTIONS,
    ...BACKEND_OPTIONS,
    HELP_OPTION,
  ],
  examples: [
    'concord semaphore transcode --limit 3 -- ./transcode.sh input.mp4',
    'concord semaphore api-quota --limit 10 --timeout 60000 -- ./call-api.sh',
  ],
};

export async function run(args: Parsed, context: Context): Promise<number> {
  const name = args.positionals[0] ?? '';
  const limit = args.integer('limit');
  // Checked before connecting: there is no sensible default for how many may run at once.
  if (limit === undefined) {
    throw new UsageError(`missing option --limit N: the most commands holding a permit at once, from 1 to ${MAX_LIMIT}`, spec.name);
  }
  return runHolding(args, context, (coordinator) => {
    const semaphore = coordinator.semaphore(name, { limit });
    return {
      what: `a permit of semaphore "${name}"`,
      name,
      acquire: (options) => semaphore.acquire(options),
      holders: () => semaphore.holders(),
      busy: (holders) => `${holders.length} of ${limit} permits taken`,
    };
  });
}
