/**
 * The dashboard's live view and concord status in one process on memory://: partition shares, the event log's joins,
 * hand-offs and leader changes, semaphores and shared holds, and a driver that cannot list its locks (groups still
 * shown, locks said to be missing).
 */
import { afterEach, describe, expect, it } from 'vitest';
import { ConcordError, connect, type Coordinator } from '../../src/index.js';
import { LiveView, shares, type Entry, type State } from '../../src/cli/dashboard/view.js';
import { readStatus, statusLines } from '../../src/cli/status.js';
import { deadline } from '../support/wait.js';

const open: Coordinator[] = [];
const stops: AbortController[] = [];
const views: LiveView[] = [];

afterEach(async () => {
  for (const stop of stops.splice(0)) stop.abort();
  await Promise.all(views.splice(0).map((view) => view.done));
  await Promise.all(open.splice(0).map((coordinator) => coordinator.close()));
});

async function member(id: string, namespace: string): Promise<Coordinator> {
  const coordinator = await connect('memory://', { member: id, namespace });
  open.push(coordinator);
  return coordinator;
}

/** The coordinator, except that its driver cannot list locks. */
function withoutLockListing(coordinator: Coordinator): Coordinator {
  return new Proxy(coordinator, {
    get(target, key) {
      if (key === 'locks') return () => Promise.reject(new ConcordError('ERR_NOT_SUPPORTED', 'this driver cannot list its locks'));
      const value: unknown = Reflect.get(target, key);
      return typeof value === 'function' ? (value as (...args: unknown[]) => unknown).bind(target) : value;
    },
  });
}

/** A view with a record of everything it announced; `until` waits for an announcement that satisfies `accept`. */
function follow(coordinator: Coordinator): {
  view: LiveView;
  entries: Entry[];
  until: (accept: (state: State) => boolean, what: string) => Promise<State>;
} {
  const stop = new AbortController();
  stops.push(stop);
  const view = new LiveView(coordinator, 50, stop.signal);
  views.push(view);
  const entries: Entry[] = [];
  const waiters = new Set<{ accept: (state: State) => boolean; resolve: (state: State) => void }>();
  view.subscribe((state, added) => {
    entries.push(...added);
    for (const waiter of waiters) if (waiter.accept(state)) waiter.resolve(state);
  });
  const until = (accept: (state: State) => boolean, what: string): Promise<State> => {
    if (accept(view.state)) return Promise.resolve(view.state);
    let waiter: { accept: (state: State) => boolean; resolve: (state: State) => void } | undefined;
    const found = new Promise<State>((resolve) => {
      waiter = { accept, resolve };
      waiters.add(waiter);
    });
    return deadline(found, 15_000, what).finally(() => {
      if (waiter) waiters.delete(waiter);
    });
  };
  return { view, entries, until };
}

describe('dashboard view', () => {
  it('gives each member weight / total weight, counting a missing or unusable weight as 1', () => {
    const members = new Map<string, Record<string, number | string>>([
      ['b', { weight: 2 }],
      ['a', {}],
      ['c', { weight: 'heavy' }],
    ]);
    expect(shares(members).map(({ id, weight, share }) => [id, weight, share])).toEqual([
      ['a', 1, 0.25],
      ['b', 2, 0.5],
      ['c', 1, 0.25],
    ]);
  });

  it('logs joins, leader changes and lock hand-offs after its first read, not what it found', async () => {
    const a = await member('a', 'view-log');
    const b = await member('b', 'view-log');
    await a.group('workers').join({ create: true, capabilities: { weight: 3 } });
    const first = await a.lock('jobs/x').acquire();
    const { entries, until } = follow(a);
    await until((state) => state.groups[0]?.members.length === 1 && state.locks.length === 1, 'the first read');
    await b.group('workers').join({ capabilities: {} });
    const leadership = await b.group('workers').campaign();
    const next = b.lock('jobs/x').acquire();
    // b waits in the lock's line before a lets go: the lock passes straight from one to the other.
    await until((s) => s.locks.find((lock) => lock.name === 'jobs/x')?.waiting === 1, 'b waiting for jobs/x');
    await first.release();
    const second = await next;
    const state = await until((s) => s.locks.find((lock) => lock.name === 'jobs/x')?.holders[0]?.member === 'b', 'the hand-off');
    expect(state.groups[0]?.members.map(({ id, share }) => [id, share])).toEqual([
      ['a', 0.75],
      ['b', 0.25],
    ]);
    await until((s) => s.groups[0]?.leader?.member === 'b', 'the leader');
    expect(entries.map((entry) => entry.text)).toEqual(
      expect.arrayContaining([
        'workers: b joined {}',
        `workers: b leads, term ${leadership.term}`,
        `jobs/x: a #${first.token} → b #${second.token}`,
      ]),
    );
    expect(
      entries.some((entry) => entry.text.startsWith('workers: a joined') || entry.text.startsWith(`jobs/x: a #${first.token} holds`)),
    ).toBe(false);
  });

  it('shows semaphores with their limit and shared holders, and logs the holds that come and go after its first read', async () => {
    const a = await member('a', 'view-shared');
    const b = await member('b', 'view-shared');
    const found = await a.semaphore('pool', { limit: 2 }).acquire();
    const { entries, until } = follow(a);
    await until((state) => state.locks.length === 1, 'the first read');
    const permit = await b.semaphore('pool', { limit: 2 }).acquire();
    const reads = [await a.lock('schema').acquire({ shared: true }), await b.lock('schema').acquire({ shared: true })];
    const state = await until((s) => s.locks.length === 2 && s.locks.every((lock) => lock.holders.length === 2), 'both holds of each');
    expect(state.locks).toEqual([
      {
        name: 'schema',
        kind: 'lock',
        holders: reads.map((held, i) => ({ member: i === 0 ? 'a' : 'b', token: String(held.token), shared: true })),
        waiting: 0,
      },
      {
        name: 'pool',
        kind: 'semaphore',
        holders: [
          { member: 'a', token: String(found.token), shared: true },
          { member: 'b', token: String(permit.token), shared: true },
        ],
        waiting: 0,
        limit: 2,
      },
    ]);
    await permit.release();
    await until((s) => s.locks.find((lock) => lock.kind === 'semaphore')?.holders.length === 1, 'the permit to go');
    expect(entries.map((entry) => [entry.type, entry.text])).toEqual(
      expect.arrayContaining([
        ['acquire', `pool (semaphore): b #${permit.token} holds it shared`],
        ['acquire', `schema: a #${reads[0]?.token ?? 0n} holds it shared`],
        ['acquire', `schema: b #${reads[1]?.token ?? 0n} holds it shared`],
        ['release', `pool (semaphore): released by b #${permit.token}`],
      ]),
    );
    // What the first read found is not news.
    expect(entries.some((entry) => entry.text.startsWith(`pool (semaphore): a #${found.token}`))).toBe(false);

    const lines = statusLines(await readStatus(a));
    expect(lines[1]?.trim()).toBe('0 groups, 0 members, 0 leaders, 1 lock held, 1 permit held, 0 waiting');
    const rows = lines.map((line) => line.split(/\s{2,}/));
    expect(rows).toContainEqual(['LOCK', 'HOLDER', 'MODE', 'TOKEN', 'WAITING']);
    expect(rows).toContainEqual(['schema', 'b', 'shared', String(reads[1]?.token)]);
    expect(rows).toContainEqual(['SEMAPHORE', 'HOLDER', 'TOKEN', 'HELD', 'WAITING']);
    expect(rows).toContainEqual(['pool', 'a', String(found.token), '1/2', '0']);
  });

  it('shows groups from a driver that cannot list its locks, and says so', async () => {
    const a = await member('a', 'view-unlisted');
    await a.group('workers').join({ create: true });
    const { until } = follow(withoutLockListing(a));
    const state = await until((s) => s.groups.length === 1, 'the group');
    expect(state).toMatchObject({ locksListed: false, problem: undefined, locks: [] });
    const status = await readStatus(withoutLockListing(a));
    expect(status).toMatchObject({ locksListed: false, groups: [{ name: 'workers', members: 1 }] });
    expect(statusLines(status)[1]?.trim()).toBe('1 group, 1 member, locks and leaders not listed by this driver');
  });
});
