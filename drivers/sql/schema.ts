/**
 * The schema version both SQL drivers record in `concord_schema`. A release that changes the tables raises it and
 * migrates from the version it finds; a database at a version newer than the driver knows is refused.
 */
export const SCHEMA_VERSION = 1;

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
