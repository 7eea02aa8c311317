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
  /** Aborted when the lock is lost (reason: ERR_LOCK_LOST) or released. */
  readonly signal: AbortSignal;
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
  /** Aborted when leadership is lost (reason: ERR_LEADERSHIP_LOST) or resigned. */
  readonly signal: AbortSignal;
  resign(): Promise<void>;
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
  changes(): AsyncIterable<PartitionChange>;
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
