/** concord lock NAME -- CMD: runs CMD while holding the lock NAME, exclusively or (--shared) shared. */
import type { CommandSpec, Parsed } from './args.js';
import { BACKEND_OPTIONS, HELP_OPTION, type Context } from './context.js';
import { HOLD_OPTIONS, holdDescription, runHolding } from './hold.js';

export const spec: CommandSpec = {
  name: 'lock',
  summary: 'Run a command while holding a lock, so that no two such commands run at once anywhere (--shared: readers do).',
  description: holdDescription('lock', [
    'With --shared the lock is held shared: any number of --shared commands of NAME run at once, never beside one',
    'without it. Waiting is first come, first served: a command without --shared is not overtaken by --shared ones',
    'that come after it.',
  ]),
  positionals: [{ name: 'NAME', arity: '1' }],
  command: 'required',
  options: [
    { name: 'shared', type: 'boolean', description: 'hold the lock shared (a read lock) rather than exclusively' },
    ...HOLD_OPTIONS,
    ...BACKEND_OPTIONS,
    HELP_OPTION,
  ],
  examples: [
    'concord lock nightly-backup --timeout 5000 -- ./backup.sh',
    'concord lock deploy -- sh -c \'echo "token $CONCORD_FENCING_TOKEN"\'',
    'concord lock schema --shared -- ./read-report.sh',
  ],
};

export async function run(args: Parsed, context: Context): Promise<number> {
  const name = args.positionals[0] ?? '';
  const shared = args.flag('shared');
  return runHolding(args, context, (coordinator) => {
    const lock = coordinator.lock(name);
    return {
      what: `${shared ? 'shared lock' : 'lock'} "${name}"`,
      name,
      // An exclusive acquire passes no `shared`, as it always has (a driver without shared locks still serves it).
      acquire: (options) => lock.acquire(shared ? { ...options, shared } : options),
      holders: () => lock.holders(),
    };
  });
}
