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
import type { HoldKind, Recorded, RegisterWrite, Views } from './protocol.js';
import { FencedRegister } from './register.js';
import { planSchedule } from './schedule.js';

/** A hold of `key` by `proc` from `start`, with one valid look (and register write) at each of `looks`. */
function hold(proc: string, id: string, name: string, token: number, start: number, looks: number[], kind: HoldKind = 'lock'): Recorded[] {
  return [
    { proc, k: 'hold', hold: id, kind, name, token: String(token), at: start },
    ...looks.map((at, seq): Recorded => ({ proc, k: 'write', hold: id, seq, at })),
  ];
}

/** A shared hold (or, with `limit`, a permit) of `name`, asked for at `asked`. */
function sharedHold(
  proc: string,
  id: string,
  name: string,
  token: number,
  asked: number,
  start: number,
  looks: number[],
  limit?: number,
): Recorded[] {
  const [first, ...rest] = hold(proc, id, name, token, start, looks, limit === undefined ? 'lock' : 'permit');
  return [{ ...(first as Recorded & { k: 'hold' }), asked, shared: true, ...(limit === undefined ? {} : { limit }) }, ...rest];
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

  it('overlap: shared holds may overlap each other, never an exclusive one', () => {
    const readers = holdsOf([
      ...sharedHold('a', 'a:1', 'x', 1, 5, 10, [11, 40]),
      ...sharedHold('b', 'b:1', 'x', 2, 5, 12, [13, 30]),
      ...hold('c', 'c:1', 'x', 3, 41, [42, 50]),
    ]);
    expect(checkOverlap(readers, 'lock')).toEqual([]);
    // An exclusive hold inside a shared one, and a shared one inside an exclusive one.
    const writerInside = holdsOf([...sharedHold('a', 'a:1', 'x', 1, 5, 10, [11, 40]), ...hold('c', 'c:1', 'x', 3, 20, [21])]);
    expect(checkOverlap(writerInside, 'lock').map((a) => a.message)).toEqual([
      'lock:x: c:1 token 3 valid [0.000 ms, 0.000 ms] overlaps a:1 (shared) token 1 valid [0.000 ms, 0.000 ms] by 0.000 ms',
    ]);
    const readerInside = holdsOf([...hold('c', 'c:1', 'x', 1, 10, [11, 40]), ...sharedHold('a', 'a:1', 'x', 2, 5, 20, [21])]);
    expect(checkOverlap(readerInside, 'lock').map((a) => a.checker)).toEqual(['lock-overlap']);
  });

  it('permit-limit: at most the limit of permits valid at once', () => {
    const two = holdsOf([
      ...sharedHold('a', 'a:1', 's', 1, 5, 10, [11, 40], 2),
      ...sharedHold('b', 'b:1', 's', 2, 5, 12, [13, 30], 2),
      ...sharedHold('c', 'c:1', 's', 3, 5, 31, [32, 50], 2),
    ]);
    expect(checkOverlap(two, 'permit')).toEqual([]);
    expect(checkOverlap(two, 'lock')).toEqual([]);
    const three = holdsOf([
      ...sharedHold('a', 'a:1', 's', 1, 5, 10, [11, 40], 2),
      ...sharedHold('b', 'b:1', 's', 2, 5, 12, [13, 30], 2),
      ...sharedHold('c', 'c:1', 's', 3, 5, 30, [35], 2),
    ]);
    const found = checkOverlap(three, 'permit');
    expect(found.map((a) => a.checker)).toEqual(['permit-limit']);
    expect(found[0]?.procs).toEqual(['c', 'a', 'b']);
  });

  it('token-order across modes: exclusive above every earlier hold, shared above earlier exclusive ones', () => {
    // Shared holds granted together may become valid in any order.
    const together = holdsOf([
      ...hold('w', 'w:1', 'x', 1, 1, [2]),
      ...sharedHold('a', 'a:1', 'x', 3, 5, 10, [11]),
      ...sharedHold('b', 'b:1', 'x', 2, 5, 12, [13]),
      ...hold('c', 'c:1', 'x', 4, 20, [21]),
    ]);
    expect(checkTokens(together)).toEqual([]);
    // An exclusive token below an earlier shared one.
    const writerBelow = holdsOf([...sharedHold('a', 'a:1', 'x', 3, 5, 10, [11]), ...hold('c', 'c:1', 'x', 2, 20, [21])]);
    expect(checkTokens(writerBelow).map((a) => a.checker)).toEqual(['token-order']);
    // A shared token below an earlier exclusive one.
    const readerBelow = holdsOf([...hold('c', 'c:1', 'x', 3, 1, [2]), ...sharedHold('a', 'a:1', 'x', 2, 5, 10, [11])]);
    expect(checkTokens(readerBelow).map((a) => a.checker)).toEqual(['token-order']);
    // A shared token below one of a shared hold that became valid before it was asked for.
    const askedLater = holdsOf([...sharedHold('a', 'a:1', 'x', 3, 1, 2, [3]), ...sharedHold('b', 'b:1', 'x', 2, 5, 10, [11])]);
    expect(checkTokens(askedLater).map((a) => a.message)).toEqual([
      'lock:x: b:1 (shared) token 2 valid [0.000 ms, 0.000 ms] is not greater than a:1 (shared) token 3 valid [0.000 ms, 0.000 ms], which became valid earlier, before it was asked for at 0.000 ms',
    ]);
    // ...but not one that became valid while it waited.
    const askedBefore = holdsOf([...sharedHold('a', 'a:1', 'x', 3, 1, 6, [7]), ...sharedHold('b', 'b:1', 'x', 2, 5, 10, [11])]);
    expect(checkTokens(askedBefore)).toEqual([]);
    // The same token twice, also between shared holds; permits are judged as shared holds.
    const twice = holdsOf([...sharedHold('a', 'a:1', 'x', 3, 1, 6, [7]), ...sharedHold('b', 'b:1', 'x', 3, 5, 10, [11])]);
    expect(checkTokens(twice).map((a) => a.checker)).toEqual(['token-order']);
    const permits = holdsOf([...sharedHold('a', 'a:1', 's', 3, 1, 2, [3], 2), ...sharedHold('b', 'b:1', 's', 2, 5, 10, [11], 2)]);
    expect(checkTokens(permits).map((a) => a.checker)).toEqual(['token-order']);
  });

  it('register: shared writes are fenced by exclusive tokens only, exclusive ones by every mode', () => {
    const logged: RegisterWrite[] = [];
    const register = new FencedRegister((w) => logged.push(w));
    const w = (hold: string, token: number, shared: boolean): boolean =>
      register.write({ proc: 'p', hold, key: 'lock:x', token: BigInt(token), shared, seq: 0, look: 0 }, 0);
    expect(w('e1', 5, false)).toBe(true);
    expect([w('s7', 7, true), w('s6', 6, true), w('s7', 7, true)]).toEqual([true, true, true]);
    // A writer older than a reader that came after it is refused; so is a reader older than the newest writer.
    expect(w('e1', 5, false)).toBe(false);
    expect(w('s4', 4, true)).toBe(false);
    expect(w('e8', 8, false)).toBe(true);
    expect(w('s7', 7, true)).toBe(false);
    expect(logged.map((l) => l.shared === true)).toEqual([false, true, true, true, false, true, false, true]);
    expect(logged[6]?.newest).toBe('7');
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
