/**
 * concord: cluster coordination for Node.js. Groups and watches, locks with fencing tokens, leader election and
 * partitioning, over in-memory, SQLite, Redis and etcd backends chosen by a URL.
 *
 * @example
 * ```ts
 * import { connect } from 'concord';
 * await using coordinator = await connect('sqlite:///var/tmp/app.db');
 * await coordinator.withLock('nightly-report', (held) => report(held.token));
 * ```
 *
 * @module concord
 */
export { connect } from './connect.js';
export { registerDriver, schemes } from './registry.js';
export { ConcordError, isConcordError, type ErrorCode } from './errors.js';
export { DEFAULTS, type ConnectOptions } from './options.js';
export {
  CHANNELS,
  type AcquireContext,
  type DriverCallContext,
  type LostMessage,
  type ReleaseContext,
  type ResyncMessage,
  type SessionMessage,
} from './diagnostics.js';
export {
  HashRing,
  Rendezvous,
  ToozHashRing,
  type GetNodesOptions,
  type HashRingOptions,
  type Placement,
  type PlacementKey,
  type PlacementNodes,
  type ToozHashRingOptions,
} from './placement/index.js';
export type {
  AcquireOptions,
  Capabilities,
  Coordinator,
  CoordinatorEvent,
  Features,
  Group,
  GroupEvent,
  GroupWatch,
  HeldLock,
  Holder,
  JoinOptions,
  Json,
  LeadOptions,
  LeaderChange,
  Leadership,
  Lock,
  LockInfo,
  LocksOptions,
  Member,
  PartitionChange,
  Partitioner,
  PartitionerOptions,
  Semaphore,
  SemaphoreOptions,
  SessionInfo,
  SessionState,
  Waiter,
  WatchOptions,
} from './types.js';
export type * from './driver.js';
export { EXCLUSIVE, holdsAt } from './driver.js';
