/**
 * etcd://h:p[,h:p...] and etcds:// — etcd v3 (3.4+) through the etcd3 package's gRPC clients (KV, Lease, Watch), with
 * the recipes written here rather than taken from the package: its Lock never waits and its Lease helper keeps
 * heartbeating after close().
 *
 *   etcds://user:password@h1:2379,h2:2379?ca=/path/ca.pem&cert=/path/client.pem&key=/path/client-key.pem
 *
 * - Session = one lease (TTL = ceil(sessionTtlMs / 1000) s; sessionTtlMs under 2000 is refused, as etcd would round
 *   it up). The core renews it with one LeaseKeepAlive exchange per heartbeat; close revokes it, and every membership
 *   and lock key hangs off it. close() ends every stream and the client: a process that only closes exits.
 * - Opening a session also puts a session key on the lease, in a transaction whose untaken branch deletes the whole
 *   namespace: etcd checks both branches' permissions, so a user who may not read and write every key of the namespace
 *   is refused at connect (ERR_REFUSED, naming the range), not at first use. The session key is watched: its delete
 *   (the lease revoked or expired) declares the session lost at once, not at the next renewal.
 * - While connecting (until the first session is open) every call gives up when the core's connect signal aborts.
 * - A held lock's key is watched for deletes while held (held.ts): deleted from outside (an operator, a revoked lease), the core
 *   hears lockLost within a round trip, about when a waiter is told it may take the lock.
 * - Groups are single transactions: create (marker absent), delete (marker present and no member key: a range
 *   compare), join (group present, member absent), update and leave (both present).
 * - Watches: the snapshot is one read at revision R, the watch starts at R + 1; one gRPC stream carries every watch
 *   and, when it breaks, the watches resume where they were on a new one. A compacted revision means a resync: a
 *   group watch is re-subscribed by the core from a fresh snapshot; lock watches are re-created from the present and
 *   then call their listener, which re-reads.
 * - Locks and leadership follow etcd's concurrency package (queue.ts): one key per contender on the session's lease,
 *   the lowest create revision holds, each waiter watches only the key just ahead of it (fair, no herd); token = the
 *   key's create revision. Uncontended, acquire + release is two writes.
 * - Shared holds and semaphore permits wait in the same line (shared.ts), as etcd's recipes do: a shared hold watches
 *   the last exclusive request ahead of it (recipe/rwmutex.go), a permit counts the deletions ahead of it until fewer
 *   than its limit remain; a semaphore's limit is part of its keys, so a request naming another one is refused in the
 *   same transaction that would enter the line.
 * - Order: a snapshot read (members, holder) that was called before a write of the same coordinator is served before
 *   it (etcd serves concurrent requests in any order, so such writes wait for it).
 * - Several hosts (rpc.ts): a host that just failed is skipped for a second; reads and idempotent writes are retried on
 *   another host, other writes only when they surely never left this process.
 *
 * Crash detection: etcd deletes a dead session's keys when its lease expires, at most ceil(ttl) s after the last
 * renewal plus etcd's expiry check period (500 ms); the deletions reach watchers as ordinary events. A leader change
 * in the etcd cluster extends every lease, so a crash during one is noticed later.
 */
import type { DriverContext, DriverDescriptor } from '../../src/driver.js';
import type { Features } from '../../src/types.js';

/** etcd grants no lease shorter than this (it rounds a shorter TTL up, so a shorter session would outlive its TTL). */
export const MIN_TTL_MS = 2000;

/** What this driver does, as the capability matrix shows it. */
export const features: Features = Object.freeze({
  scope: 'cluster',
  groups: true,
  election: true,
  fencing: true,
  watch: 'push',
  fairLocks: true,
  sharedLocks: true,
});

/** The etcd driver, as `connect()` and the capability matrix know it. Its link faults come from a TCP proxy. */
export const driver: DriverDescriptor = Object.freeze({
  name: 'etcd',
  schemes: ['etcd', 'etcds'],
  features,
  clientPackage: 'etcd3',
  minSessionTtlMs: MIN_TTL_MS,
  crashDetection: { text: 'TTL rounded up to whole seconds, + up to 0.5 s (lease expiry)', delayMs: 1000 },
  create: async (context: DriverContext) => (await import('./driver.js')).createDriver(context),
});
