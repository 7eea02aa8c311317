/**
 * concord status: the backend at a glance: groups with member counts, leaders with terms, held locks and semaphore
 * permits, and waiters with the one that has waited longest.
 */
import { isConcordError } from '../errors.js';
import type { Coordinator, Holder, LockInfo, Waiter } from '../types.js';
import type { CommandSpec, Parsed } from './args.js';
import { BACKEND_OPTIONS, HELP_OPTION, JSON_OPTION, open, type Context } from './context.js';
import { modeText, waiterText } from './locks.js';
import { out, table, toJson } from './output.js';

export const spec: CommandSpec = {
  name: 'status',
  summary: 'Show the backend at a glance: groups with member counts, leaders with terms, locks, semaphores and waiters.',
  description: 'The oldest waiter is the contender that has waited longest for any lock, semaphore or leadership.',
  positionals: [],
  options: [JSON_OPTION, ...BACKEND_OPTIONS, HELP_OPTION],
  examples: ['concord status', 'concord status --url redis://127.0.0.1:6379 --json'],
};

export interface Status {
  /** The backend's URL without its password. */
  readonly url: string;
  readonly watch: 'push' | 'poll';
  readonly groups: readonly { readonly name: string; readonly members: number }[];
  readonly leaders: readonly LockInfo[];
  readonly locks: readonly LockInfo[];
  readonly semaphores: readonly LockInfo[];
  /** The contender that has waited longest, and for what; absent while nobody waits. */
  readonly oldestWaiter?: Waiter & { readonly kind: LockInfo['kind']; readonly name: string };
  /** False when the driver cannot list its locks (a driver of your own without that step): no leaders or locks then. */
  readonly locksListed: boolean;
}

/** Reads the whole picture; a group deleted while it is read is left out. */
export async function readStatus(coordinator: Coordinator, signal?: AbortSignal): Promise<Status> {
  const listLocks = coordinator.locks(signal ? { signal } : undefined).catch((error: unknown) => {
    if (isConcordError(error, 'ERR_NOT_SUPPORTED')) return undefined;
    throw error;
  });
  const [names, listed] = await Promise.all([coordinator.groups(), listLocks]);
  const all = listed ?? [];
  const counted = await Promise.all(
    names.map(async (name) => {
      try {
        return { name, members: (await coordinator.group(name).members()).length };
      } catch (error) {
        if (isConcordError(error, 'ERR_GROUP_NOT_FOUND')) return undefined;
        throw error;
      }
    }),
  );
  const oldest = oldestOf(all);
  return {
    url: coordinator.url,
    watch: coordinator.features.watch,
    groups: counted.filter((group) => group !== undefined),
    leaders: all.filter((lock) => lock.kind === 'leader'),
    locks: all.filter((lock) => lock.kind === 'lock'),
    semaphores: all.filter((lock) => lock.kind === 'semaphore'),
    ...(oldest ? { oldestWaiter: { kind: oldest.kind, name: oldest.name, ...oldest.waiter } } : {}),
    locksListed: listed !== undefined,
  };
}

/** The lock whose first waiter has waited longest (one whose wait is not timed counts only when none is). */
function oldestOf(locks: readonly LockInfo[]): { kind: LockInfo['kind']; name: string; waiter: Waiter } | undefined {
  let oldest: { kind: LockInfo['kind']; name: string; waiter: Waiter } | undefined;
  for (const { kind, name, oldestWaiter: waiter } of locks) {
    if (waiter === undefined) continue;
    if (oldest === undefined || (waiter.waitedMs ?? -1) > (oldest.waiter.waitedMs ?? -1)) oldest = { kind, name, waiter };
  }
  return oldest;
}

function plural(count: number, word: string): string {
  return `${count} ${word}${count === 1 ? '' : 's'}`;
}

function summary(status: Status): string {
  const members = status.groups.reduce((sum, group) => sum + group.members, 0);
  const held = status.locks.filter((lock) => lock.holders.length > 0).length;
  const permits = status.semaphores.reduce((sum, semaphore) => sum + semaphore.holders.length, 0);
  const waiting = [...status.leaders, ...status.locks, ...status.semaphores].reduce((sum, lock) => sum + lock.waiting, 0);
  const groups = [plural(status.groups.length, 'group'), plural(members, 'member')];
  if (!status.locksListed) return [...groups, 'locks and leaders not listed by this driver'].join(', ');
  return [
    ...groups,
    plural(status.leaders.filter((lock) => lock.holders.length > 0).length, 'leader'),
    `${plural(held, 'lock')} held`,
    // Said only where semaphores are in use, so that the line stays as it was for everyone else.
    ...(status.semaphores.length > 0 ? [`${plural(permits, 'permit')} held`] : []),
    `${waiting} waiting`,
  ].join(', ');
}

/**
 * One row per holder, sorted by token: the name, the member, then `own` cells of the holder; the `once` cells of the
 * whole lock (how many wait) end its first row only. A lock waited for while nobody holds it gets a row of its own.
 */
function holderRows(
  locks: readonly LockInfo[],
  own: (holder: Holder | undefined) => string[],
  once: (lock: LockInfo) => string[],
): string[][] {
  return locks.flatMap((lock) => {
    const holders = lock.holders.length > 0 ? lock.holders : [undefined];
    return holders.map((holder, i) => [lock.name, holder?.member ?? '-', ...own(holder), ...(i === 0 ? once(lock) : [])]);
  });
}

export function statusLines(status: Status): string[] {
  const lines = [`backend  ${status.url} (changes ${status.watch === 'push' ? 'pushed' : 'polled'})`, `         ${summary(status)}`];
  const oldest = status.oldestWaiter;
  if (oldest)
    lines.push(
      `         oldest waiter ${waiterText(oldest)}, for ${oldest.kind === 'leader' ? 'the leadership of' : oldest.kind} ${oldest.name}`,
    );
  if (status.groups.length > 0) {
    lines.push('', ...table([['GROUP', 'MEMBERS'], ...status.groups.map((group) => [group.name, String(group.members)])]));
  }
  if (status.leaders.length > 0) {
    const rows = status.leaders.map((lock) => {
      const leader = lock.holders[0];
      return [lock.name, leader?.member ?? '-', leader ? String(leader.token) : '-', String(lock.waiting)];
    });
    lines.push('', ...table([['LEADS', 'LEADER', 'TERM', 'WAITING'], ...rows]));
  }
  if (status.locks.length > 0) {
    // The mode is shown once some lock is held shared: until then every hold is exclusive, and the table stays as it was.
    const modes = status.locks.some((lock) => lock.holders.some((holder) => holder.shared));
    const rows = holderRows(
      status.locks,
      (holder) => [...(modes ? [holder ? modeText(holder) : '-'] : []), holder ? String(holder.token) : '-'],
      (lock) => [String(lock.waiting)],
    );
    lines.push('', ...table([['LOCK', 'HOLDER', ...(modes ? ['MODE'] : []), 'TOKEN', 'WAITING'], ...rows]));
  }
  if (status.semaphores.length > 0) {
    const rows = holderRows(
      status.semaphores,
      (holder) => [holder ? String(holder.token) : '-'],
      (semaphore) => [`${semaphore.holders.length}/${String(semaphore.limit ?? '?')}`, String(semaphore.waiting)],
    );
    lines.push('', ...table([['SEMAPHORE', 'HOLDER', 'TOKEN', 'HELD', 'WAITING'], ...rows]));
  }
  return lines;
}

export async function run(args: Parsed, context: Context): Promise<number> {
  const coordinator = await open(args, context);
  try {
    const status = await readStatus(coordinator, context.interrupted);
    if (args.flag('json')) out(toJson(status));
    else for (const line of statusLines(status)) out(line);
    return 0;
  } finally {
    await coordinator.close();
  }
}
