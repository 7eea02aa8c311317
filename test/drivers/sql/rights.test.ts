/**
 * A database user without CREATE rights: connect() refuses with ERR_REFUSED saying to run `concord schema`; once an
 * administrator ran that script and granted the four table rights, the same user connects and locks. On the machine's
 * PostgreSQL and MariaDB, in a database of the test's own.
 */
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import mysql from 'mysql2/promise';
import pg from 'pg';
import { connect } from '../../../src/index.js';
import { mysqlSchemaScript } from '../../../drivers/mysql/schema.js';
import { postgresSchemaScript } from '../../../drivers/postgres/schema.js';
import { mysqlUrl, postgresUrl, requireReachable } from '../../support/servers.js';

const postgres = await requireReachable('postgres');
const mariadb = await requireReachable('mysql');

async function expectRefusedThenGranted(url: string, grant: () => Promise<void>): Promise<void> {
  const refused = await connect(url, { member: 'app' }).then(
    (c) => c.close().then(() => undefined),
    (error: unknown) => error,
  );
  expect(refused).toMatchObject({ code: 'ERR_REFUSED' });
  expect((refused as Error).message).toMatch(/may not create concord's tables .*concord schema --url/);
  await grant();
  const c = await connect(url, { member: 'app' });
  try {
    const held = await c.lock('l').acquire();
    expect(held.token).toBe(1n);
    await held.release();
  } finally {
    await c.close();
  }
}

describe.skipIf(!postgres.ok)(`postgres: a user without CREATE rights${postgres.ok ? '' : ` (skipped: ${postgres.reason})`}`, () => {
  const suffix = randomBytes(4).toString('hex');
  const database = `concord_rights_${suffix}`;
  const role = `concord_app_${suffix}`;
  const admin = (db?: string): pg.Client => {
    const url = new URL(postgresUrl());
    if (db) url.pathname = `/${db}`;
    return new pg.Client({ connectionString: url.href });
  };
  const run = async (db: string | undefined, sql: string): Promise<void> => {
    const client = admin(db);
    await client.connect();
    try {
      await client.query(sql);
    } finally {
      await client.end();
    }
  };

  beforeAll(async () => {
    await run(undefined, `CREATE DATABASE ${database}`);
    // PostgreSQL 15+ gives PUBLIC no CREATE on the public schema: this role may connect and nothing more.
    await run(undefined, `CREATE ROLE ${role} LOGIN`);
    await run(database, `REVOKE CREATE ON SCHEMA public FROM PUBLIC`);
  });
  afterAll(async () => {
    await run(undefined, `DROP DATABASE IF EXISTS ${database} WITH (FORCE)`);
    await run(undefined, `DROP ROLE IF EXISTS ${role}`);
  });

  it('is refused with a pointer to concord schema, and works once the script ran and the rights were granted', async () => {
    const url = new URL(postgresUrl());
    url.username = role;
    url.pathname = `/${database}`;
    await expectRefusedThenGranted(url.href, async () => {
      await run(database, postgresSchemaScript());
      await run(
        database,
        `GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO ${role};
         GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO ${role};`,
      );
    });
  }, 60_000);
});

describe.skipIf(!mariadb.ok)(`mysql: a user without CREATE rights${mariadb.ok ? '' : ` (skipped: ${mariadb.reason})`}`, () => {
  const suffix = randomBytes(4).toString('hex');
  const database = `concord_rights_${suffix}`;
  const user = `concord_app_${suffix}`;
  const run = async (sql: string, db?: string): Promise<void> => {
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
      await connection.query(sql);
    } finally {
      await connection.end();
    }
  };

  beforeAll(async () => {
    await run(`CREATE DATABASE ${database}`);
    await run(`CREATE USER '${user}'@'%'; GRANT SELECT, INSERT, UPDATE, DELETE ON ${database}.* TO '${user}'@'%'`);
  });
  afterAll(async () => {
    await run(`DROP DATABASE IF EXISTS ${database}`);
    await run(`DROP USER IF EXISTS '${user}'@'%'`);
  });

  it('is refused with a pointer to concord schema, and works once the script ran', async () => {
    const url = new URL(mysqlUrl());
    url.username = user;
    url.password = '';
    url.pathname = `/${database}`;
    await expectRefusedThenGranted(url.href, () => run(mysqlSchemaScript(), database));
  }, 60_000);
});
