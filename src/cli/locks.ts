/** concord locks: who holds each lock, semaphore and leadership, in which mode, with which fencing token, and how many wait. */
import type { Holder, LockInfo, LocksOptions, Waiter } from '../types.js';
import type { CommandSpec, Parsed } from './args.js';
import { BACKEND_OPTIONS, HELP_OPTION, JSON_OPTION, open, type Context } from './context.js';
import { UsageError, formatMs, out, table, toJson } from './output.js';

export const spec: CommandSpec = {
  name: 'locks',
  summary: 'List the locks, semaphores and leaderships that are held or waited for: holders, tokens, who waits.',
  description: [
    'One row per holder. MODE is shared for a shared hold of a lock and for a semaphore permit, exclusive otherwise;',
    "LIMIT is a semaphore's most holders at once. A group's leadership shows as kind leader, named after the group, with",
    "the leader's term as its token. OLDEST WAITER is the first contender in line and how long it has waited so far.",
  ].join('\n'),
  positionals: [],
  options: [
    { name: 'prefix', type: 'string', value: 'P', description: 'only locks whose name starts with P' },
    { name: 'kind', type: 'string', value: 'KIND', description: 'only this kind: lock, semaphore or leader' },
    JSON_OPTION,
    ...BACKEND_OPTIONS,
    HELP_OPTION,
  ],
  examples: ['concord locks', 'concord locks --prefix jobs/ --json', 'concord locks --kind semaphore'],
};

/** --kind, checked before connecting. */
export function kindOption(args: Parsed, command: string): LocksOptions['kind'] {
  const kind = args.string('kind');
  if (kind === undefined || kind === 'lock' || kind === 'semaphore' || kind === 'leader') return kind;
  throw new UsageError(`option --kind must be lock, semaphore or leader, got ${JSON.stringify(kind)}`, command);
}

/** A hold's mode as the tables show it. */
export function modeText(holder: Holder): string {
  return holder.shared ? 'shared' : 'exclusive';
}

/** A waiter as the tables show it: its member, and how long it has waited where the backend says. */
export function waiterText(waiter: Waiter | undefined): string {
  if (waiter === undefined) return '-';
  return waiter.waitedMs === undefined ? waiter.member : `${waiter.member} (${formatMs(waiter.waitedMs)})`;
}

/**
 * One row per holder, sorted by token (a lock waited for while nobody holds it gets a row of its own); waiting on the
 * first row. Every other cell is filled ('-' when it does not apply), so that the columns split on runs of spaces.
 */
export function lockRows(locks: readonly LockInfo[]): string[][] {
  const rows = [['NAME', 'KIND', 'HOLDER', 'MODE', 'TOKEN', 'LIMIT', 'WAITING', 'OLDEST WAITER']];
  for (const lock of locks) {
    const holders = lock.holders.length > 0 ? lock.holders : [undefined];
    const limit = lock.limit === undefined ? '-' : String(lock.limit);
    holders.forEach((holder, i) => {
      rows.push([
        lock.name,
        lock.kind,
        holder?.member ?? '-',
        holder ? modeText(holder) : '-',
        holder ? String(holder.token) : '-',
        limit,
        i === 0 ? String(lock.waiting) : '',
        i === 0 ? waiterText(lock.oldestWaiter) : '',
      ]);
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
