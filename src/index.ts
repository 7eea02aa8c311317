export { connect, schemes } from './connect.js';
export { ConcordError, isConcordError, type ErrorCode } from './errors.js';
export { DEFAULTS, type ConnectOptions } from './options.js';
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
  JoinOptions,
  Json,
  LeadOptions,
  LeaderChange,
  Leadership,
  Lock,
  Member,
  PartitionChange,
  Partitioner,
  PartitionerOptions,
  SessionInfo,
  SessionState,
  WatchOptions,
} from './types.js';
export type * from './driver.js';
