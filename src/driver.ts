/**
 * The driver interface, for writing a driver of your own: storage-level atomic steps. Everything that must behave the same on every backend
 * (validation, timeouts, cancellation, the session state machine, lost signals, the in-process waiter queue,
 * watch resynchronisation, election, partitioning) lives in the core, on top of these.
 *
 * Error contract: a driver method rejects with a ConcordError. Backend and network failures are ERR_CONNECTION
 * (the core treats them as "the session may still be alive" and retries); a refusal that retrying will not fix (out of
 * memory, a read-only replica, a missing permission) is ERR_REFUSED with the server's message; a session the backend
 * no longer knows is ERR_SESSION_LOST; semantic refusals use the codes below.
 */
import type { Capabilities, Features, Member } from './types.js';

/** Locks, semaphores and leaderships live in separate key spaces, so a lock, a semaphore and a group may share a name. */
export type LockKind = 'lock' | 'leader' | 'semaphore';

/**
 * How one request holds its name. Every request of a name waits in one FIFO line, and a request holds the name when
 * it is first in line, or when every request before it is shared and fewer than `limit` (when not 0) are before it:
 * an exclusive lock is held alone, shared holds of a lock coexist, and a semaphore has at most `limit` holders.
 * {@link holdsAt} is that rule. A session may have several requests of one name at once (three permits, two shared
 * holds): `slot` tells them apart, and unlock and cancelLock name it too.
 */
export interface LockMode {
  /** Which of this session's requests of kind/name it is: 0 for exclusive locks and leadership, any for the others. */
  readonly slot: number;
  /** Coexists with other shared requests: shared holds of a lock, and every semaphore permit. */
  readonly shared: boolean;
  /**
   * A semaphore's limit (every request of a name must name the same one: a driver rejects another with
   * ERR_INVALID_ARGUMENT, see `limitMismatch` in the kit); 0 for locks and leadership, whose shared holds are unbounded.
   */
  readonly limit: number;
}

/** The mode of exclusive locks and leadership, and what a driver assumes when a call names none. */
export const EXCLUSIVE: LockMode = Object.freeze({ slot: 0, shared: false, limit: 0 });

/**
 * The grant rule of {@link LockMode}: given the modes of a name's live requests in arrival order, how many at the head
 * of the line hold it. Those are always a prefix of the line.
 */
export function holdsAt(line: readonly Pick<LockMode, 'shared' | 'limit'>[]): number {
  if (line.length === 0) return 0;
  const first = line[0];
  if (first === undefined || !first.shared) return 1;
  let held = 0;
  for (const request of line) {
    if (!request.shared || (request.limit > 0 && held >= request.limit)) break;
    held++;
  }
  return held;
}

/** A position in a group's change history; opaque to the core, only handed back to the same driver. */
export type Revision = bigint | string;

/** A group's members and the revision they were read at. */
export interface GroupSnapshot {
  /** Whether the group exists. */
  readonly exists: boolean;
  /** Sorted by id. */
  readonly members: Member[];
  /** Events after this revision are exactly the changes not reflected in `members`. */
  readonly revision: Revision;
}

/** A change of a group, as a driver reports it to a WatchSink. */
export type DriverGroupEvent =
  | {
      /** A member joined. */
      readonly type: 'join';
      /** Its id. */
      readonly member: string;
      /** What it joined with. */
      readonly capabilities: Capabilities;
    }
  | {
      /** A member changed its capabilities. */
      readonly type: 'update';
      /** Its id. */
      readonly member: string;
      /** The new capabilities. */
      readonly capabilities: Capabilities;
    }
  | {
      /** A member left or its session ended. */
      readonly type: 'leave';
      /** Its id. */
      readonly member: string;
    };

/** Where a driver delivers a group's changes. */
export interface WatchSink {
  /** Changes in the order the backend applied them, each at most once, none at or before the starting revision. */
  event(event: DriverGroupEvent): void;
  /** Continuity was lost (reconnect, trimmed history, compaction): the core takes a new snapshot and diffs. */
  resync(): void;
}

/** Who holds a lock, as a driver reports it. */
export interface LockHolder {
  /** The holder's member id. */
  readonly member: string;
  /** Its fencing token. */
  readonly token: bigint;
  /** A shared hold or a semaphore permit (absent: exclusive). */
  readonly shared?: boolean;
}

/** The contender longest in line behind a lock's holders, as a driver reports it. */
export interface LockWaiter {
  /** Its member id. */
  readonly member: string;
  /**
   * How long it has waited, ms: by the backend's clock where the backend keeps time, else from the time its host
   * wrote into its request (below 0 when clocks disagree: the core reports that as 0). Absent when the request carries
   * no time (one made by an older release).
   */
  readonly waitedMs?: number;
}

/** One lock as a driver lists it: its holder (none while free) and how many contenders wait behind. */
export interface LockListing {
  /** 'lock' for a named lock, 'semaphore' for a semaphore, 'leader' for a group's leadership. */
  readonly kind: LockKind;
  /** The lock's name (the group's, for leadership). */
  readonly name: string;
  /** Its live holders, sorted by token. */
  readonly holders: readonly LockHolder[];
  /** A semaphore's limit. */
  readonly limit?: number;
  /** Live contenders waiting behind the holder. */
  readonly waiting: number;
  /** The first of them in line; present when `waiting` is above 0 (unless an older release's request names no member). */
  readonly oldestWaiter?: LockWaiter;
}

/** Ends a subscription; idempotent. */
export type Unsubscribe = () => void;

/** Calls from a driver into the core. */
export interface DriverEvents {
  /** The backend says the session is gone (e.g. a ZooKeeper expiry). The core declares `lost` at once. */
  sessionExpired(sessionId: string): void;
  /** The backend says a held lock is gone while the session lives on (e.g. its key was deleted). */
  lockLost(kind: LockKind, name: string, token: bigint): void;
  /**
   * Optional, for a driver whose client knows its link state (e.g. ZooKeeper's Disconnected): the link to the backend
   * dropped. The core moves a connected session to `suspended` at once instead of at its next failed renewal; the
   * session's deadline still counts from its last successful renewal, so it is declared `lost` on time if the link
   * stays down. Call it only for the current session's link; repeated calls are harmless.
   */
  linkDown?(): void;
  /**
   * Optional, the counterpart of `linkDown` (e.g. ZooKeeper's SyncConnected): the link is back. The core renews the
   * session at once, so a suspended session reports `reconnected` as soon as the backend confirms it (and `lost` if
   * the backend no longer knows it), instead of at its next scheduled renewal.
   */
  linkUp?(): void;
}

/** What `connect()` hands a driver's factory. */
export interface DriverContext {
  /** The parsed URL; its password is available to the driver, never printed. */
  readonly url: URL;
  /** The URL string as given: host lists (`h:p,h:p`) survive only here. Holds the password: never print it. */
  readonly rawUrl: string;
  /** Query parameters other than the core's own (member, sessionTtlMs, namespace, rejoin). */
  readonly params: URLSearchParams;
  /** Keeps applications sharing a backend apart: every key the driver writes lives under it. */
  readonly namespace: string;
  /** This coordinator's member id. */
  readonly member: string;
  /** The TTL every session of this coordinator is opened with. */
  readonly sessionTtlMs: number;
  /** Bounds the whole of connect(); the driver's own connection attempts should give up by then. */
  readonly connectTimeoutMs: number;
  /** Aborts when the caller aborts connecting or connectTimeoutMs runs out: stop retrying and release what was opened. */
  readonly signal: AbortSignal;
  /** How the driver tells the core what the backend said. */
  readonly events: DriverEvents;
}

/** One backend's storage steps; the core builds every primitive on these. */
export interface Driver {
  /** What this driver offers. */
  readonly features: Features;
  /**
   * Fallback re-check period of a waiting lock or a polled watch, ms. Waits are woken by `watchLock`; this bounds the
   * delay when a notification is missed. The core never polls faster than sessionTtlMs / 3 unless this says so.
   */
  readonly pollIntervalMs?: number;

  /** Creates a session that lives for ttlMs after each renewal. Returns its id. */
  openSession(ttlMs: number): Promise<string>;
  /** Extends the session by its TTL. Resolves false when the session no longer exists (it expired). */
  renewSession(sessionId: string): Promise<boolean>;
  /** Ends the session and with it every membership and lock it holds. */
  closeSession(sessionId: string): Promise<void>;
  /** Releases connections. Called once, after closeSession. */
  close(): Promise<void>;
  /** Drops connections at once without releasing anything: what a crash looks like to the backend (tests). */
  destroy(): void;

  /** Creates an empty group. ERR_GROUP_EXISTS. */
  createGroup(group: string): Promise<void>;
  /** Deletes an empty group. ERR_GROUP_NOT_FOUND, ERR_GROUP_NOT_EMPTY. */
  deleteGroup(group: string): Promise<void>;
  /** The groups of the namespace, in any order. */
  listGroups(): Promise<string[]>;
  /** ERR_GROUP_NOT_FOUND unless create, ERR_MEMBER_EXISTS. The membership ends with the session. */
  joinGroup(group: string, member: string, sessionId: string, capabilities: Capabilities, create: boolean): Promise<void>;
  /** ERR_GROUP_NOT_FOUND, ERR_MEMBER_NOT_JOINED. */
  leaveGroup(group: string, member: string): Promise<void>;
  /** ERR_GROUP_NOT_FOUND, ERR_MEMBER_NOT_JOINED. */
  updateMember(group: string, member: string, capabilities: Capabilities): Promise<void>;
  /** The members and the revision they were read at; `exists: false` (and no members) for a missing group. */
  getMembers(group: string): Promise<GroupSnapshot>;
  /** Delivers the group's changes after `fromRevision` to the sink until unsubscribed. */
  watchGroup(group: string, fromRevision: Revision, sink: WatchSink): Promise<Unsubscribe>;

  /**
   * One attempt: the fencing token when this session now holds the lock, undefined when it would have to wait (it then
   * leaves nothing behind). `mode` is absent (exclusive) unless `features.sharedLocks`.
   */
  tryLock(kind: LockKind, name: string, sessionId: string, member: string, mode?: LockMode): Promise<bigint | undefined>;
  /** Releases the hold only if `sessionId` holds it with `token` (in `slot`); never deletes another holder's. */
  unlock(kind: LockKind, name: string, sessionId: string, token: bigint, slot?: number): Promise<void>;
  /**
   * Ends whatever `sessionId` still has for kind/name in `slot` (default 0) after an acquisition the core gave up on
   * (an error, a timeout, an abort, at any point once the driver was asked): its place in the queue, its contender key,
   * and the lock itself if it was granted meanwhile (releasing it hands it on as a release does). The core calls it
   * only while this session holds no HeldLock for kind/name in that slot and no other acquisition of it is under way in this process, after
   * the abandoned request has settled. Idempotent; rejects with ERR_CONNECTION when it could not reach the backend
   * (the core retries it later, under the same guarantees).
   */
  cancelLock(kind: LockKind, name: string, sessionId: string, slot?: number): Promise<void>;
  /** The current holder, or undefined when the lock is free (the first by token when shared holders hold it). */
  lockHolder(kind: LockKind, name: string): Promise<LockHolder | undefined>;
  /** Required when `features.sharedLocks`: every current holder, sorted by token. */
  lockHolders?(kind: LockKind, name: string): Promise<LockHolder[]>;
  /**
   * Optional (required of the built-in drivers): every lock of this namespace that is held or waited for, of `kind`
   * when given, whose name starts with `prefix`, in any order. Read-only; backs `coordinator.locks()`.
   */
  listLocks?(kind: LockKind | undefined, prefix: string): Promise<LockListing[]>;
  /** Calls `listener` whenever the lock may have changed hands (released, expired, acquired). */
  watchLock(kind: LockKind, name: string, listener: () => void): Promise<Unsubscribe>;
  /**
   * Optional: wait in a backend-side queue until held (fair drivers). Call `queued` once this waiter is registered on
   * the backend (tests use it to know the arrival order). Must leave nothing behind when `signal` aborts (also when
   * it is already aborted on entry), and reject with ERR_SESSION_LOST if the session dies while queued. Without it,
   * the core loops tryLock / watchLock.
   */
  acquireLock?(
    kind: LockKind,
    name: string,
    sessionId: string,
    member: string,
    signal: AbortSignal,
    queued: () => void,
    mode?: LockMode,
  ): Promise<bigint>;
}

/** Opens a driver for one `connect()` call. */
export type DriverFactory = (context: DriverContext) => Promise<Driver>;

/** Cuts and restores one coordinator's link to its backend, for tests of drivers no TCP proxy can sit in front of. */
export interface LinkFaults {
  /** Requests fail as over a dropped connection, and nothing is pushed; the session ages on the backend meanwhile. */
  disconnect(): void;
  /** The link is back: watches resynchronise and waiters re-check. */
  reconnect(): void;
}

/** How soon a crashed member leaves its groups, as a {@link DriverDescriptor} states it. */
export interface CrashDetection {
  /** What the capability matrix says: 'TTL', 'TTL (+ up to 1 s)'. */
  readonly text: string;
  /** The worst case beyond the session TTL, which the conformance suite waits for. */
  readonly delayMs: number;
}

/**
 * A driver, described once for `connect()`, the README's capability matrix and the conformance suite. Every built-in
 * driver's `drivers/<name>/index.ts` exports one as `driver`; `registerDriver()` adds one of your own.
 *
 * @example
 * ```ts
 * registerDriver({
 *   name: 'Consul',
 *   schemes: ['consul'],
 *   features: { scope: 'cluster', groups: true, election: true, fencing: true, watch: 'push', fairLocks: false },
 *   crashDetection: { text: 'TTL', delayMs: 0 },
 *   create: async (context) => (await import('./consul-driver.js')).createDriver(context),
 * });
 * ```
 */
export interface DriverDescriptor {
  /** Its name in the capability matrix and in messages: 'Redis'. */
  readonly name: string;
  /** The URL schemes it serves, lowercase, without the colon: ['redis', 'rediss', 'redis+sentinel']. */
  readonly schemes: readonly string[];
  /** What it offers. */
  readonly features: Features;
  /** The npm package of its client library (an optional peer dependency of concord), if it needs one. */
  readonly clientPackage?: string;
  /** The shortest `sessionTtlMs` the backend can honour; shorter ones are refused before any I/O. */
  readonly minSessionTtlMs?: number;
  /** How soon a crashed member leaves its groups. */
  readonly crashDetection: CrashDetection;
  /** Opens a driver for one `connect()`; should import the implementation and its client library only when called. */
  readonly create: DriverFactory;
  /** For tests: link faults of one driver instance this descriptor created (drivers without a network link). */
  readonly faults?: (driver: Driver) => LinkFaults;
}
