/**
 * Lock-history checkers for the safety scenarios: mutual exclusion (or the mode rules of shared holds and semaphore
 * permits) and strictly increasing fencing tokens.
 *
 * checkHistory replays events recorded in one process (or stamped with a shared logical clock);
 * checkIntervals compares [start, end] holding intervals recorded by several processes on one host with
 * process.hrtime.bigint(), which is CLOCK_MONOTONIC and therefore comparable across processes.
 */

export interface LockEvent {
  client: string;
  kind: 'acquired' | 'released';
  token: bigint;
  /** Monotonic time in ms (performance.now()) or a shared logical counter. */
  at: number;
  /** A shared hold (or a semaphore permit): coexists with other shared holds, never with an exclusive one. */
  shared?: boolean;
  /**
   * On 'acquired': when the acquisition was asked for (default: `at`). A client may see its shared grant late, after a
   * shared hold granted later has come and gone: only holds released before it asked must have smaller tokens.
   */
  asked?: number;
}

export interface CheckOptions {
  /** A semaphore's limit: at most this many holders at once (every event is then a permit). */
  readonly limit?: number;
}

export interface CheckResult {
  ok: boolean;
  violations: string[];
}

/**
 * Replays events in time order (stable: equal `at` keeps array order). Violations:
 * - overlap: an exclusive 'acquired' while anyone holds, a shared one while an exclusive holder holds, or a permit
 *   beyond the limit;
 * - token: a token seen before; an exclusive token not greater than every earlier token; a shared token not greater
 *   than every token of an exclusive hold acquired earlier or of a hold released before it was asked for (shared
 *   holds granted together may be recorded in any order, so no order is required among them);
 * - release: a 'released' when nobody holds, by a client other than the holder, or with another token.
 * A lock still held at the end is not a violation.
 */
export function checkHistory(events: readonly LockEvent[], options: CheckOptions = {}): CheckResult {
  const violations: string[] = [];
  const ordered = events
    .map((event, index) => ({ event, index }))
    .sort((a, b) => a.event.at - b.event.at || a.index - b.index)
    .map(({ event }) => event);
  const limit = options.limit;

  // Every current holder: after an overlap there are several, and each later event is judged against all of them,
  // so one violation does not cascade into a report for every event after it.
  const holders: LockEvent[] = [];
  const seen = new Set<bigint>();
  let maxToken: LockEvent | undefined;
  /** The largest token of the exclusive holds acquired so far: a shared acquisition must exceed it. */
  let floor: LockEvent | undefined;
  const releases: LockEvent[] = [];
  /** The release of the largest token before `at`. */
  const releasedBefore = (at: number): LockEvent | undefined => {
    let largest: LockEvent | undefined;
    for (const r of releases) if (r.at < at && (!largest || r.token > largest.token)) largest = r;
    return largest;
  };
  for (const e of ordered) {
    const shared = limit !== undefined || e.shared === true;
    const what = `${e.client} ${e.kind}${shared && limit === undefined ? ' shared' : ''} token ${e.token} at ${e.at}`;
    if (e.kind === 'acquired') {
      const conflicting = holders.filter((h) => !shared || (limit === undefined && h.shared !== true));
      for (const h of conflicting) {
        const same = h.client === e.client ? ' (the same client, without releasing)' : '';
        violations.push(`overlap: ${what} while ${h.client} holds token ${h.token} since ${h.at}${same}`);
      }
      if (limit !== undefined && holders.length >= limit) {
        violations.push(`limit: ${what} while ${String(holders.length)} hold permits of a semaphore of limit ${String(limit)}`);
      }
      const released = shared ? releasedBefore(e.asked ?? e.at) : undefined;
      const bound = shared ? [floor, released].find((b) => b !== undefined && e.token <= b.token) : maxToken;
      if (seen.has(e.token)) {
        violations.push(`token: ${what} was handed out before`);
      } else if (bound && e.token <= bound.token) {
        violations.push(`token: ${what} is not greater than token ${bound.token} acquired by ${bound.client} at ${bound.at}`);
      }
      seen.add(e.token);
      holders.push(e);
      if (!maxToken || e.token > maxToken.token) maxToken = e;
      if (!shared && (!floor || e.token > floor.token)) floor = e;
    } else {
      const index = holders.findIndex((h) => h.client === e.client && h.token === e.token);
      if (index >= 0) {
        holders.splice(index, 1);
        releases.push(e);
      } else if (holders.length === 0) {
        violations.push(`release: ${what} while nobody holds the lock`);
      } else {
        // A stray release frees nothing: the real holders keep the lock.
        const held = holders.map((h) => `${h.client} holds token ${h.token} since ${h.at}`).join(', ');
        violations.push(`release: ${what} but ${held}`);
      }
    }
  }
  return { ok: violations.length === 0, violations };
}

export interface HoldInterval {
  client: string;
  token: bigint;
  /** process.hrtime.bigint() (ns) just after the acquisition was confirmed, or any shared monotonic number. */
  start: bigint | number;
  /** process.hrtime.bigint() (ns) just before the release was sent. */
  end: bigint | number;
  /** A shared hold (or a semaphore permit). */
  shared?: boolean;
  /**
   * process.hrtime.bigint() (ns) just before the acquisition was asked for (default: `start`). A process may notice
   * its shared grant late (descheduled on a loaded host), after a shared hold granted later has come and gone: only
   * holds that ended before it asked must have smaller tokens.
   */
  asked?: bigint | number;
}

function cmp(a: bigint | number, b: bigint | number): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/**
 * Checks holding intervals from any number of processes. Intervals are closed, so two that share an instant overlap.
 * Violations: an interval that ends before it starts; an exclusive interval overlapping any other, or more than
 * `limit` permits at one instant (a sweep over starts and ends); a token seen twice; an exclusive token not greater
 * than every token that started earlier; a shared token not greater than every token of an exclusive interval that
 * started earlier or of an interval that ended before it started (before it was `asked` for, when given).
 */
export function checkIntervals(intervals: readonly HoldInterval[], options: CheckOptions = {}): CheckResult {
  const violations: string[] = [];
  const show = (i: HoldInterval): string => `${i.client} token ${i.token} [${i.start}, ${i.end}]`;
  const limit = options.limit;
  const isShared = (i: HoldInterval): boolean => limit !== undefined || i.shared === true;
  for (const i of intervals) if (cmp(i.end, i.start) < 0) violations.push(`interval: ${show(i)} ends before it starts`);

  // Sweep: at an equal instant starts come first (closed intervals touching at a point overlap).
  const points = intervals
    .flatMap((i) => [
      { at: i.start, start: true, i },
      { at: i.end, start: false, i },
    ])
    .sort((a, b) => cmp(a.at, b.at) || (a.start === b.start ? 0 : a.start ? -1 : 1));
  const open = new Set<HoldInterval>();
  for (const point of points) {
    const i = point.i;
    if (!point.start) {
      open.delete(i);
      continue;
    }
    for (const other of open) {
      if (!isShared(i) || !isShared(other)) violations.push(`overlap: ${show(i)} overlaps ${show(other)}`);
    }
    if (limit !== undefined && open.size >= limit) {
      violations.push(`limit: ${show(i)} starts while ${String(open.size)} permits of limit ${String(limit)} are held`);
    }
    open.add(i);
  }

  // Tokens, in order of start.
  const ordered = [...intervals].sort((a, b) => cmp(a.start, b.start));
  const ended = [...intervals].sort((a, b) => cmp(a.end, b.end));
  // largestEnded[k]: the interval of the largest token among the first k to end.
  const largestEnded: Array<HoldInterval | undefined> = [undefined];
  for (const done of ended) {
    const before = largestEnded[largestEnded.length - 1];
    largestEnded.push(!before || done.token > before.token ? done : before);
  }
  /** The interval of the largest token among those that ended before `at`. */
  const endedBefore = (at: bigint | number): HoldInterval | undefined => {
    let low = 0;
    let high = ended.length;
    while (low < high) {
      const mid = (low + high) >> 1;
      if (cmp((ended[mid] as HoldInterval).end, at) < 0) low = mid + 1;
      else high = mid;
    }
    return largestEnded[low];
  };
  const seen = new Set<bigint>();
  let maxToken: HoldInterval | undefined;
  let maxExclusive: HoldInterval | undefined;
  for (const i of ordered) {
    const maxEnded = endedBefore(isShared(i) ? (i.asked ?? i.start) : i.start);
    const bounds = isShared(i) ? [maxExclusive, maxEnded] : [maxToken];
    const bound = bounds.find((b) => b !== undefined && i.token <= b.token);
    if (seen.has(i.token)) violations.push(`token: ${show(i)} was handed out before`);
    else if (bound) violations.push(`token: ${show(i)} is not greater than ${show(bound)}, which started earlier`);
    seen.add(i.token);
    if (!maxToken || i.token > maxToken.token) maxToken = i;
    if (!isShared(i) && (!maxExclusive || i.token > maxExclusive.token)) maxExclusive = i;
  }
  return { ok: violations.length === 0, violations };
}
