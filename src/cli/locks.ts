/** concord locks: who holds each lock and leadership, with which fencing token, and how many wait. */
import type { LockInfo, LocksOptions } from '../types.js';
import type { CommandSpec, Parsed } from './args.js';
import { BACKEND_OPTIONS, HELP_OPTION, JSON_OPTION, open, type Context } from './context.js';
import { UsageError, out, table, toJson } from './output.js';

export const spec: CommandSpec = {
  name: 'locks',
  summary: 'List the locks and leaderships that are held or waited for: holder, fencing token, how many wait.',
  description: "A group's leadership shows as kind leader, named after the group, with the leader's term as its token.",
  positionals: [],
  options: [
    { name: 'prefix', type: 'string', value: 'P', description: 'only locks whose name starts with P' },
    { name: 'kind', type: 'string', value: 'KIND', description: 'only this kind: lock or leader' },
    JSON_OPTION,
    ...BACKEND_OPTIONS,
    HELP_OPTION,
  ],
  examples: ['concord locks', 'concord locks --prefix jobs/ --json', 'concord locks --kind leader'],
};

/** --kind, checked before connecting. */
export function kindOption(args: Parsed, command: string): LocksOptions['kind'] {
  const kind = args.string('kind');
  if (kind === undefined || kind === 'lock' || kind === 'leader') return kind;
  throw new UsageError(`option --kind must be lock or leader, got ${JSON.stringify(kind)}`, command);
}

/** One row per holder (a lock waited for while nobody holds it gets a row of its own); waiting on the first row. */
export function lockRows(locks: readonly LockInfo[]): string[][] {
  const rows = [['NAME', 'KIND', 'HOLDER', 'TOKEN', 'WAITING']];
  for (const lock of locks) {
    const holders = lock.holders.length > 0 ? lock.holders : [undefined];
    holders.forEach((holder, i) => {
      rows.push([lock.name, lock.kind, holder?.member ?? '-', holder ? String(holder.token) : '-', i === 0 ? String(lock.waiting) : '']);
    });
  }
  return rows;
}

export async function run(args: Parsed, context: Context): Promise<number> {
  const kind = kindOption(args, spec.name);
  const prefix = args.string('prefix');
  const coordinator = await open(args, context);
  try {
    const locks = await coordinator.locks({ ...(kind ? { kind } : {}), ...(prefix ? { prefix } : {}), signal: context.interrupted });
    if (args.flag('json')) out(toJson(locks));
    else if (locks.length > 0) for (const line of table(lockRows(locks))) out(line);
    return 0;
  } finally {
    await coordinator.close();
  }
}
