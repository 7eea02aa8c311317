/**
 * What the chaos harness and its client processes say to each other, and what they record.
 *
 * Times are nanoseconds of process.hrtime.bigint() (CLOCK_MONOTONIC, one clock for every process of the host) minus
 * the campaign's epoch, as plain numbers: exact up to 104 days of campaign, and cheap to compare.
 *
 * Each client incarnation appends its history to a file of its own with a synchronous write per record, so the
 * history of a process the nemesis SIGKILLs is complete up to the kill. The harness records the register's writes
 * and the nemesis's actions itself.
 */

/**
 * Deliberately unsafe behaviours of client 0, one per checker, for the negative controls:
 * - no-check: writes while holding without reading `held.valid` (as if always valid)         -> register
 * - skip-lock: writes under a lock it never acquired                                          -> lock-overlap
 * - small-token: reports the token of its first hold of a name for every later hold           -> token-order
 * - ignore-leader-signal: keeps acting as leader without reading `leadership.valid`           -> leader-overlap
 * - drop-event: its watcher ignores every event about client 2                                -> convergence
 * - partitioner-miss: reports its partitioner's members without client 1                      -> convergence
 * - pending-op: starts an operation that never settles                                         -> settle
 * - leak-timer: leaves an interval timer running after close()                                 -> leak
 * - over-limit: takes its "permits" as an exclusive lock of its own instead of the semaphore   -> permit-limit
 * - write-under-shared: uses its shared holds as exclusive ones (a writer under a read lock)   -> lock-overlap, register
 */
export const UNSAFE_MODES = [
  'no-check',
  'skip-lock',
  'small-token',
  'ignore-leader-signal',
  'drop-event',
  'partitioner-miss',
  'pending-op',
  'leak-timer',
  'over-limit',
  'write-under-shared',
] as const;
export type UnsafeMode = (typeof UNSAFE_MODES)[number];

/** Everything a client process needs, passed as its one argument (JSON). */
export interface ClientConfig {
  readonly index: number;
  readonly incarnation: number;
  /** Member id, also the process's name in the history: `c<index>.<incarnation>`. */
  readonly proc: string;
  readonly url: string;
  readonly namespace: string;
  readonly ttlMs: number;
  readonly seed: number;
  /** process.hrtime.bigint() of the campaign's start, as a decimal string. */
  readonly epoch: string;
  readonly history: string;
  /** Hot lock names. */
  readonly locks: readonly string[];
  /** Semaphore names, each of PERMIT_LIMIT permits (used only where the driver has shared locks). */
  readonly semaphores: readonly string[];
  readonly unsafe: UnsafeMode | undefined;
  /** How long stop() waits for operations in flight to settle before reporting them as pending. */
  readonly settleMs: number;
}

/** The groups the workload uses: joins/leaves/updates and watches; partitioners; elections. */
export const GROUP_MEMBERS = 'members';
export const GROUP_PARTITION = 'workers';
export const GROUP_ELECTION = 'leaders';

/**
 * Where each client ends once quiesced: client 1 outside the watched group, client 2 with no partitioner, every other
 * client in the group and with a partitioner. A membership let go of during the faults must stay gone, so a
 * membership that a restored session brings back shows as a difference.
 */
export function finalRoles(index: number): { member: boolean; partitioner: boolean } {
  return { member: index !== 1, partitioner: index !== 2 };
}

/** The limit of every semaphore of the workload: small, so that permits are often all taken. */
export const PERMIT_LIMIT = 2;

/**
 * A register key: `lock:<name>` for a lock (exclusive and shared holds of a name share it), `permit:<name>` for a
 * semaphore's permits, `lead:<group>` for a leadership.
 */
export type HoldKind = 'lock' | 'permit' | 'lead';

// ---- history records (client side), one JSON object per line

export type ClientRecord =
  | { k: 'start'; proc: string; pid: number; at: number }
  /** An operation invoked. */
  | { k: 'inv'; op: number; f: string; name?: string; at: number }
  /** ...and how it ended. */
  | { k: 'ok'; op: number; at: number; token?: string }
  | { k: 'fail'; op: number; at: number; code: string; message: string }
  /**
   * A lock, permit or leadership held: `at` is when its acquire/campaign resolved, `asked` (when recorded) a moment
   * before it was asked for. `shared` marks a shared lock hold or a permit; `limit` is a permit's semaphore limit.
   */
  | {
      k: 'hold';
      hold: string;
      kind: HoldKind;
      name: string;
      token: string;
      at: number;
      asked?: number;
      shared?: boolean;
      limit?: number;
    }
  /** A look at `valid` that said true (stamped before the look), followed by a register write. */
  | { k: 'write'; hold: string; seq: number; at: number }
  /** The first look that said invalid; `at` stamped before the look. */
  | { k: 'invalid'; hold: string; at: number; code: string }
  /** The holder stops using the hold (before release or resign starts). */
  | { k: 'end'; hold: string; at: number }
  | { k: 'session'; event: string; at: number }
  | { k: 'crash'; at: number; error: string }
  /** Written when told to stop, once every operation settled or the settle time ran out. */
  | { k: 'final'; at: number; pending: Array<{ op: number; f: string }> }
  /** Handles still keeping the process alive after close(), beyond those present before connect(). */
  | { k: 'census'; at: number; leaked: string[] };

/** A client record with the process that wrote it. */
export type Recorded = ClientRecord & { proc: string };

// ---- harness records

export interface RegisterWrite {
  proc: string;
  hold: string;
  key: string;
  token: string;
  /** Made under a shared hold or a permit: fenced by exclusive tokens only (see register.ts). */
  shared?: boolean;
  seq: number;
  /** The client's look time. */
  look: number;
  /** When the register received it. */
  at: number;
  accepted: boolean;
  /** The newest token the register had seen for the key before this write, of the holds that fence it. */
  newest: string | undefined;
}

export interface NemesisRecord {
  at: number;
  episode: number;
  kind: string;
  phase: 'start' | 'heal' | 'skip';
  /** The client a client or link fault hit (pause-holder's actual victim); -1 for a fault of the backend. */
  client: number;
  detail: string;
}

// ---- IPC

export type ToHarness =
  /** Connected; `sharedLocks` says whether the workload takes shared holds and permits (the driver has them). */
  | { t: 'ready'; sharedLocks: boolean }
  | { t: 'write'; hold: string; key: string; token: string; shared: boolean; seq: number; look: number }
  | { t: 'hold'; key: string; on: boolean }
  | { t: 'quiet' }
  | { t: 'views'; id: number; views: Views | { error: string } }
  | { t: 'done' };

export type ToClient = { t: 'ack'; seq: number; accepted: boolean } | { t: 'quiesce' } | { t: 'views'; id: number } | { t: 'stop' };

/** What one client sees after the nemesis healed, for the convergence checker. */
export interface Views {
  /** members() of the watched group, as [id, capabilities JSON], sorted. */
  members: Array<[string, string]>;
  /** Its watcher's view of that group, the same shape. */
  watch: Array<[string, string]>;
  /** members() of the partitioned group (ids). */
  partitionMembers: string[];
  /** Its partitioner's members(); null when it has none open. */
  partitioner: string[] | null;
}
