/**
 * redis://, rediss://, redis+sentinel://, redis+cluster:// — Redis 6+ with ioredis (a cluster: see cluster.ts).
 *
 * Everything lives under one key prefix `{namespace}:` (scripts.ts lists the keys). Every change is one Lua script,
 * so each step is atomic; groups log their changes to a stream that watches read with XREAD BLOCK; locks keep a
 * FIFO queue of waiting sessions and hand the lock to the first live waiter inside the releasing script, then
 * publish the grant, so a hand-off costs one pub/sub message and one round trip.
 *
 * Shared holds and semaphore permits wait in the same line as exclusive requests of their name (a semaphore's line is
 * its own, apart from a lock of the same name), each as a request of its own (`<session>/<slot>`), and are granted by
 * the one rule of src/driver.ts (holdsAt): whoever is first in line holds; shared requests right behind shared holders
 * hold with them, up to a semaphore's limit. A release, a cancelled wait or a reaped session serves the line at once
 * (every request the rule now lets hold is granted in that script and told on its driver's channel), so a permit's
 * hand-off costs what a lock's does. Exclusive locks and leadership keep their keys and fast paths; an uncontended
 * permit or shared hold has fast paths of its own, as few commands as an exclusive one.
 *
 * Liveness: a session is a key with a PX TTL. Redis tells nobody when it expires, so live coordinators reap expired
 * sessions (their memberships and locks) while renewing, and at once when keyspace notifications for expired keys
 * are on (the driver turns them on when the server lets it; nothing depends on them). Worst-case detection of a
 * crashed member: its TTL plus a third of the shortest TTL among the live coordinators (about 100 ms with
 * notifications). Lock waiters also re-check when the holder's session is due to expire. A dropped command
 * connection makes the session `suspended` at once, and its reconnection renews at once (DriverEvents.linkDown/linkUp).
 *
 * Held locks: each is watched while held, by a keyspace notification on its key (when the server emits them; the
 * driver turns on `Kg` with `Ex` where CONFIG SET is allowed), and otherwise (not watched yet, refused, subscriber
 * down) by a check in every renewal, so a lock key deleted or taken over from outside ends the holder's lock
 * (DriverEvents.lockLost) within about a round trip of the deletion, or at the next renewal without notifications. A
 * renewal of a session whose locks are all watched sends no lock at all: its cost does not grow with the locks held. A flush (FLUSHALL, FLUSHDB) sends no keyspace notification, but it
 * invalidates client-side caches: the subscriber connection turns on client tracking for that alone (pubsub.ts) and
 * then checks its sessions, so the holders hear of it within a round trip. A reconnected command connection checks the
 * same (the server may have restarted, or a replica that never saw the latest grants may have been promoted).
 *
 * Replicas: on a failover (Sentinel or Cluster) a lock whose grant the promoted replica has stays held: its holder's
 * renewals carry on there when the failover takes less than the TTL (else the session is lost, and the holder is told
 * before anyone else can take the lock). But Redis replicates asynchronously, so a grant the dying master acknowledged
 * may never reach the promoted replica, which can then grant the lock again before the holder, reconnecting, is told
 * it lost it. With ?replicas=N (redis+sentinel:// and redis+cluster:// only) a grant is reported only once N replicas
 * have it, and a release ends only then: the script that wrote it is followed by `WAIT N` on the same connection. A waiter handed a lock by another client's release or reap confirms it itself: WAIT
 * covers only its own connection's writes, so it first runs a script that checks the hold and writes (the stream a
 * replica applies is in order, so that write covers the grant), then WAITs. Fewer than N replicas within a sixth of the
 * TTL (2 s at most): the grant is not reported (a waiting acquire tries again until its timeout or signal, one attempt
 * rejects with ERR_CONNECTION, and the core gives back what was granted when it gives up) and a release fails with
 * ERR_CONNECTION (the core sends it again). It holds for a promoted replica among those that confirmed. Cost: about
 * 1.7x an uncontended acquire + release with one replica on the same host (bench/results/redis.md).
 *
 * Refusals: replies retrying will not change (OOM, READONLY from a replica named by a redis:// url, NOPERM, WRONGTYPE)
 * are ERR_REFUSED with the server's message, which ends a waiting acquire; so are credentials the server refuses at
 * connect (WRONGPASS, NOAUTH), as with etcd; everything else is ERR_CONNECTION. Behind Sentinel, READONLY means the
 * master moved: the connection is made again through the sentinels.
 *
 * Connecting checks, in one exchange per connection, every permission the driver needs (below), by trying each
 * command harmlessly (scripts.ts PROBE; ACL DRYRUN would need Redis 7 and the right to run it), and refuses a user
 * that lacks any with one ERR_REFUSED naming all that is missing.
 *
 * Memory: evicted keys are lost locks, queues and sessions, so the server should run with maxmemory-policy noeviction
 * (then a full server refuses writes, which callers see as ERR_REFUSED). When CONFIG GET shows maxmemory set with
 * an allkeys-* policy, connecting fails with ERR_CONNECTION naming the setting unless the URL says
 * ?allowEviction=true. A volatile-* policy is only logged (debug), but it too may evict session keys (they have a
 * TTL), ending a session early: a holder learns it at its next renewal, after a waiter may have been granted the lock.
 * The settings are read once, at connect; a server whose CONFIG is refused or changed later is not checked.
 *
 * Connections per coordinator: commands, pub/sub, and (once a group is watched) one for blocking stream reads.
 * An ACL user needs the key pattern `{namespace}:*` (or `~*`), the channels `{namespace}:*` (or `&*`), EVAL, EVALSHA,
 * SUBSCRIBE, XREAD and what the scripts call (the categories +@read +@write +@scripting +@pubsub +@stream
 * +@connection +time cover it); optional: +client|id +client|unblock (a new watch joins a blocked read at once instead
 * of within 250 ms), +client|tracking (flushes heard at once), &__keyspace@*, +config|get +config|set (keyspace
 * notifications: faster reaping, deleted lock keys heard at once).
 *
 * The implementation is in driver.ts (the driver), probe.ts (the connect-time checks), held.ts (held locks watched),
 * connection.ts, pubsub.ts, reader.ts, scripts.ts and errors.ts; this file loads none of it until a URL needs it.
 *
 * @module concord/drivers/redis
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

/** The Redis driver, as `connect()` and the capability matrix know it. */
export const driver: DriverDescriptor = Object.freeze({
  name: 'Redis',
  schemes: ['redis', 'rediss', 'redis+sentinel', 'redis+cluster'],
  features,
  clientPackage: 'ioredis',
  crashDetection: {
    text: 'TTL + ~100 ms with keyspace notifications; else up to TTL/3 more (reaped by live members)',
    delayMs: 500,
  },
  create: async (context: DriverContext) => (await import('./driver.js')).createDriver(context),
});
