/** The public shapes of API.md. Implementations live in coordinator.ts, group.ts, lock.ts and election.ts. */

export type Json = null | boolean | number | string | Json[] | { [k: string]: Json };
export type Capabilities = { [k: string]: Json };

export interface Member {
  readonly id: string;
  readonly capabilities: Capabilities;
}

export interface Features {
  /** How far coordination reaches. */
  readonly scope: 'process' | 'host' | 'cluster';
  readonly groups: boolean;
  readonly election: boolean;
  readonly fencing: boolean;
  /** How the driver learns of changes. */
  readonly watch: 'push' | 'poll';
  /** Waiters are served in arrival order. */
  readonly fairLocks: boolean;
}

export type SessionState = 'connected' | 'suspended' | 'lost' | 'closed';

export interface SessionInfo {
  readonly id: string;
  readonly ttlMs: number;
  readonly state: SessionState;
}

export type CoordinatorEvent = 'suspended' | 'reconnected' | 'lost' | 'restored' | 'closed';

export interface AcquireOptions {
  readonly signal?: AbortSignal;
  /** No value: wait until held or aborted. 0: one attempt. */
  readonly timeoutMs?: number;
}

export interface HeldLock extends AsyncDisposable {
  readonly name: string;
  /** Fencing token: strictly greater for every later holder of this name. */
  readonly token: bigint;
  /**
   * Aborted when the lock is lost (reason: ERR_LOCK_LOST) or released. Reading `aborted` or `reason`, or calling
   * `throwIfAborted()`, first checks the session's deadline, so a stored signal is truthful after a pause.
   */
  readonly signal: AbortSignal;
  /** True while held: not released, and not lost as far as this process can know (the session deadline is checked). */
  readonly valid: boolean;
  /** Throws the ConcordError that ended the hold (ERR_LOCK_LOST, ERR_CLOSED, ERR_ABORTED) unless it is still valid. */
  assertValid(): void;
  release(): Promise<void>;
}

export interface Lock {
  readonly name: string;
  acquire(options?: AcquireOptions): Promise<HeldLock>;
  tryAcquire(): Promise<HeldLock | undefined>;
  holder(): Promise<string | undefined>;
}

export interface Leadership extends AsyncDisposable {
  readonly group: string;
  /** Fencing token; strictly increases with every change of leader in this group. */
  readonly term: bigint;
  /** Aborted when leadership is lost (reason: ERR_LEADERSHIP_LOST) or resigned; truthful after a pause, as HeldLock's. */
  readonly signal: AbortSignal;
  /** True while this member leads, as far as it can know (the session deadline is checked). */
  readonly valid: boolean;
  /** Throws the ConcordError that ended the leadership (ERR_LEADERSHIP_LOST, ERR_CLOSED, ERR_ABORTED) unless valid. */
  assertValid(): void;
  resign(): Promise<void>;
}

export interface LeadOptions {
  /** Stop campaigning (and resign) when this aborts. */
  readonly signal?: AbortSignal;
}

export type GroupEvent =
  | {
      readonly type: 'join';
      readonly group: string;
      readonly member: string;
      readonly capabilities: Capabilities;
      readonly initial: boolean;
    }
  | { readonly type: 'update'; readonly group: string; readonly member: string; readonly capabilities: Capabilities }
  | { readonly type: 'leave'; readonly group: string; readonly member: string };

export interface GroupWatch extends AsyncIterable<GroupEvent>, AsyncDisposable {
  close(): Promise<void>;
}

export interface WatchOptions {
  readonly signal?: AbortSignal;
  /** Start with one `join` per current member. Default true. */
  readonly initial?: boolean;
}

export interface JoinOptions {
  readonly capabilities?: Capabilities;
  /** Create the group when it does not exist. Default false. */
  readonly create?: boolean;
}

export interface LeaderChange {
  readonly leader: string | undefined;
  readonly term?: bigint;
}

export interface PartitionerOptions {
  /** Default 1, > 0; published as capabilities.weight. */
  readonly weight?: number;
  readonly capabilities?: Capabilities;
  readonly algorithm?: 'rendezvous' | 'ring' | 'tooz';
}

export interface PartitionChange {
  readonly members: string[];
  readonly joined: string[];
  readonly left: string[];
}

export interface Partitioner extends AsyncDisposable {
  readonly group: string;
  members(): string[];
  owners(key: string | Uint8Array, options?: { replicas?: number; ignore?: Iterable<string> }): string[];
  isMine(key: string | Uint8Array, options?: { replicas?: number }): boolean;
  /** With `initial` (default true), the current view first (every member in `joined`), then each change. */
  changes(options?: { initial?: boolean }): AsyncIterable<PartitionChange>;
  close(): Promise<void>;
}

export interface Group {
  readonly name: string;
  create(): Promise<void>;
  delete(): Promise<void>;
  join(options?: JoinOptions): Promise<void>;
  leave(): Promise<void>;
  members(): Promise<Member[]>;
  updateCapabilities(capabilities: Capabilities): Promise<void>;
  watch(options?: WatchOptions): GroupWatch;
  leader(): Promise<string | undefined>;
  campaign(options?: AcquireOptions): Promise<Leadership>;
  /**
   * Leads whenever it can until `signal` aborts: campaigns, runs `fn` with the Leadership (whose signal aborts when
   * leadership ends), resigns when `fn` settles or leadership is lost, and campaigns again, also across lost sessions.
   * Resolves once `signal` aborts or the coordinator closes; rejects with what `fn` threw while it still led.
   */
  lead(fn: (leadership: Leadership) => Promise<void> | void, options?: LeadOptions): Promise<void>;
  watchLeader(options?: { signal?: AbortSignal }): AsyncIterable<LeaderChange>;
  partitioner(options?: PartitionerOptions): Promise<Partitioner>;
}

export interface Coordinator extends AsyncDisposable {
  readonly member: string;
  /** The URL with any password replaced by '***'. */
  readonly url: string;
  readonly features: Features;
  readonly session: SessionInfo;
  on(event: CoordinatorEvent, listener: () => void): this;
  off(event: string, listener: (...args: never[]) => void): this;
  group(name: string): Group;
  groups(): Promise<string[]>;
  lock(name: string): Lock;
  withLock<T>(name: string, fn: (held: HeldLock) => Promise<T> | T, options?: AcquireOptions): Promise<T>;
  close(): Promise<void>;
}
