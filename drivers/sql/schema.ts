/**
 * The schema version both SQL drivers record in `concord_schema`. A release that changes the tables raises it and
 * migrates from the version it finds; a database at a version newer than the driver knows is refused.
 *
 * 1: the first tables.
 * 2: shared locks and semaphores. concord_waiters rows become the requests of a name's line: each carries its slot,
 *    its mode (shared, lim), its member and, once a shared request is granted, its token (a granted shared request
 *    keeps its row; an exclusive holder still lives in concord_locks). Added as columns with defaults that describe
 *    the exclusive waiters version 1 wrote, by one idempotent statement that both a new database and an upgraded one
 *    run (`concord schema` prints it too), so a version 1 database upgrades in place on the first connect of a user
 *    who may alter the tables, or by running the printed script. Coordinators of version 1 still running meanwhile
 *    keep working beside version 2 ones: they write exclusive waiters, and read a granted shared row as a waiter
 *    ahead of them, so they never take a lock a shared holder holds.
 * 3: concord_waiters.since, when a request entered the line (the server's clock, ms), so a listing can say how long
 *    the first waiter has waited. Added as a nullable column the same way; rows written before it are listed without
 *    a wait time.
 * 4: a lock attempt in one round trip. PostgreSQL: the function concord_attempt, the driver's look at a line as one
 *    call (CREATE OR REPLACE, so the same statement creates and upgrades it); no table changes, so coordinators of
 *    version 3 still running keep working beside version 4 ones, running the same look as their own transaction.
 *    MySQL: no change (its one-round-trip look is a batch of statements, no stored routine: no DELIMITER in the script).
 * 5: a look waiting for a busy lock row no longer holds up its session's renewals. PostgreSQL: concord_attempt takes
 *    the session row FOR KEY SHARE (a renewal's UPDATE goes through, a reaper's DELETE still waits), replaced by the
 *    same CREATE OR REPLACE; coordinators of version 4 still running keep working beside version 5 ones. MySQL: no
 *    change to the tables (its look takes the lock row before the session row, in the driver).
 */
export const SCHEMA_VERSION = 5;

/** Tables every version keeps, in the order they are created (for messages and `concord schema`). */
export const TABLES = Object.freeze([
  'concord_schema',
  'concord_sessions',
  'concord_groups',
  'concord_logs',
  'concord_members',
  'concord_changes',
  'concord_locks',
  'concord_waiters',
]);
