export { HashRing, type HashRingOptions } from './hashring.js';
export { Rendezvous } from './rendezvous.js';
export { ToozHashRing, type ToozHashRingOptions } from './tooz-ring.js';
export type { GetNodesOptions, Placement, PlacementKey, PlacementNodes } from './placement.js';
export { md5Words, mix32, murmur3 } from './hash.js';
