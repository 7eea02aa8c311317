/**
 * Lock-history checkers for the safety scenarios: mutual exclusion and strictly increasing fencing tokens.
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
}

export interface CheckResult {
  ok: boolean;
  violations: string[];
}

/**
 * Replays events in time order (stable: equal `at` keeps array order). Violations:
 * - overlap: an 'acquired' while another client (or the same one) still holds the lock;
 * - token: an acquired token not strictly greater than every earlier acquired token;
 * - release: a 'released' when nobody holds, by a client other than the holder, or with another token.
 * A lock still held at the end is not a violation.
 */
export function checkHistory(events: readonly LockEvent[]): CheckResult {
  const violations: string[] = [];
  const ordered = events
    .map((event, index) => ({ event, index }))
    .sort((a, b) => a.event.at - b.event.at || a.index - b.index)
    .map(({ event }) => event);

  // Every current holder: after an overlap there are several, and each later event is judged against all of them,
  // so one violation does not cascade into a report for every event after it.
  const holders: LockEvent[] = [];
  let maxToken: LockEvent | undefined;
  for (const e of ordered) {
    const what = `${e.client} ${e.kind} token ${e.token} at ${e.at}`;
    if (e.kind === 'acquired') {
      for (const h of holders) {
        const same = h.client === e.client ? ' (the same client, without releasing)' : '';
        violations.push(`overlap: ${what} while ${h.client} holds token ${h.token} since ${h.at}${same}`);
      }
      if (maxToken && e.token <= maxToken.token) {
        violations.push(`token: ${what} is not greater than token ${maxToken.token} acquired by ${maxToken.client} at ${maxToken.at}`);
      }
      holders.push(e);
      if (!maxToken || e.token > maxToken.token) maxToken = e;
    } else {
      const index = holders.findIndex((h) => h.client === e.client && h.token === e.token);
      if (index >= 0) {
        holders.splice(index, 1);
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
}

function cmp(a: bigint | number, b: bigint | number): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/**
 * Checks holding intervals from any number of processes. Intervals are closed, so two that share an instant overlap.
 * Violations: an interval that ends before it starts; two intervals that overlap (each interval is compared with the
 * latest-ending earlier one, so one inside a long earlier interval is caught too); tokens, ordered by start, not
 * strictly increasing (each is compared with the largest earlier token).
 */
export function checkIntervals(intervals: readonly HoldInterval[]): CheckResult {
  const violations: string[] = [];
  const show = (i: HoldInterval): string => `${i.client} token ${i.token} [${i.start}, ${i.end}]`;
  const ordered = [...intervals].sort((a, b) => cmp(a.start, b.start));

  let latestEnd: HoldInterval | undefined;
  let maxToken: HoldInterval | undefined;
  for (const i of ordered) {
    if (cmp(i.end, i.start) < 0) violations.push(`interval: ${show(i)} ends before it starts`);
    if (latestEnd && cmp(i.start, latestEnd.end) <= 0) violations.push(`overlap: ${show(i)} overlaps ${show(latestEnd)}`);
    if (maxToken && i.token <= maxToken.token) {
      violations.push(`token: ${show(i)} is not greater than ${show(maxToken)}, which started earlier`);
    }
    if (!latestEnd || cmp(i.end, latestEnd.end) > 0) latestEnd = i;
    if (!maxToken || i.token > maxToken.token) maxToken = i;
  }
  return { ok: violations.length === 0, violations };
}
