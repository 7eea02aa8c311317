/**
 * A lock's line as its contender nodes spell it. Each request is one ephemeral sequential node whose name carries
 * everything the grant rule needs, so one listing decides who holds and whom a waiter watches:
 *
 *   <session>-<seq>                   exclusive, slot 0 (exclusive locks and leadership: the layout they always had)
 *   <session>-s<slot>-<seq>           a shared hold of a lock
 *   <session>-s<slot>.l<limit>-<seq>  a semaphore permit
 *
 * The node's data is the member id. Who waits on what is Curator's shape: an exclusive request on its predecessor, a
 * shared hold on the last exclusive request before it, and a permit (whose grant needs any one of the requests ahead
 * to go) on its predecessor's grant or departure, except the first permit waiting, which watches the whole line.
 * A request granted after its creation writes its data once (the grant write, see locks.ts): a node's version above
 * 0 says it was granted, and its mzxid is its token.
 */
import { holdsAt, type LockMode } from '../../src/driver.js';

/** One request, read from its node's name. */
export interface Request {
  readonly node: string;
  readonly session: string;
  readonly slot: number;
  readonly shared: boolean;
  readonly limit: number;
  readonly sequence: number;
}

const NODE = /^([0-9a-f]{16})(?:-([sx])(\d+)(?:\.l(\d+))?)?-(\d+)$/;

/** What a session's node for `mode` is created as (ZooKeeper appends the sequence). */
export function prefixOf(session: string, mode: LockMode): string {
  if (!mode.shared && mode.slot === 0 && mode.limit === 0) return `${session}-`;
  return `${session}-${mode.shared ? 's' : 'x'}${String(mode.slot)}${mode.limit > 0 ? `.l${String(mode.limit)}` : ''}-`;
}

export function parseRequest(node: string): Request | undefined {
  const match = NODE.exec(node);
  if (!match) return undefined;
  const [, session = '', kind, slot, limit, sequence = ''] = match;
  return {
    node,
    session,
    slot: slot === undefined ? 0 : Number(slot),
    shared: kind === 's',
    limit: limit === undefined ? 0 : Number(limit),
    sequence: Number(sequence),
  };
}

/** The requests among a lock's children, in arrival order. */
export function lineOf(children: readonly string[]): Request[] {
  const line: Request[] = [];
  for (const child of children) {
    const request = parseRequest(child);
    if (request) line.push(request);
  }
  return line.sort((a, b) => a.sequence - b.sequence);
}

/**
 * The requests that count, for a semaphore whose requests must all name one limit: those with `limit` (the first
 * request's when not given). One with another limit was refused and is on its way out.
 */
export function agreeing(line: readonly Request[], limit = line[0]?.limit): Request[] {
  return line.every((r) => r.limit === limit) ? [...line] : line.filter((r) => r.limit === limit);
}

/** Where a node stands in its line (of agreeing requests). */
export type Standing =
  | { readonly state: 'gone' }
  /** `predecessor`: the request just ahead of it, holding too. */
  | { readonly state: 'holds'; readonly predecessor: Request | undefined }
  /**
   * Waits; `watch` is the node whose deletion (or, with `grant`, whose grant too) may let it hold, or undefined for
   * the first permit waiting: any request ahead that goes lets it hold, so it watches the line. `waitingAhead`: the
   * shared requests ahead of it that wait too.
   */
  | { readonly state: 'waits'; readonly watch: string | undefined; readonly grant: boolean; readonly waitingAhead: string[] };

export function standingOf(line: readonly Request[], node: string): Standing {
  const position = line.findIndex((r) => r.node === node);
  const own = line[position];
  if (own === undefined) return { state: 'gone' };
  const holding = holdsAt(line);
  if (position < holding) return { state: 'holds', predecessor: line[position - 1] };
  let lastExclusive: Request | undefined;
  const waitingAhead: string[] = [];
  for (let i = 0; i < position; i++) {
    const ahead = line[i];
    if (!ahead?.shared) lastExclusive = ahead;
    else if (i >= holding) waitingAhead.push(ahead.node);
  }
  const predecessor = line[position - 1]?.node ?? '';
  if (!own.shared) return { state: 'waits', watch: predecessor, grant: false, waitingAhead };
  // A shared request waits only for the exclusive ones ahead of it to go, unless the limit holds it back.
  if (lastExclusive) return { state: 'waits', watch: lastExclusive.node, grant: false, waitingAhead };
  if (position === holding) return { state: 'waits', watch: undefined, grant: false, waitingAhead };
  return { state: 'waits', watch: predecessor, grant: true, waitingAhead };
}

/** The holders, a prefix of the line. */
export function holdersOf(line: readonly Request[]): Request[] {
  return line.slice(0, holdsAt(line));
}
