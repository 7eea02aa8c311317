/**
 * zookeeper://[user:password@]h:p[,h:p...][/chroot] — ZooKeeper 3.5.3+ through the `node-zookeeper-client` package,
 * whose connection manager and jute records carry the requests; the recipes are written here.
 *
 *   zookeeper://app:secret@zk1:2181,zk2:2181,zk3:2181/apps/billing?sessionTtlMs=6000
 *
 * - Session = one ZooKeeper session on its own connection, with the timeout the user asked for: the server clamps a
 *   timeout to its minSessionTimeout..maxSessionTimeout (2..20 x tickTime by default), so a sessionTtlMs outside that
 *   range is refused at connect (ERR_INVALID_ARGUMENT, naming the bound), never silently changed. ZooKeeper's own
 *   events drive the core: Disconnected is `suspended` at once, SyncConnected is `reconnected` as soon as a renewal
 *   sent on the new link goes through, Expired is `lost` at once; the core's deadline still rules when the client
 *   hears nothing (a link that stays open but carries nothing).
 * - The chroot is a path prefix the driver creates on first use; the namespace is one node under it. user:password
 *   authenticates with the digest scheme (never printed), and nodes are then created for that user only.
 * - Groups (groups.ts): a persistent node per group, an ephemeral node per member holding its capabilities, and a
 *   change log of persistent sequential nodes beside them: every join, update and leave is one multi that changes
 *   the member node and appends its entry, so watchers (watch.ts) replay every change in the order ZooKeeper applied
 *   it, which one-shot watches alone cannot give (they coalesce). Delete of a group with members is refused.
 * - Locks, semaphores and leadership (locks.ts, line.ts): Curator's recipes. Ephemeral sequential contenders whose
 *   names carry their mode (exclusive, shared, a permit and its limit), one FIFO line per name: the lowest holds
 *   alone, or the shared ones at the head together (at most `limit` for a semaphore). A waiter watches one node only
 *   (fair, no herd): an exclusive one its predecessor, a shared hold the last exclusive request ahead, a permit its
 *   predecessor's grant or departure (the first permit waiting, the line). Token = the contender node's czxid. A held
 *   node deleted from outside is `lockLost` at once. A name's node is a container (ZooKeeper 3.5.3+), removed by the
 *   server's container manager once its line is empty (it looks every `znode.container.checkIntervalMs`, a minute
 *   by default); the next request of the name creates it again.
 *
 * Crash detection: ZooKeeper deletes a dead session's ephemeral nodes when the session times out (the leader checks
 * expiry every tickTime), and watchers hear of it from the next listing: TTL + up to one tickTime.
 *
 * @module concord/drivers/zookeeper
 */
import type { DriverContext, DriverDescriptor } from '../../src/driver.js';
import type { Features } from '../../src/types.js';

/** What this driver implements (the README capability matrix is generated from it). */
export const features: Features = Object.freeze({
  scope: 'cluster',
  groups: true,
  election: true,
  fencing: true,
  watch: 'push',
  fairLocks: true,
  sharedLocks: true,
});

/** The ZooKeeper driver, as `connect()` and the capability matrix know it. */
export const driver: DriverDescriptor = Object.freeze({
  name: 'ZooKeeper',
  schemes: ['zookeeper'],
  features,
  clientPackage: 'node-zookeeper-client',
  crashDetection: { text: 'TTL + up to one tickTime (session expiry)', delayMs: 1000 },
  create: async (context: DriverContext) => (await import('./driver.js')).createDriver(context),
});
