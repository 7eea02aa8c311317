/**
 * sqlite:///ABS/PATH.db — every process of one host coordinating through one SQLite file.
 *
 * - Engines (engine.ts): node:sqlite where Node has it (22.13+, 24, 26: nothing to install or compile), else the
 *   better-sqlite3 package (Node 20). `?engine=node` or `?engine=better-sqlite3` chooses; processes on either engine
 *   share one file safely (same file format, same locks).
 * - WAL mode, tiny transactions; BEGIN IMMEDIATE wherever a read decides a write. The busy timeout is short (the
 *   wait for another connection's write lock blocks this process's event loop): a call that finds the file busy
 *   retries from the event loop, for up to BUSY_BUDGET_MS (half the session TTL when shorter).
 * - Durability: synchronous=NORMAL, which loses commits only to an OS crash or power cut; the first connection of a
 *   new boot then moves every fencing counter far ahead, so no token is ever handed out twice. Without a boot id
 *   (not Linux): synchronous=FULL.
 * - Sessions expire on the host's monotonic clock (CLOCK_MONOTONIC, shared by the processes of one boot), never the
 *   wall clock. Each session row also records its pid, boot id, pid and time namespaces: a session whose process is gone
 *   (or a zombie) is reaped at once, so a killed holder's lock frees in milliseconds. A stopped (SIGSTOP) process is
 *   alive: its session ends by TTL. Any live coordinator reaps, on renewal, before reads that matter, at each poll
 *   while it watches (every FALLBACK_POLL_MS while file notifications work, at most every REAP_EVERY_MS), and at each
 *   re-check while it waits for a lock (every 100 ms). Reaping publishes the leaves to the change log. A session from another
 *   time namespace (another CLOCK_MONOTONIC) is not judged by its TTL, only by its process's death.
 * - Changes by other processes that a watcher or waiter cares about (change-log rows, a lock's version moving where
 *   someone may wait or watch, a session's end) are announced by touching a side file, `<db>-concord` (made on
 *   demand, empty), once committed; watchers watch it, so renewals wake nobody. A fallback poll of `PRAGMA
 *   data_version` (features.watch is 'poll') bounds a lost notification: every FALLBACK_POLL_MS (500 ms) while
 *   notifications are known to work, every POLL_MS (10 ms) while they are not (none could be set up, or the poll found
 *   a change watched here that no notification announced; three announced ones in a row bring the slow poll back).
 *   While a live session belongs to a process of an earlier version (schema 3 or below: it touches nothing), the -wal
 *   is watched too, as those versions did. So an idle watching process wakes about twice a second. Drivers of one process on one file
 *   tell each other directly. One poller per driver, running only while something waits or watches, and keeping the
 *   process alive meanwhile (nothing else would: there is no socket).
 * - Membership changes go to a change log written in the same transaction; its id is the revision (with the number
 *   of the file this connection is in, counting changes of file, so that no revision crosses to another). Locks carry a
 *   version that every change of hands bumps. Fair locks: waiters queue in a table ordered by id, tied to their
 *   session; only the head may take a free lock. Shared holds and semaphore permits stand in that same line, granted
 *   in place when the grant rule (holdsAt) lets them hold, and stay in it while held; waiters re-check when the
 *   version moves. A file of schema version 1 gains the line's columns when opened, and processes of that version may
 *   go on sharing it: to them a shared hold is a waiter ahead of theirs.
 * - The file itself: a connection lives on in a file that was deleted or replaced, while newcomers open whatever the
 *   path names now. So every renewal, every wake-up of the poller, a watch on the file and a timer (every
 *   FILE_CHECK_WATCHED_MS while the watch works, for a directory above the file renamed; else FILE_CHECK_MS) compare the path's device and inode with those of the file this connection opened. When they differ, the
 *   connection is closed (SQLite sees the file moved and neither checkpoints nor deletes the new file's -wal and
 *   -shm), its sessions are declared lost at once, and the next call opens the file now at the path.
 * - Fencing counters start from the wall clock in microseconds (a new lock row, and every row of a file that is not
 *   the one its counters were written in: new, copied, restored), so a recreated or restored file hands out tokens
 *   above any its predecessor could have, as long as that one handed out fewer than one a microsecond.
 *
 * Worst-case detection of a crashed member, for a watcher: FALLBACK_POLL_MS after its process is gone, else its TTL
 * + FALLBACK_POLL_MS (TTL + TTL/3 when nobody waits or watches: reaping then rides on renewals); for a waiter of its
 * lock, 100 ms after its process is gone.
 *
 * The implementation is in driver.ts (the driver), notify.ts (the poller, file notifications, pokes between drivers of
 * one process, delivery to watches), file.ts (which file the path names), schema.ts (opening, tables, migration),
 * statements.ts, host.ts (clocks, boot and process liveness), path.ts and engine.ts; this file loads none of it until
 * a URL needs it.
 *
 * @module concord/drivers/sqlite
 */
import type { Driver, DriverContext, DriverDescriptor } from '../../src/driver.js';
import type { Features } from '../../src/types.js';

/** What this driver offers: every feature, to the processes of one host. */
export const features: Features = Object.freeze({
  scope: 'host',
  groups: true,
  election: true,
  fencing: true,
  watch: 'poll',
  fairLocks: true,
  sharedLocks: true,
});

/** The SQLite driver, as `connect()` and the capability matrix know it. */
export const driver: DriverDescriptor = Object.freeze({
  name: 'SQLite',
  schemes: ['sqlite'],
  features,
  clientPackage: 'better-sqlite3',
  crashDetection: { text: 'within 0.5 s when the process is gone; else TTL + 0.5 s', delayMs: 600 },
  create: async (context: DriverContext) => (await import('./driver.js')).createDriver(context),
  // No network link to cut: the driver fails its calls as over a dropped connection, and notices nothing meanwhile.
  faults: (instance: Driver) => {
    const link = linkOf(instance);
    return {
      disconnect: () => {
        link?.setLink(false);
      },
      reconnect: () => {
        link?.setLink(true);
      },
    };
  },
});

function linkOf(instance: unknown): { setLink(up: boolean): void } | undefined {
  return instance !== null && typeof instance === 'object' && 'setLink' in instance
    ? (instance as { setLink(up: boolean): void })
    : undefined;
}
