/**
 * The public shapes of concord. Implementations live in coordinator.ts, group.ts, lock/, election.ts and
 * partitioner.ts.
 *
 * @module
 */

/** A JSON value: what capabilities are made of. */
export type Json = null | boolean | number | string | Json[] | { [k: string]: Json };

/** What a member publishes about itself in a group: a JSON object of at most 64 KiB. */
export type Capabilities = { [k: string]: Json };

/** A member of a group, as `members()` returns it. */
export interface Member {
  /** The member id (the `member` option of `connect()`). */
  readonly id: string;
  /** What it joined with, or last updated to. */
  readonly capabilities: Capabilities;
}

/** What a driver offers; `coordinator.features`. The README's capability matrix is generated from these. */
export interface Features {
  /** How far coordination reaches: one process, the processes of one host, or a cluster of hosts. */
  readonly scope: 'process' | 'host' | 'cluster';
  /** Group membership and watches. */
  readonly groups: boolean;
  /** Leader election. */
  readonly election: boolean;
  /** Fencing tokens on every lock and term. */
  readonly fencing: boolean;
  /** How the driver learns of changes: pushed by the backend, or a bounded poll. */
  readonly watch: 'push' | 'poll';
  /** Waiters are served in arrival order. */
  readonly fairLocks: boolean;
  /** Shared locks and semaphores (the driver takes a LockMode and lists holders). */
  readonly sharedLocks?: boolean;
}

/**
 * A session's state. `connected`; `suspended` (the backend is unreachable and the session may still be alive);
 * `lost` (it expired: every held lock and leadership has been told); `closed` (after `close()`).
 */
export type SessionState = 'connected' | 'suspended' | 'lost' | 'closed';

/** `coordinator.session`: the backend session that memberships and locks hang off. */
export interface SessionInfo {
  /** The backend's id of the current session; a new one after a lost session is replaced. */
  readonly id: string;
  /** The `sessionTtlMs` it was opened with. */
  readonly ttlMs: number;
  /** Where the session stands now. */
  readonly state: SessionState;
}

/**
 * Events of a coordinator, each with no arguments: `suspended` (the backend is unreachable), `reconnected` (back
 * within the TTL, nothing lost), `lost` (the session expired: every held lock and leadership signal has aborted),
 * `restored` (a new session is up and groups are re-joined), `closed`.
 */
export type CoordinatorEvent = 'suspended' | 'reconnected' | 'lost' | 'restored' | 'closed';

/** Options of every wait for a lock or leadership. */
export interface AcquireOptions {
  /**
   * Stops waiting when it aborts: the call rejects with ERR_ABORTED (the signal's reason as `cause`) and leaves
   * nothing behind. An already aborted signal rejects before any I/O.
   */
  readonly signal?: AbortSignal;
  /**
   * Give up after this many ms with ERR_LOCK_TIMEOUT. No value: wait until held or aborted. 0: one attempt, no
   * waiting. Negative or NaN: ERR_INVALID_ARGUMENT.
   */
  readonly timeoutMs?: number;
  /**
   * Locks only: a shared (read) hold. Any number of shared holds coexist, never beside an exclusive one. Waiting is
   * FIFO across both modes: an exclusive waiter is not overtaken by shared requests that arrive after it, and the
   * shared waiters at the head of the line are granted together. Holds never change mode.
   */
  readonly shared?: boolean;
}

/**
 * A lock held by this coordinator. `await using` releases it at the end of the block.
 *
 * @example
 * ```ts
 * await using held = await coordinator.lock('nightly-report').acquire({ timeoutMs: 30_000 });
 * await storage.write(report, { fencingToken: held.token });
 * ```
 */
export interface HeldLock extends AsyncDisposable {
  /** The lock's name. */
  readonly name: string;
  /**
   * Fencing token: strictly greater for every later holder of this name. Hand it to the storage the lock guards and
   * have the storage refuse tokens older than the newest it has seen.
   */
  readonly token: bigint;
  /**
   * Aborted when the lock is lost (reason: ConcordError ERR_LOCK_LOST) or released (ERR_ABORTED) or the coordinator
   * closes (ERR_CLOSED). Reading `aborted` or `reason`, or calling `throwIfAborted()`, first checks the session's
   * deadline on the monotonic clock, so even a signal stored before a pause (SIGSTOP, a long GC) says lost on the
   * first look after it.
   */
  readonly signal: AbortSignal;
  /** True while held: not released, and not lost as far as this process can know (the session deadline is checked). */
  readonly valid: boolean;
  /**
   * Throws the ConcordError that ended the hold (ERR_LOCK_LOST, ERR_CLOSED, ERR_ABORTED) unless it is still valid.
   *
   * @example
   * ```ts
   * held.assertValid();
   * await write(row, held.token);
   * ```
   */
  assertValid(): void;
  /** Releases the lock and aborts the signal. Idempotent; never rejects, also when the lock was already lost. */
  release(): Promise<void>;
}

/**
 * A handle on a named lock (`coordinator.lock(name)`); creating it does no I/O. A hold is exclusive unless acquired
 * with `shared: true`. Holds are not reentrant: a second exclusive acquire of a name this coordinator holds waits like
 * any other waiter.
 */
export interface Lock {
  /** The lock's name. */
  readonly name: string;
  /**
   * Waits until this coordinator holds the lock. Waiters are woken by the backend when it frees (fair drivers serve
   * them in arrival order). Rejects with ERR_LOCK_TIMEOUT, ERR_ABORTED, ERR_SESSION_LOST (the session was lost while
   * queued), ERR_CLOSED, ERR_REFUSED (the backend refused, e.g. out of memory) or ERR_INVALID_ARGUMENT.
   *
   * @example
   * ```ts
   * const held = await coordinator.lock('cache-refresh').acquire({ timeoutMs: 5000, signal });
   * try { await refresh(held.signal); } finally { await held.release(); }
   * ```
   */
  acquire(options?: AcquireOptions): Promise<HeldLock>;
  /**
   * One attempt, never waits: the held lock, or undefined when it would have to wait (someone else holds it in a mode
   * that excludes this one, or an exclusive request is waiting).
   */
  tryAcquire(options?: { readonly shared?: boolean }): Promise<HeldLock | undefined>;
  /** The member id holding the lock now (the oldest holder while it is held shared), or undefined. */
  holder(): Promise<string | undefined>;
  /** Every current holder, shared or exclusive, sorted by token. */
  holders(): Promise<Holder[]>;
}

/** Options of `coordinator.semaphore()`. */
export interface SemaphoreOptions {
  /**
   * The most holders at once: an integer from 1 to 1,000,000. Every coordinator must use the same limit for a name; an
   * acquire naming another limit while the semaphore has holders or waiters rejects with ERR_INVALID_ARGUMENT.
   */
  readonly limit: number;
}

/**
 * A handle on a named semaphore (`coordinator.semaphore(name, { limit })`); creating it does no I/O. Each acquire
 * takes one permit, a HeldLock with its own fencing token and signal; waiting is FIFO. Semaphores and locks live in
 * separate key spaces, so a lock and a semaphore may share a name.
 *
 * @example
 * ```ts
 * const transcodes = coordinator.semaphore('transcode', { limit: 3 });
 * const permit = await transcodes.acquire({ timeoutMs: 60_000 });
 * try { await transcode(file, permit.signal); } finally { await permit.release(); }
 * ```
 */
export interface Semaphore {
  /** The semaphore's name. */
  readonly name: string;
  /** The most holders at once. */
  readonly limit: number;
  /**
   * Waits for one permit. Rejects with ERR_LOCK_TIMEOUT, ERR_ABORTED, ERR_SESSION_LOST, ERR_CLOSED, ERR_REFUSED, or
   * ERR_INVALID_ARGUMENT (also when holders or waiters use another limit).
   */
  acquire(options?: { readonly signal?: AbortSignal; readonly timeoutMs?: number }): Promise<HeldLock>;
  /** One attempt, never waits: a permit, or undefined when all are taken or others wait. */
  tryAcquire(): Promise<HeldLock | undefined>;
  /** Every current permit holder, sorted by token. */
  holders(): Promise<Holder[]>;
}

/** This member leads a group. `await using` resigns at the end of the block. */
export interface Leadership extends AsyncDisposable {
  /** The group led. */
  readonly group: string;
  /** Fencing token; strictly increases with every change of leader in this group. */
  readonly term: bigint;
  /**
   * Aborted when leadership is lost (reason: ERR_LEADERSHIP_LOST), resigned (ERR_ABORTED) or the coordinator closes
   * (ERR_CLOSED); truthful after a pause, as a HeldLock's.
   */
  readonly signal: AbortSignal;
  /** True while this member leads, as far as it can know (the session deadline is checked). */
  readonly valid: boolean;
  /** Throws the ConcordError that ended the leadership (ERR_LEADERSHIP_LOST, ERR_CLOSED, ERR_ABORTED) unless valid. */
  assertValid(): void;
  /** Gives up leadership; the next campaigner takes over. Idempotent. */
  resign(): Promise<void>;
}

/** Options of `group.lead()`. */
export interface LeadOptions {
  /** Stop campaigning (and resign) when this aborts. */
  readonly signal?: AbortSignal;
}

/**
 * A membership change, as a group watch yields it. `initial` marks the joins that describe the members present when
 * the watch started.
 */
export type GroupEvent =
  | {
      /** A member joined (or was present when the watch started). */
      readonly type: 'join';
      /** The group. */
      readonly group: string;
      /** The member id. */
      readonly member: string;
      /** What it joined with. */
      readonly capabilities: Capabilities;
      /** Part of the watch's first snapshot rather than a live change. */
      readonly initial: boolean;
    }
  | {
      /** A member changed its capabilities. */
      readonly type: 'update';
      /** The group. */
      readonly group: string;
      /** The member id. */
      readonly member: string;
      /** Its new capabilities. */
      readonly capabilities: Capabilities;
    }
  | {
      /** A member left, or its session ended (a crash). */
      readonly type: 'leave';
      /** The group. */
      readonly group: string;
      /** The member id. */
      readonly member: string;
    };

/**
 * A group's membership as a pushed stream: the current members, then every join, update and leave in the order the
 * backend applied them, with no gap and no duplicate between the two. After a reconnect it resynchronises and yields
 * only the differences, so its view always converges to `members()`. Ends on `close()`, on its signal, or when the
 * coordinator closes.
 *
 * @example
 * ```ts
 * for await (const event of coordinator.group('indexers').watch({ signal })) console.log(event.type, event.member);
 * ```
 */
export interface GroupWatch extends AsyncIterable<GroupEvent>, AsyncDisposable {
  /** Ends the stream now. */
  close(): Promise<void>;
}

/** Options of `group.watch()`. */
export interface WatchOptions {
  /** Ends the stream when it aborts. */
  readonly signal?: AbortSignal;
  /** Start with one `join` per current member (`initial: true`). Default true. */
  readonly initial?: boolean;
}

/** Options of `group.join()`. */
export interface JoinOptions {
  /** What to publish about this member; default `{}`. */
  readonly capabilities?: Capabilities;
  /** Create the group when it does not exist. Default false. */
  readonly create?: boolean;
}

/** A change of leader, as `watchLeader()` yields it. */
export interface LeaderChange {
  /** The leader's member id, or undefined while nobody leads. */
  readonly leader: string | undefined;
  /** The leader's term, when there is a leader. */
  readonly term?: bigint;
}

/** Options of `group.partitioner()`. */
export interface PartitionerOptions {
  /** This member's share of the keys relative to others; default 1, > 0; published as `capabilities.weight`. */
  readonly weight?: number;
  /** More capabilities to publish (merged with `{ weight }`; a `weight` here counts when `weight` is not given). */
  readonly capabilities?: Capabilities;
  /**
   * `'rendezvous'` (default: weighted highest random weight, ideal balance, minimal movement), `'ring'` (consistent
   * hash ring, 160 points per weight unit) or `'tooz'` (the same owners as Python tooz's hash ring).
   */
  readonly algorithm?: 'rendezvous' | 'ring' | 'tooz';
}

/** A change of a partitioner's membership. */
export interface PartitionChange {
  /** The members now, sorted. */
  readonly members: string[];
  /** Who joined with this change. */
  readonly joined: string[];
  /** Who left with this change. */
  readonly left: string[];
}

/**
 * Keys spread over a group's live members: every member computes the same owners for the same membership, whatever
 * the order of joins. `await using` closes it.
 *
 * @example
 * ```ts
 * await using partitioner = await coordinator.group('crawlers').partitioner({ weight: 2 });
 * for (const url of urls) if (partitioner.isMine(url)) await crawl(url);
 * ```
 */
export interface Partitioner extends AsyncDisposable {
  /** The group partitioned over. */
  readonly group: string;
  /** The members in its current view, sorted. */
  members(): string[];
  /** The distinct owners of `key`, primary first (`replicas` of them, default 1), skipping `ignore`. */
  owners(key: string | Uint8Array, options?: { replicas?: number; ignore?: Iterable<string> }): string[];
  /** Whether this member is among the owners of `key`. */
  isMine(key: string | Uint8Array, options?: { replicas?: number }): boolean;
  /**
   * With `initial` (default true), the current view first (every member in `joined`), then each change. The stream ends
   * when `signal` aborts or the partitioner closes.
   */
  changes(options?: { initial?: boolean; signal?: AbortSignal }): AsyncIterable<PartitionChange>;
  /** Stops following the group, and leaves it if the partitioner joined it. Later calls throw ERR_CLOSED. */
  close(): Promise<void>;
}

/** A handle on a named group (`coordinator.group(name)`); creating it does no I/O. */
export interface Group {
  /** The group's name. */
  readonly name: string;
  /** Creates the group. Rejects with ERR_GROUP_EXISTS. */
  create(): Promise<void>;
  /** Deletes the group. Rejects with ERR_GROUP_NOT_FOUND, or ERR_GROUP_NOT_EMPTY while it has members. */
  delete(): Promise<void>;
  /**
   * Joins the group as this coordinator's member, until `leave()` or the session ends (a crashed member leaves within
   * `sessionTtlMs`). After a lost session is replaced it re-joins (the `rejoin` option). Rejects with
   * ERR_GROUP_NOT_FOUND (unless `create`) or ERR_MEMBER_EXISTS.
   *
   * @example
   * ```ts
   * await coordinator.group('indexers').join({ create: true, capabilities: { zone: 'eu-1' } });
   * ```
   */
  join(options?: JoinOptions): Promise<void>;
  /** Leaves the group. Rejects with ERR_GROUP_NOT_FOUND or ERR_MEMBER_NOT_JOINED. */
  leave(): Promise<void>;
  /** The members, sorted by id. Rejects with ERR_GROUP_NOT_FOUND. */
  members(): Promise<Member[]>;
  /** Replaces this member's capabilities; watchers see an `update`. Rejects with ERR_MEMBER_NOT_JOINED. */
  updateCapabilities(capabilities: Capabilities): Promise<void>;
  /** A pushed stream of membership changes; see {@link GroupWatch}. A group that does not exist yet is fine. */
  watch(options?: WatchOptions): GroupWatch;
  /** The current leader's member id, or undefined. */
  leader(): Promise<string | undefined>;
  /**
   * Resolves once this member leads the group. Needs neither `join` nor an existing group. Rejects as
   * `lock.acquire()` does.
   *
   * @example
   * ```ts
   * await using leadership = await coordinator.group('schedulers').campaign();
   * await runScheduler({ signal: leadership.signal, term: leadership.term });
   * ```
   */
  campaign(options?: AcquireOptions): Promise<Leadership>;
  /**
   * Leads whenever it can until `signal` aborts: campaigns, runs `fn` with the Leadership (whose signal aborts when
   * leadership ends), resigns when `fn` settles or leadership is lost, and campaigns again, also across lost sessions.
   * Resolves once `signal` aborts or the coordinator closes; rejects with what `fn` threw while it still led.
   *
   * @example
   * ```ts
   * await coordinator.group('schedulers').lead((leadership) => runScheduler(leadership.signal), { signal });
   * ```
   */
  lead(fn: (leadership: Leadership) => Promise<void> | void, options?: LeadOptions): Promise<void>;
  /** The current leader first, then every change, in order. */
  watchLeader(options?: { signal?: AbortSignal }): AsyncIterable<LeaderChange>;
  /**
   * Joins the group with a weight (creating it if needed; or adds the weight to this member's existing membership)
   * and follows its joins, leaves and weight updates. See {@link Partitioner}.
   */
  partitioner(options?: PartitionerOptions): Promise<Partitioner>;
}

/** Who holds a lock, and with which fencing token (the term, for leadership). */
export interface Holder {
  /** The holder's member id. */
  readonly member: string;
  /** Its fencing token (the term, for leadership). */
  readonly token: bigint;
  /** A shared hold of a lock, or a semaphore permit; false for an exclusive hold and for leadership. */
  readonly shared: boolean;
}

/** One lock of the namespace, as `coordinator.locks()` reports it. */
export interface LockInfo {
  /** The lock's name; for `kind: 'leader'`, the group's name. */
  readonly name: string;
  /** 'lock' for a named lock, 'semaphore' for a semaphore, 'leader' for a group's leadership. */
  readonly kind: 'lock' | 'semaphore' | 'leader';
  /** Who holds it, sorted by token (empty while a released lock still has a contender on its way in). */
  readonly holders: readonly Holder[];
  /** A semaphore's limit. */
  readonly limit?: number;
  /** How many contenders wait behind the holders. */
  readonly waiting: number;
  /**
   * The contender first in line behind the holders (the one that has waited longest); present while any waits, unless
   * the first is a request made by an older release of concord that does not name its member.
   */
  readonly oldestWaiter?: Waiter;
}

/** A contender waiting for a lock, a permit or leadership, as `coordinator.locks()` reports it. */
export interface Waiter {
  /** Its member id. */
  readonly member: string;
  /**
   * How long it has waited so far, ms: by the backend's clock where the backend keeps time (PostgreSQL, MySQL, Redis),
   * else from the time its host wrote into its request (ZooKeeper's node creation time is the server's wall clock).
   * Absent when its request carries no time (one made by an older release of concord).
   */
  readonly waitedMs?: number;
}

/** What `coordinator.locks()` lists. */
export interface LocksOptions {
  /** Only locks of this kind: 'lock' (a named lock), 'semaphore', or 'leader' (a group's leadership). */
  readonly kind?: 'lock' | 'semaphore' | 'leader';
  /** Only locks whose name starts with this. */
  readonly prefix?: string;
  /** Ends the wait for the answer with ERR_ABORTED. */
  readonly signal?: AbortSignal;
}

/**
 * A connection to a backend through one session (`connect(url)`). `await using` closes it.
 *
 * @example
 * ```ts
 * await using coordinator = await connect('redis://127.0.0.1:6379', { member: 'worker-1' });
 * coordinator.on('lost', () => console.warn('session lost'));
 * ```
 */
export interface Coordinator extends AsyncDisposable {
  /** This coordinator's member id. */
  readonly member: string;
  /** The URL, with any password and secret parameter replaced by '***'. */
  readonly url: string;
  /** What the driver offers. */
  readonly features: Features;
  /** The current session. */
  readonly session: SessionInfo;
  /** Listens to a session event; a misspelt event name throws ERR_INVALID_ARGUMENT. */
  on(event: CoordinatorEvent, listener: () => void): this;
  /** Listens to the next occurrence of a session event. */
  once(event: CoordinatorEvent, listener: () => void): this;
  /** Stops listening. */
  off(event: CoordinatorEvent, listener: () => void): this;
  /** A handle on a group; no I/O. Throws ERR_INVALID_ARGUMENT for a bad name. */
  group(name: string): Group;
  /** The groups of this namespace, sorted. */
  groups(): Promise<string[]>;
  /** A handle on a lock; no I/O. Throws ERR_INVALID_ARGUMENT for a bad name. */
  lock(name: string): Lock;
  /**
   * A handle on a semaphore of `limit` permits; no I/O. Throws ERR_INVALID_ARGUMENT for a bad name or limit, and
   * ERR_NOT_SUPPORTED where the driver has no shared locks.
   */
  semaphore(name: string, options: SemaphoreOptions): Semaphore;
  /**
   * Every lock of this namespace that is held or waited for, sorted by kind then name: who holds it with which
   * token, and how many wait. Leadership shows as kind 'leader', named after its group.
   *
   * @example
   * ```ts
   * for (const lock of await coordinator.locks({ prefix: 'jobs/' })) {
   *   console.log(lock.name, lock.holders.map((h) => `${h.member}#${h.token}`), `${lock.waiting} waiting`);
   * }
   * ```
   */
  locks(options?: LocksOptions): Promise<LockInfo[]>;
  /**
   * Acquires the lock, runs `fn` with it, and releases it however `fn` ends.
   *
   * @example
   * ```ts
   * await coordinator.withLock('cache-refresh', (held) => refresh({ signal: held.signal }), { timeoutMs: 5000 });
   * ```
   */
  withLock<T>(name: string, fn: (held: HeldLock) => Promise<T> | T, options?: AcquireOptions): Promise<T>;
  /**
   * Ends the session: every lock and membership is released at once, watches end, and every later call rejects with
   * ERR_CLOSED. Idempotent. A process that only calls close() exits by itself.
   */
  close(): Promise<void>;
}
