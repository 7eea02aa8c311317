/**
 * MySQL / MariaDB tables (InnoDB, in the URL's database, shared by every namespace: each row carries its own). Names
 * are VARBINARY: compared byte for byte, so names differing only in case or trailing spaces stay apart (the default
 * collations would merge them).
 */
import { SCHEMA_VERSION } from '../sql/schema.js';

const NAME = 'VARBINARY(255)';
const SESSION = 'VARBINARY(64)';
const JSON_TEXT = 'MEDIUMTEXT CHARACTER SET utf8mb4 COLLATE utf8mb4_bin';
const TABLE = 'ENGINE=InnoDB DEFAULT CHARSET=utf8mb4';

/** The statements that create version SCHEMA_VERSION, each idempotent (MySQL commits each DDL statement by itself). */
export const MYSQL_SCHEMA: readonly string[] = Object.freeze([
  `CREATE TABLE IF NOT EXISTS concord_schema (version INT NOT NULL) ${TABLE}`,
  `CREATE TABLE IF NOT EXISTS concord_sessions (
  id ${SESSION} NOT NULL PRIMARY KEY, ns ${NAME} NOT NULL, member ${NAME} NOT NULL, ttl_ms INT NOT NULL,
  expires_at BIGINT NOT NULL, KEY concord_sessions_expiry (expires_at)
) ${TABLE}`,
  `CREATE TABLE IF NOT EXISTS concord_groups (ns ${NAME} NOT NULL, name ${NAME} NOT NULL, PRIMARY KEY (ns, name)) ${TABLE}`,
  `CREATE TABLE IF NOT EXISTS concord_logs (ns ${NAME} NOT NULL, grp ${NAME} NOT NULL, seq BIGINT NOT NULL, PRIMARY KEY (ns, grp)) ${TABLE}`,
  `CREATE TABLE IF NOT EXISTS concord_members (
  ns ${NAME} NOT NULL, grp ${NAME} NOT NULL, member ${NAME} NOT NULL, session ${SESSION} NOT NULL,
  capabilities ${JSON_TEXT} NOT NULL, PRIMARY KEY (ns, grp, member), KEY concord_members_session (session)
) ${TABLE}`,
  `CREATE TABLE IF NOT EXISTS concord_changes (
  ns ${NAME} NOT NULL, grp ${NAME} NOT NULL, seq BIGINT NOT NULL, type VARCHAR(8) NOT NULL, member ${NAME} NOT NULL,
  capabilities ${JSON_TEXT} NULL, PRIMARY KEY (ns, grp, seq)
) ${TABLE}`,
  `CREATE TABLE IF NOT EXISTS concord_locks (
  ns ${NAME} NOT NULL, kind VARBINARY(16) NOT NULL, name ${NAME} NOT NULL, fence BIGINT NOT NULL, session ${SESSION} NULL,
  member ${NAME} NULL, token BIGINT NULL, PRIMARY KEY (ns, kind, name), KEY concord_locks_session (session)
) ${TABLE}`,
  `CREATE TABLE IF NOT EXISTS concord_waiters (
  id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY, ns ${NAME} NOT NULL, kind VARBINARY(16) NOT NULL, name ${NAME} NOT NULL,
  session ${SESSION} NOT NULL, KEY concord_waiters_lock (ns, kind, name, id), KEY concord_waiters_session (session)
) ${TABLE}`,
  `CREATE TABLE IF NOT EXISTS concord_notes (
  ns ${NAME} NOT NULL, topic VARBINARY(300) NOT NULL, version BIGINT NOT NULL, PRIMARY KEY (ns, topic)
) ${TABLE}`,
  // Version 2 (shared locks and semaphores); on a version 1 database, the upgrade. MySQL 8 has no ADD COLUMN IF NOT
  // EXISTS (MariaDB has), so the one ALTER runs only while its first column is missing, through a prepared statement.
  `SET @concord_upgrade = (SELECT IF(COUNT(*) = 0, 'ALTER TABLE concord_waiters ADD COLUMN slot INT NOT NULL DEFAULT 0, ADD COLUMN shared TINYINT NOT NULL DEFAULT 0, ADD COLUMN lim INT NOT NULL DEFAULT 0, ADD COLUMN member ${NAME} NULL, ADD COLUMN token BIGINT NULL', 'SELECT 1')
  FROM information_schema.columns WHERE table_schema = DATABASE() AND table_name = 'concord_waiters' AND column_name = 'slot')`,
  'PREPARE concord_upgrade FROM @concord_upgrade',
  'EXECUTE concord_upgrade',
  'DEALLOCATE PREPARE concord_upgrade',
  // Version 3 (how long a request has waited), the same way.
  `SET @concord_upgrade = (SELECT IF(COUNT(*) = 0, 'ALTER TABLE concord_waiters ADD COLUMN since BIGINT NULL', 'SELECT 1')
  FROM information_schema.columns WHERE table_schema = DATABASE() AND table_name = 'concord_waiters' AND column_name = 'since')`,
  'PREPARE concord_upgrade FROM @concord_upgrade',
  'EXECUTE concord_upgrade',
  'DEALLOCATE PREPARE concord_upgrade',
  `INSERT INTO concord_schema (version) SELECT ${String(SCHEMA_VERSION)} FROM DUAL WHERE NOT EXISTS (SELECT 1 FROM concord_schema)`,
  `UPDATE concord_schema SET version = ${String(SCHEMA_VERSION)} WHERE version < ${String(SCHEMA_VERSION)}`,
]);

/** The script `concord schema --url mysql://...` prints, for a user with CREATE rights to run by hand. */
export function mysqlSchemaScript(): string {
  return [...MYSQL_SCHEMA.map((statement) => `${statement};`), ''].join('\n');
}
