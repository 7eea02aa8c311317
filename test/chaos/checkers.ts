/**
 * The checkers over a campaign's recorded history. Each has a negative control (an unsafe client mode in
 * protocol.ts) that a real short campaign must catch: a checker that cannot fail proves nothing.
 *
 * Validity. A hold (a lock or a leadership) is valid from its acquire or campaign resolving to the earliest of its
 * release starting, its signal aborting and the session deadline the process computed itself. The deadline is not
 * public, so the record is the sound part of that interval that the process could observe: from the resolve to its
 * last look at which `valid` said true (stamped before the look, see client.ts). Every register write follows such
 * a look, so the last write's look time ends the recorded validity.
 *
 * - lock-overlap / leader-overlap: recorded validity intervals of one lock name (one election group) never overlap,
 *   on the host's monotonic clock, except two shared holds of a lock. At most one exclusive holder and no shared one
 *   beside it, at most one leader with a live signal, at any time.
 * - permit-limit: at no instant more than the semaphore's limit of permits of one name are valid.
 * - register: a write that reached the register at or before its holder's recorded validity end was accepted. A
 *   refused write therefore reached the register after its holder's validity had ended: only a holder stopped between
 *   its look and the register's answer can see a refusal. (Shared holds and permits are fenced by exclusive tokens
 *   only, see register.ts.)
 * - token-order: every token of a name is handed out once. Tokens grow with every grant, in every mode, so ordered by
 *   when they became valid, an exclusive hold's token is greater than every earlier hold's; a shared hold's or permit's
 *   is greater than every earlier exclusive hold's (an earlier shared one may have been granted after it, together
 *   with it, and noticed first) and than every hold's that became valid before it was asked for (that one was granted
 *   before this one was asked for; checkIntervals in test/support/history.ts uses the weaker "ended before").
 *   Leaderships' terms as exclusive holds'.
 * - convergence: once the nemesis healed and the workload quiesced, within TTL + the driver's detection delay + 1 s,
 *   every watcher's view equals members(), every partitioner's members equal the group's, every client agrees, and
 *   the membership is exactly the live clients. (Judged by the harness while it runs; recorded as its outcome.)
 * - settle: every operation of a process that lived to the end ended (no hung promise), and every such process
 *   finished its shutdown.
 * - leak: after close(), a client process holds no handle beyond those it had before connect(), and exits by itself.
 * - crash / errors: no process died of an uncaught exception or unhandled rejection, and every failed operation
 *   failed with a ConcordError of a code that faults can cause (not ERR_INVALID_ARGUMENT, ERR_REFUSED, ...).
 */
import type { HoldKind, NemesisRecord, Recorded, RegisterWrite } from './protocol.js';

export const CHECKERS = [
  'lock-overlap',
  'permit-limit',
  'leader-overlap',
  'register',
  'token-order',
  'convergence',
  'settle',
  'leak',
  'crash',
  'errors',
] as const;
export type Checker = (typeof CHECKERS)[number];

export interface Anomaly {
  readonly checker: Checker;
  readonly message: string;
  /** When it happened (ns since the epoch), to print the history around it. */
  readonly at: number;
  /** Processes and register keys involved, to pick the history to print. */
  readonly procs: readonly string[];
  readonly keys: readonly string[];
}

export interface ProcOutcome {
  readonly proc: string;
  /** SIGKILLed by the nemesis: its unfinished operations are excused. */
  readonly killed: boolean;
  /** It exited by itself after the harness told it to stop. */
  readonly exited: boolean;
  readonly exitCode: number | null;
  readonly signal: string | null;
}

export interface ConvergenceOutcome {
  readonly ok: boolean;
  /** How long after the clients quiesced every view agreed. */
  readonly ms: number | undefined;
  /** What still disagreed at the deadline. */
  readonly problems: readonly string[];
  readonly at: number;
}

export interface CampaignHistory {
  readonly records: readonly Recorded[];
  readonly register: readonly RegisterWrite[];
  readonly nemesis: readonly NemesisRecord[];
  readonly procs: readonly ProcOutcome[];
  readonly convergence: ConvergenceOutcome | undefined;
  /** Processes that never finished quiescing. */
  readonly unquiet: readonly string[];
}

export interface Hold {
  readonly hold: string;
  readonly proc: string;
  readonly kind: HoldKind;
  readonly key: string;
  readonly token: bigint;
  /** A shared lock hold or a permit. */
  readonly shared: boolean;
  /** A permit's semaphore limit. */
  readonly limit: number | undefined;
  /** A moment before it was asked for (its start when not recorded). */
  readonly asked: number;
  /** The acquire or campaign resolved. */
  readonly start: number;
  /** The last look at which it was valid; undefined when no look said so. */
  lastValid: number | undefined;
  writes: number;
}

/** Codes a fault can legitimately cause; any other failure is a defect (of the library or of the workload). */
const EXPECTED_CODES = new Set([
  'ERR_CONNECTION',
  'ERR_ABORTED',
  'ERR_CLOSED',
  'ERR_SESSION_LOST',
  'ERR_GROUP_NOT_FOUND',
  'ERR_GROUP_EXISTS',
  'ERR_MEMBER_EXISTS',
  'ERR_MEMBER_NOT_JOINED',
  'ERR_LOCK_TIMEOUT',
  'ERR_LOCK_LOST',
  'ERR_LEADERSHIP_LOST',
]);

/** Every hold in the history, with its validity as recorded by its writes. */
export function holdsOf(records: readonly Recorded[]): Map<string, Hold> {
  const holds = new Map<string, Hold>();
  for (const r of records) {
    if (r.k === 'hold') {
      holds.set(r.hold, {
        hold: r.hold,
        proc: r.proc,
        kind: r.kind,
        key: `${r.kind}:${r.name}`,
        token: BigInt(r.token),
        shared: r.shared === true,
        limit: r.limit,
        asked: r.asked ?? r.at,
        start: r.at,
        lastValid: undefined,
        writes: 0,
      });
    }
  }
  for (const r of records) {
    if (r.k !== 'write') continue;
    const h = holds.get(r.hold);
    if (!h) continue;
    h.writes++;
    h.lastValid = h.lastValid === undefined ? r.at : Math.max(h.lastValid, r.at);
  }
  return holds;
}

/** Holds with a non-empty recorded validity, per key, ordered by start. */
function validByKey(holds: ReadonlyMap<string, Hold>, kind: HoldKind): Map<string, Hold[]> {
  const byKey = new Map<string, Hold[]>();
  for (const h of holds.values()) {
    if (h.kind !== kind || h.lastValid === undefined) continue;
    byKey.set(h.key, [...(byKey.get(h.key) ?? []), h]);
  }
  for (const list of byKey.values()) list.sort((a, b) => a.start - b.start || (a.hold < b.hold ? -1 : 1));
  return byKey;
}

const ms = (ns: number): string => `${(ns / 1e6).toFixed(3)} ms`;
const show = (h: Hold): string =>
  `${h.hold}${h.shared && h.kind === 'lock' ? ' (shared)' : ''} token ${h.token} valid [${ms(h.start)}, ${ms(h.lastValid ?? h.start)}]`;

/**
 * No recorded validity interval of one key overlaps another that excludes it (closed intervals: a shared instant
 * overlaps): an exclusive hold or a leadership excludes every other, a shared hold every exclusive one; and no permit
 * becomes valid while its semaphore's limit of permits are.
 */
export function checkOverlap(holds: ReadonlyMap<string, Hold>, kind: HoldKind): Anomaly[] {
  const checker: Checker = kind === 'lock' ? 'lock-overlap' : kind === 'permit' ? 'permit-limit' : 'leader-overlap';
  const anomalies: Anomaly[] = [];
  for (const [key, list] of validByKey(holds, kind)) {
    // The holds still valid when each one starts; one inside a long earlier hold is caught too.
    let open: Hold[] = [];
    for (const h of list) {
      open = open.filter((o) => (o.lastValid ?? o.start) >= h.start);
      if (kind === 'permit') {
        const limit = h.limit ?? 1;
        if (open.length >= limit) {
          anomalies.push({
            checker,
            message: `${key}: ${show(h)} starts while ${open.length} permits of limit ${limit} are valid: ${open.map(show).join(', ')}`,
            at: h.start,
            procs: [h.proc, ...open.map((o) => o.proc)],
            keys: [key],
          });
        }
      } else {
        // Compared with the latest-ending hold it must not overlap, one report per hold.
        const latest = open
          .filter((o) => !h.shared || !o.shared)
          .reduce<Hold | undefined>((a, o) => (a === undefined || (o.lastValid ?? 0) > (a.lastValid ?? 0) ? o : a), undefined);
        if (latest?.lastValid !== undefined) {
          anomalies.push({
            checker,
            message: `${key}: ${show(h)} overlaps ${show(latest)} by ${ms(latest.lastValid - h.start)}`,
            at: h.start,
            procs: [h.proc, latest.proc],
            keys: [key],
          });
        }
      }
      open.push(h);
    }
  }
  return anomalies;
}

/** A refused write reached the register only after its holder's recorded validity ended. */
export function checkRegister(holds: ReadonlyMap<string, Hold>, writes: readonly RegisterWrite[]): Anomaly[] {
  const anomalies: Anomaly[] = [];
  for (const w of writes) {
    if (w.accepted) continue;
    const h = holds.get(w.hold);
    const what = `${w.key}: write #${w.seq} of ${w.hold} with token ${w.token} refused (newest ${w.newest ?? 'none'}) at ${ms(w.at)}`;
    if (!h) {
      anomalies.push({
        checker: 'register',
        message: `${what}, but its hold was never recorded`,
        at: w.at,
        procs: [w.proc],
        keys: [w.key],
      });
    } else if (h.lastValid !== undefined && w.at <= h.lastValid) {
      anomalies.push({
        checker: 'register',
        message: `${what}, within its holder's validity (valid until ${ms(h.lastValid)})`,
        at: w.at,
        procs: [w.proc],
        keys: [w.key],
      });
    }
  }
  return anomalies;
}

/**
 * Per key, every token is handed out once, and tokens grow with every grant (see the header): an exclusive hold's (a
 * term's) is greater than every hold's that became valid before it; a shared hold's or permit's is greater than every
 * exclusive hold's that became valid before it and than every hold's that became valid before it was asked for.
 */
export function checkTokens(holds: ReadonlyMap<string, Hold>): Anomaly[] {
  const anomalies: Anomaly[] = [];
  for (const kind of ['lock', 'permit', 'lead'] as const) {
    for (const [key, list] of validByKey(holds, kind)) {
      // largestBefore[i]: the hold of the largest token among the first i to become valid.
      const largestBefore: Array<Hold | undefined> = [undefined];
      for (const h of list) {
        const before = largestBefore[largestBefore.length - 1];
        largestBefore.push(!before || h.token > before.token ? h : before);
      }
      /** The hold of the largest token among those that became valid before `at`. */
      const validBefore = (at: number): Hold | undefined => {
        let low = 0;
        let high = list.length;
        while (low < high) {
          const mid = (low + high) >> 1;
          if ((list[mid] as Hold).start < at) low = mid + 1;
          else high = mid;
        }
        return largestBefore[low];
      };
      const seen = new Map<bigint, Hold>();
      let max: Hold | undefined;
      let maxExclusive: Hold | undefined;
      for (const h of list) {
        const bounds = h.shared ? [maxExclusive, validBefore(h.asked)] : [max];
        const bound = bounds.find((b) => b !== undefined && h.token <= b.token);
        const twin = seen.get(h.token);
        if (twin) {
          anomalies.push({
            checker: 'token-order',
            message: `${key}: ${show(h)} carries the token of ${show(twin)}`,
            at: h.start,
            procs: [h.proc, twin.proc],
            keys: [key],
          });
        } else if (bound) {
          const why = h.shared && bound.start < h.asked && bound.shared ? `, before it was asked for at ${ms(h.asked)}` : '';
          anomalies.push({
            checker: 'token-order',
            message: `${key}: ${show(h)} is not greater than ${show(bound)}, which became valid earlier${why}`,
            at: h.start,
            procs: [h.proc, bound.proc],
            keys: [key],
          });
        }
        seen.set(h.token, h);
        if (!max || h.token > max.token) max = h;
        if (!h.shared && (!maxExclusive || h.token > maxExclusive.token)) maxExclusive = h;
      }
    }
  }
  return anomalies;
}

/** Every operation of a process that lived to the end settled, and the process finished. */
export function checkSettle(history: CampaignHistory): Anomaly[] {
  const anomalies: Anomaly[] = [];
  const open = new Map<string, Map<number, { f: string; at: number; name?: string }>>();
  const finished = new Set<string>();
  const lastAt = new Map<string, number>();
  for (const r of history.records) {
    lastAt.set(r.proc, r.at);
    const ops = open.get(r.proc) ?? new Map<number, { f: string; at: number; name?: string }>();
    open.set(r.proc, ops);
    if (r.k === 'inv') ops.set(r.op, { f: r.f, at: r.at, ...(r.name === undefined ? {} : { name: r.name }) });
    else if (r.k === 'ok' || r.k === 'fail') ops.delete(r.op);
    else if (r.k === 'census') finished.add(r.proc);
  }
  for (const p of history.procs) {
    if (p.killed) continue;
    for (const [op, { f, at, name }] of open.get(p.proc) ?? []) {
      anomalies.push({
        checker: 'settle',
        message: `${p.proc}: operation #${op} ${f}${name === undefined ? '' : ` ${name}`} started at ${ms(at)} never settled`,
        at,
        procs: [p.proc],
        keys: name === undefined ? [] : [`${f.startsWith('permit.') ? 'permit' : 'lock'}:${name}`],
      });
    }
    if (!finished.has(p.proc)) {
      const how = p.signal ? `killed by ${p.signal}` : `exit code ${p.exitCode}`;
      anomalies.push({
        checker: 'settle',
        message: `${p.proc} did not finish its shutdown (${how})`,
        at: lastAt.get(p.proc) ?? 0,
        procs: [p.proc],
        keys: [],
      });
    }
  }
  for (const proc of history.unquiet) {
    anomalies.push({ checker: 'settle', message: `${proc} never finished quiescing`, at: lastAt.get(proc) ?? 0, procs: [proc], keys: [] });
  }
  return anomalies;
}

/** Nothing left open after close(), and the process exited by itself. */
export function checkLeaks(history: CampaignHistory): Anomaly[] {
  const anomalies: Anomaly[] = [];
  for (const r of history.records) {
    if (r.k === 'census' && r.leaked.length > 0) {
      anomalies.push({
        checker: 'leak',
        message: `${r.proc} left open after close(): ${r.leaked.join(', ')}`,
        at: r.at,
        procs: [r.proc],
        keys: [],
      });
    }
  }
  for (const p of history.procs) {
    if (!p.killed && !p.exited) {
      anomalies.push({ checker: 'leak', message: `${p.proc} did not exit by itself after close()`, at: 0, procs: [p.proc], keys: [] });
    }
  }
  return anomalies;
}

/** No crash, and every failure a ConcordError that faults can cause. */
export function checkErrors(records: readonly Recorded[]): Anomaly[] {
  const anomalies: Anomaly[] = [];
  const ops = new Map<string, string>();
  for (const r of records) {
    if (r.k === 'inv') ops.set(`${r.proc}#${r.op}`, `${r.f}${r.name === undefined ? '' : ` ${r.name}`}`);
    if (r.k === 'crash')
      anomalies.push({ checker: 'crash', message: `${r.proc} crashed: ${r.error}`, at: r.at, procs: [r.proc], keys: [] });
    if (r.k === 'fail' && !EXPECTED_CODES.has(r.code)) {
      anomalies.push({
        checker: 'errors',
        message: `${r.proc}: ${ops.get(`${r.proc}#${r.op}`) ?? `#${r.op}`} failed with ${r.code}: ${r.message}`,
        at: r.at,
        procs: [r.proc],
        keys: [],
      });
    }
  }
  return anomalies;
}

export function checkConvergence(history: CampaignHistory): Anomaly[] {
  const c = history.convergence;
  if (!c) return [];
  const anomalies: Anomaly[] = [];
  if (!c.ok)
    anomalies.push({
      checker: 'convergence',
      message: `views disagree at the deadline: ${c.problems.join('; ')}`,
      at: c.at,
      procs: [],
      keys: [],
    });
  return anomalies;
}

/** Every checker over one campaign's history. */
export function checkAll(history: CampaignHistory): Anomaly[] {
  const holds = holdsOf(history.records);
  return [
    ...checkOverlap(holds, 'lock'),
    ...checkOverlap(holds, 'permit'),
    ...checkOverlap(holds, 'lead'),
    ...checkRegister(holds, history.register),
    ...checkTokens(holds),
    ...checkConvergence(history),
    ...checkSettle(history),
    ...checkLeaks(history),
    ...checkErrors(history.records),
  ];
}
