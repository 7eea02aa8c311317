/**
 * The checkers on fabricated histories (each rule, both ways), and the reproducibility of a seed: the same seed gives
 * the same nemesis schedule and the same workload draws. The real-campaign negative controls are in controls.test.ts.
 */
import { describe, expect, it } from 'vitest';
import { disagreements } from './campaign.js';
import {
  checkAll,
  checkErrors,
  checkLeaks,
  checkOverlap,
  checkRegister,
  checkSettle,
  checkTokens,
  holdsOf,
  type CampaignHistory,
} from './checkers.js';
import { Prng } from './prng.js';
import type { Recorded, RegisterWrite, Views } from './protocol.js';
import { planSchedule } from './schedule.js';

/** A hold of `key` by `proc` from `start`, with one valid look (and register write) at each of `looks`. */
function hold(
  proc: string,
  id: string,
  name: string,
  token: number,
  start: number,
  looks: number[],
  kind: 'lock' | 'lead' = 'lock',
): Recorded[] {
  return [
    { proc, k: 'hold', hold: id, kind, name, token: String(token), at: start },
    ...looks.map((at, seq): Recorded => ({ proc, k: 'write', hold: id, seq, at })),
  ];
}

function write(proc: string, id: string, key: string, token: number, look: number, at: number, accepted: boolean): RegisterWrite {
  return { proc, hold: id, key, token: String(token), seq: 0, look, at, accepted, newest: undefined };
}

const history = (records: Recorded[], extra: Partial<CampaignHistory> = {}): CampaignHistory => ({
  records,
  register: [],
  nemesis: [],
  procs: [],
  convergence: undefined,
  unquiet: [],
  ...extra,
});

describe('chaos checkers', () => {
  it('overlap: disjoint validity passes; a hold starting before another ended is caught, also inside a long one', () => {
    const ok = holdsOf([...hold('a', 'a:1', 'x', 1, 10, [11, 20]), ...hold('b', 'b:1', 'x', 2, 21, [22, 30])]);
    expect(checkOverlap(ok, 'lock')).toEqual([]);
    const shared = holdsOf([...hold('a', 'a:1', 'x', 1, 10, [11, 20]), ...hold('b', 'b:1', 'x', 2, 20, [21])]);
    expect(checkOverlap(shared, 'lock').map((a) => a.checker)).toEqual(['lock-overlap']);
    const inside = holdsOf([
      ...hold('a', 'a:1', 'x', 1, 10, [11, 100]),
      ...hold('b', 'b:1', 'x', 2, 20, [21, 30]),
      ...hold('c', 'c:1', 'x', 3, 40, [41, 50]),
    ]);
    expect(checkOverlap(inside, 'lock')).toHaveLength(2);
    // Other names, and holds that never looked valid, do not count.
    const unrelated = holdsOf([
      ...hold('a', 'a:1', 'x', 1, 10, [11, 100]),
      ...hold('b', 'b:1', 'y', 2, 20, [21]),
      ...hold('c', 'c:1', 'x', 3, 20, []),
    ]);
    expect(checkOverlap(unrelated, 'lock')).toEqual([]);
  });

  it('leader-overlap judges leaderships apart from locks', () => {
    const holds = holdsOf([...hold('a', 'a:1', 'g', 1, 10, [11, 20], 'lead'), ...hold('b', 'b:1', 'g', 2, 15, [16], 'lead')]);
    expect(checkOverlap(holds, 'lead').map((a) => a.checker)).toEqual(['leader-overlap']);
    expect(checkOverlap(holds, 'lock')).toEqual([]);
  });

  it('register: a refusal after the recorded validity passes; one within it, or of an unknown hold, is caught', () => {
    const holds = holdsOf(hold('a', 'a:1', 'x', 1, 10, [11, 20]));
    expect(checkRegister(holds, [write('a', 'a:1', 'lock:x', 1, 20, 21, false)])).toEqual([]);
    expect(checkRegister(holds, [write('a', 'a:1', 'lock:x', 1, 11, 12, false)]).map((a) => a.checker)).toEqual(['register']);
    expect(checkRegister(holds, [write('z', 'z:9', 'lock:x', 1, 11, 12, false)]).map((a) => a.checker)).toEqual(['register']);
    expect(checkRegister(holds, [write('a', 'a:1', 'lock:x', 1, 11, 12, true)])).toEqual([]);
  });

  it('token-order: tokens must grow in the order holds became valid', () => {
    const ok = holdsOf([...hold('a', 'a:1', 'x', 5, 10, [11]), ...hold('b', 'b:1', 'x', 7, 20, [21])]);
    expect(checkTokens(ok)).toEqual([]);
    const equal = holdsOf([...hold('a', 'a:1', 'x', 5, 10, [11]), ...hold('b', 'b:1', 'x', 5, 20, [21])]);
    expect(checkTokens(equal).map((a) => a.checker)).toEqual(['token-order']);
    // A grant that resolved after a later one but never looked valid is no evidence either way.
    const stale = holdsOf([...hold('a', 'a:1', 'x', 5, 30, []), ...hold('b', 'b:1', 'x', 7, 20, [21])]);
    expect(checkTokens(stale)).toEqual([]);
  });

  it('settle: an unsettled operation of a surviving process is caught, of a killed one excused', () => {
    const records: Recorded[] = [
      { proc: 'a', k: 'inv', op: 1, f: 'acquire', name: 'x', at: 1 },
      { proc: 'a', k: 'census', at: 9, leaked: [] },
      { proc: 'b', k: 'inv', op: 1, f: 'join', at: 1 },
    ];
    const procs = [
      { proc: 'a', killed: false, exited: true, exitCode: 0, signal: null },
      { proc: 'b', killed: true, exited: true, exitCode: null, signal: 'SIGKILL' },
    ];
    expect(checkSettle(history(records, { procs })).map((a) => a.message)).toEqual([
      'a: operation #1 acquire x started at 0.000 ms never settled',
    ]);
    // A process that never finished its shutdown is caught too.
    const crashed = [{ proc: 'a', killed: false, exited: false, exitCode: 1, signal: null }];
    expect(checkSettle(history([{ proc: 'a', k: 'start', pid: 1, at: 0 }], { procs: crashed }))).toHaveLength(1);
  });

  it('leak: handles left after close() or a process that did not exit are caught', () => {
    const procs = [{ proc: 'a', killed: false, exited: false, exitCode: null, signal: 'SIGKILL' }];
    const found = checkLeaks(history([{ proc: 'a', k: 'census', at: 1, leaked: ['1 Timeout'] }], { procs }));
    expect(found.map((a) => a.checker)).toEqual(['leak', 'leak']);
  });

  it('errors: a failure that is not a ConcordError, or a code no fault explains, is caught', () => {
    const records: Recorded[] = [
      { proc: 'a', k: 'inv', op: 1, f: 'join', at: 1 },
      { proc: 'a', k: 'fail', op: 1, at: 2, code: 'ERR_SESSION_LOST', message: '' },
      { proc: 'a', k: 'inv', op: 2, f: 'join', at: 3 },
      { proc: 'a', k: 'fail', op: 2, at: 4, code: 'NOT_CONCORD:TypeError', message: 'x is undefined' },
      { proc: 'a', k: 'inv', op: 3, f: 'join', at: 5 },
      { proc: 'a', k: 'fail', op: 3, at: 6, code: 'ERR_INVALID_ARGUMENT', message: '' },
    ];
    expect(checkErrors(records).map((a) => a.message)).toEqual([
      'a: join failed with NOT_CONCORD:TypeError: x is undefined',
      'a: join failed with ERR_INVALID_ARGUMENT: ',
    ]);
  });

  it('convergence: views agree only when every watcher and partitioner matches the live clients', () => {
    const final = (id: string): [string, string] => [id, `{"final":true,"proc":${JSON.stringify(id)}}`];
    const expected = { members: ['a', 'c'], partition: ['a', 'b'] };
    const good: Views = {
      members: [final('a'), final('c')],
      watch: [final('a'), final('c')],
      partitionMembers: ['a', 'b'],
      partitioner: ['a', 'b'],
    };
    const none: Views = { ...good, partitioner: null };
    const problems = (views: Array<Views | { error: string }>): string[] => disagreements(expected, views);
    expect(disagreements(expected, [good, good, none])).toEqual([]);
    expect(problems([good, { ...good, watch: [final('a')] }])).toHaveLength(1);
    expect(problems([{ ...good, partitioner: ['a'] }])).toHaveLength(1);
    // A member that should have left still there: a membership came back.
    const all = [final('a'), final('b'), final('c')];
    expect(problems([{ ...good, members: all, watch: all }])).toHaveLength(1);
    expect(problems([{ ...good, partitionMembers: ['a'], partitioner: ['a'] }])).toHaveLength(1);
    expect(problems([{ error: 'ERR_CONNECTION' }])).toHaveLength(1);
    // A client still in the partitioned group after closing its partitioner: its leave never reached the backend.
    expect(problems([{ ...none, partitionMembers: ['a', 'b', 'c'] }])).toHaveLength(1);
    const outcome = { ok: false, ms: undefined, problems: ['x'], at: 0 };
    expect(checkAll(history([], { convergence: outcome })).map((a) => a.checker)).toEqual(['convergence']);
  });
});

describe('chaos seeds', () => {
  it('the same seed gives the same schedule; another seed another one', () => {
    const options = { seconds: 60, clients: 4, ttlMs: 1000, faults: ['pause', 'kill', 'cut', 'restart-server'] as const };
    const a = planSchedule({ seed: 7, ...options });
    expect(planSchedule({ seed: 7, ...options })).toEqual(a);
    expect(planSchedule({ seed: 8, ...options })).not.toEqual(a);
    expect(new Set(a.map((e) => e.kind))).toEqual(new Set(options.faults));
    // Both lanes run, and their episodes overlap in time: faults combine.
    const clients = a.filter((e) => e.lane === 'clients');
    const infra = a.filter((e) => e.lane === 'infra');
    expect(clients.length).toBeGreaterThan(5);
    expect(infra.length).toBeGreaterThan(5);
    expect(clients.some((c) => infra.some((i) => i.at < c.at + c.durationMs && c.at < i.at + i.durationMs))).toBe(true);
    // Faults both shorter and longer than the TTL.
    expect(a.some((e) => e.kind === 'pause' && e.durationMs < 1000) && a.some((e) => e.kind === 'pause' && e.durationMs > 1000)).toBe(true);
  });

  it('a forked stream draws the same whatever its parent drew', () => {
    const one = new Prng(3);
    const two = new Prng(3);
    two.next();
    two.next();
    const draws = (p: Prng): number[] => Array.from({ length: 5 }, () => p.int(0, 1000));
    expect(draws(one.fork('client0.1/lock0'))).toEqual(draws(two.fork('client0.1/lock0')));
    expect(draws(new Prng(3))).not.toEqual(draws(new Prng(4)));
  });
});
