/**
 * PostgreSQL tables (in the connection's current schema, shared by every namespace: each row carries its own). Text
 * keys compare byte for byte (deterministic collations), so names differing only in case stay apart.
 */
import { SCHEMA_VERSION } from '../sql/schema.js';

/** The statements that create version SCHEMA_VERSION, each idempotent. */
export const POSTGRES_SCHEMA: readonly string[] = Object.freeze([
  'CREATE TABLE IF NOT EXISTS concord_schema (version integer NOT NULL)',
  `CREATE TABLE IF NOT EXISTS concord_sessions (
  id text PRIMARY KEY, ns text NOT NULL, member text NOT NULL, ttl_ms integer NOT NULL, expires_at bigint NOT NULL
)`,
  'CREATE INDEX IF NOT EXISTS concord_sessions_expiry ON concord_sessions (expires_at)',
  'CREATE TABLE IF NOT EXISTS concord_groups (ns text NOT NULL, name text NOT NULL, PRIMARY KEY (ns, name))',
  'CREATE TABLE IF NOT EXISTS concord_logs (ns text NOT NULL, grp text NOT NULL, seq bigint NOT NULL, PRIMARY KEY (ns, grp))',
  `CREATE TABLE IF NOT EXISTS concord_members (
  ns text NOT NULL, grp text NOT NULL, member text NOT NULL, session text NOT NULL, capabilities text NOT NULL,
  PRIMARY KEY (ns, grp, member)
)`,
  'CREATE INDEX IF NOT EXISTS concord_members_session ON concord_members (session)',
  `CREATE TABLE IF NOT EXISTS concord_changes (
  ns text NOT NULL, grp text NOT NULL, seq bigint NOT NULL, type text NOT NULL, member text NOT NULL, capabilities text,
  PRIMARY KEY (ns, grp, seq)
)`,
  `CREATE TABLE IF NOT EXISTS concord_locks (
  ns text NOT NULL, kind text NOT NULL, name text NOT NULL, fence bigint NOT NULL, session text, member text, token bigint,
  PRIMARY KEY (ns, kind, name)
)`,
  'CREATE INDEX IF NOT EXISTS concord_locks_session ON concord_locks (session) WHERE session IS NOT NULL',
  `CREATE TABLE IF NOT EXISTS concord_waiters (
  id bigserial PRIMARY KEY, ns text NOT NULL, kind text NOT NULL, name text NOT NULL, session text NOT NULL
)`,
  'CREATE INDEX IF NOT EXISTS concord_waiters_lock ON concord_waiters (ns, kind, name, id)',
  'CREATE INDEX IF NOT EXISTS concord_waiters_session ON concord_waiters (session)',
  // Version 2 (shared locks and semaphores); on a version 1 database, the upgrade.
  `ALTER TABLE concord_waiters ADD COLUMN IF NOT EXISTS slot integer NOT NULL DEFAULT 0,
  ADD COLUMN IF NOT EXISTS shared smallint NOT NULL DEFAULT 0, ADD COLUMN IF NOT EXISTS lim integer NOT NULL DEFAULT 0,
  ADD COLUMN IF NOT EXISTS member text, ADD COLUMN IF NOT EXISTS token bigint`,
  // Version 3 (how long a request has waited).
  'ALTER TABLE concord_waiters ADD COLUMN IF NOT EXISTS since bigint',
  `INSERT INTO concord_schema (version) SELECT ${String(SCHEMA_VERSION)} WHERE NOT EXISTS (SELECT 1 FROM concord_schema)`,
  `UPDATE concord_schema SET version = ${String(SCHEMA_VERSION)} WHERE version < ${String(SCHEMA_VERSION)}`,
]);

/** The script `concord schema --url postgres://...` prints, for a user with CREATE rights to run by hand. */
export function postgresSchemaScript(): string {
  return ['BEGIN;', ...POSTGRES_SCHEMA.map((statement) => `${statement};`), 'COMMIT;', ''].join('\n');
}
