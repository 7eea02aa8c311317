/**
 * A database made by schema version 1 (before shared locks): the first connect of this release upgrades it in place
 * (a waiter that version 1 wrote is still served, in order), and so does the script `concord schema` prints, run once
 * or twice. On the machine's PostgreSQL and MariaDB, in a database of the test's own. Version 1 is the current tables
 * without the columns versions 2 and 3 added to concord_waiters, at version 1.
 */
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import mysql from 'mysql2/promise';
import pg from 'pg';
import { connect } from '../../../src/index.js';
import { mysqlSchemaScript } from '../../../drivers/mysql/schema.js';
import { postgresSchemaScript } from '../../../drivers/postgres/schema.js';
import { SCHEMA_VERSION } from '../../../drivers/sql/schema.js';
import { mysqlUrl, postgresUrl, requireReachable } from '../../support/servers.js';

const postgres = await requireReachable('postgres');
const mariadb = await requireReachable('mysql');

const ADDED = ['slot', 'shared', 'lim', 'member', 'token', 'since'];

interface Database {
  readonly url: string;
  /** Runs SQL (several statements allowed) and returns the rows of the last. */
  sql(text: string): Promise<Array<Record<string, unknown>>>;
}

/** Connects through the driver, checks a shared hold and an exclusive one, and that the tables are at this version. */
async function expectUpgraded(db: Database): Promise<void> {
  const namespace = `u${randomBytes(4).toString('hex')}`;
  const a = await connect(db.url, { member: 'a', namespace });
  const b = await connect(db.url, { member: 'b', namespace });
  try {
    const r1 = await a.lock('l').acquire({ shared: true });
    const r2 = await b.lock('l').acquire({ shared: true });
    expect((await a.lock('l').holders()).map((h) => h.member)).toEqual(['a', 'b']);
    expect(await b.lock('l').tryAcquire()).toBeUndefined();
    await Promise.all([r1.release(), r2.release()]);
    const permit = await b.semaphore('s', { limit: 2 }).acquire();
    expect(permit.token).toBe(1n);
    await permit.release();
  } finally {
    await Promise.all([a.close(), b.close()]);
  }
  const [row] = await db.sql('SELECT max(version) AS version FROM concord_schema');
  expect(Number(row?.version)).toBe(SCHEMA_VERSION);
}

/** A waiter row as version 1 wrote it (no slot, mode or member) is an exclusive waiter after the upgrade. */
async function expectVersion1WaiterServed(db: Database, insertSession: (id: string) => Promise<void>): Promise<void> {
  const c = await connect(db.url, { member: 'c', namespace: 'v1' });
  try {
    const held = await c.lock('queued').acquire();
    await insertSession('sv1waiter');
    await db.sql("INSERT INTO concord_waiters (ns, kind, name, session) VALUES ('v1', 'lock', 'queued', 'sv1waiter')");
    await held.release();
    // The version 1 waiter is ahead: neither a shared nor an exclusive attempt may overtake it.
    expect(await c.lock('queued').tryAcquire({ shared: true })).toBeUndefined();
    expect(await c.lock('queued').tryAcquire()).toBeUndefined();
    await db.sql("DELETE FROM concord_sessions WHERE id = 'sv1waiter'");
    const after = await c.lock('queued').tryAcquire({ shared: true });
    expect(after?.token).toBe(2n);
    await after?.release();
  } finally {
    await c.close();
  }
}

describe.skipIf(!postgres.ok)(`postgres: a version 1 database${postgres.ok ? '' : ` (skipped: ${postgres.reason})`}`, () => {
  const database = `concord_upgrade_${randomBytes(4).toString('hex')}`;
  const run = async (db: string | undefined, text: string): Promise<Array<Record<string, unknown>>> => {
    const url = new URL(postgresUrl());
    if (db) url.pathname = `/${db}`;
    const client = new pg.Client({ connectionString: url.href });
    await client.connect();
    try {
      const result = (await client.query(text)) as pg.QueryResult<Record<string, unknown>> | Array<pg.QueryResult<Record<string, unknown>>>;
      return (Array.isArray(result) ? result.at(-1)?.rows : result.rows) ?? [];
    } finally {
      await client.end();
    }
  };
  const url = new URL(postgresUrl());
  url.pathname = `/${database}`;
  const db: Database = { url: url.href, sql: (text) => run(database, text) };
  const downgrade = (): Promise<unknown> =>
    db.sql(`ALTER TABLE concord_waiters ${ADDED.map((c) => `DROP COLUMN ${c}`).join(', ')}; UPDATE concord_schema SET version = 1`);

  beforeAll(async () => {
    await run(undefined, `CREATE DATABASE ${database}`);
    await db.sql(postgresSchemaScript());
  });
  afterAll(async () => {
    await run(undefined, `DROP DATABASE IF EXISTS ${database} WITH (FORCE)`);
  });

  it('is upgraded by the first connect', async () => {
    await downgrade();
    await expectUpgraded(db);
    await expectVersion1WaiterServed(db, async (id) => {
      await db.sql(
        `INSERT INTO concord_sessions (id, ns, member, ttl_ms, expires_at) VALUES ('${id}', 'v1', 'old', 60000, (extract(epoch from clock_timestamp()) * 1000)::bigint + 60000)`,
      );
    });
  }, 60_000);

  it('is upgraded by the script concord schema prints, which may run again', async () => {
    await downgrade();
    await db.sql(postgresSchemaScript());
    await db.sql(postgresSchemaScript());
    expect(await db.sql('SELECT version FROM concord_schema')).toEqual([{ version: SCHEMA_VERSION }]);
    await expectUpgraded(db);
  }, 60_000);
});

describe.skipIf(!mariadb.ok)(`mysql: a version 1 database${mariadb.ok ? '' : ` (skipped: ${mariadb.reason})`}`, () => {
  const database = `concord_upgrade_${randomBytes(4).toString('hex')}`;
  const run = async (text: string, db?: string): Promise<Array<Record<string, unknown>>> => {
    const url = new URL(mysqlUrl());
    const connection = await mysql.createConnection({
      host: url.hostname,
      port: Number(url.port || 3306),
      user: decodeURIComponent(url.username) || 'root',
      password: decodeURIComponent(url.password),
      ...(db ? { database: db } : {}),
      multipleStatements: true,
    });
    try {
      const [result] = await connection.query(text);
      const last: unknown = Array.isArray(result) && Array.isArray(result.at(-1)) ? result.at(-1) : result;
      return Array.isArray(last) ? (last as Array<Record<string, unknown>>) : [];
    } finally {
      await connection.end();
    }
  };
  const url = new URL(mysqlUrl());
  url.pathname = `/${database}`;
  const db: Database = { url: url.href, sql: (text) => run(text, database) };
  const downgrade = (): Promise<unknown> =>
    db.sql(`ALTER TABLE concord_waiters ${ADDED.map((c) => `DROP COLUMN ${c}`).join(', ')}; UPDATE concord_schema SET version = 1`);

  beforeAll(async () => {
    await run(`CREATE DATABASE ${database}`);
    await db.sql(mysqlSchemaScript());
  });
  afterAll(async () => {
    await run(`DROP DATABASE IF EXISTS ${database}`);
  });

  it('is upgraded by the first connect', async () => {
    await downgrade();
    await expectUpgraded(db);
    await expectVersion1WaiterServed(db, async (id) => {
      await db.sql(
        `INSERT INTO concord_sessions (id, ns, member, ttl_ms, expires_at) VALUES ('${id}', 'v1', 'old', 60000, CAST(UNIX_TIMESTAMP(NOW(3)) * 1000 AS SIGNED) + 60000)`,
      );
    });
  }, 60_000);

  it('is upgraded by the script concord schema prints, which may run again', async () => {
    await downgrade();
    await db.sql(mysqlSchemaScript());
    await db.sql(mysqlSchemaScript());
    expect((await db.sql('SELECT version FROM concord_schema')).map((row) => Number(row.version))).toEqual([SCHEMA_VERSION]);
    await expectUpgraded(db);
  }, 60_000);
});
