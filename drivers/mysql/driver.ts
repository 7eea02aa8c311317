/**
 * mysql:// and mariadb:// — MySQL 8 and MariaDB 10.6+ with the `mysql2` package, on the shared SQL driver
 * (../sql/driver.ts). Wake-ups come from a polled table (poller.ts): MySQL has no notifications.
 *
 * Connections per coordinator: a small pool (at most POOL_MAX), each connection in READ COMMITTED (the shared driver's
 * transactions are written for it) with its time zone at UTC (the server clock is read as epoch milliseconds). The URL:
 * user, password (never printed), host, port, database; TLS with `ssl-mode`, `ssl-ca`... (options.ts).
 *
 * Tables are created on the first connect while holding GET_LOCK('concord_schema'), so that many processes connecting
 * at once for the first time do not trip over each other; a user without CREATE rights gets ERR_REFUSED saying to run
 * `concord schema --url ...` as one that has them.
 */
import type { Pool as CallbackPool, PoolConnection as CallbackConnection, PoolOptions } from 'mysql2';
import type { Pool, PoolConnection, ResultSetHeader } from 'mysql2/promise';
import { importClient } from '../../src/client.js';
import { withTimeout } from '../../src/clock.js';
import { debug } from '../../src/debug.js';
import { ConcordError, abortedError } from '../../src/errors.js';
import type { Driver, DriverContext } from '../../src/driver.js';
import type { AttemptRequest, Dialect, FailureKind, Query, Result, SqlBackend, WakeHandlers, WakeSource } from '../sql/backend.js';
import { SqlDriver } from '../sql/driver.js';
import { SCHEMA_VERSION } from '../sql/schema.js';
import { features } from './index.js';
import { Poller } from './poller.js';
import { poolOptions } from './options.js';
import { MYSQL_SCHEMA } from './schema.js';

export const dialect: Dialect = Object.freeze({
  nowMs: 'CAST(UNIX_TIMESTAMP(NOW(3)) * 1000 AS SIGNED)',
  forShare: 'LOCK IN SHARE MODE',
  // A shared lock on the session row blocks its renewals too: take it only once the lock row is ours.
  sessionAfterLockRow: true,
  insertIgnore: (table: string, columns: readonly string[]) =>
    `INSERT IGNORE INTO ${table} (${columns.join(', ')}) VALUES (${columns.map(() => '?').join(', ')})`,
  returningId: '',
});

interface MysqlError {
  readonly errno?: number;
  readonly sqlState?: string;
  readonly fatal?: boolean;
  readonly code?: string;
}

function serverErrno(error: unknown): number | undefined {
  if (typeof error !== 'object' || error === null) return undefined;
  const { errno, sqlState, fatal } = error as MysqlError;
  // Client-side failures carry errno too (ECONNREFUSED...), but no SQL state.
  return typeof errno === 'number' && typeof sqlState === 'string' && fatal !== true ? errno : undefined;
}

/** Deadlock, lock wait timeout: the transaction is tried again. */
export function classify(error: unknown): FailureKind {
  const errno = serverErrno(error);
  if (errno === undefined) return 'connection';
  if (errno === 1213 || errno === 1205) return 'retry';
  // Too many connections, server shutting down, lost connection, query interrupted.
  if (errno === 1040 || errno === 1053 || errno === 1317 || errno === 1927 || errno >= 2000) return 'connection';
  return 'refused';
}

/** Several statements in one query answer one result each: the rows are those of the last that returned rows. */
function isMulti(value: unknown[]): boolean {
  return value.some((item) => Array.isArray(item) || (item as { constructor?: { name?: string } }).constructor?.name === 'ResultSetHeader');
}

function resultOf(value: unknown): Result {
  if (Array.isArray(value) && isMulti(value)) {
    const last = value.filter((item) => Array.isArray(item)).at(-1);
    return { rows: (last ?? []) as Array<Record<string, unknown>>, count: 0 };
  }
  if (Array.isArray(value)) return { rows: value as Array<Record<string, unknown>>, count: 0 };
  const header = value as ResultSetHeader;
  return { rows: [], count: header.affectedRows, ...(header.insertId ? { insertId: BigInt(header.insertId) } : {}) };
}

class MysqlBackend implements SqlBackend {
  readonly label = 'mysql';
  readonly dialect = dialect;
  readonly #pool: Pool;
  readonly #connections = new Set<CallbackConnection>();
  readonly #queryTimeoutMs: number;
  #poller: Poller | undefined;

  constructor(callbackPool: CallbackPool, queryTimeoutMs: number) {
    this.#pool = callbackPool.promise();
    this.#queryTimeoutMs = queryTimeoutMs;
    callbackPool.on('connection', (connection) => {
      this.#connections.add(connection);
      connection.on('error', (error: Error) => {
        debug('mysql connection failed: %s', error.message);
      });
      connection.on('end', () => this.#connections.delete(connection));
      // Queued ahead of anything the pool hands this connection out for.
      // Two statements: MariaDB does not take the isolation level inside a SET list.
      connection.query("SET SESSION time_zone = '+00:00'");
      connection.query('SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED');
    });
  }

  async run<T>(mode: 'write' | 'read' | 'none', fn: (query: Query) => Promise<T>): Promise<T> {
    const connection = await this.#pool.getConnection();
    const send = (sql: string, params: readonly unknown[] = []): Promise<unknown> => this.#bounded(connection, sql, params);
    const query: Query = async (sql, params = []) => resultOf(await send(sql, params));
    let done = false;
    const finish = (healthy: boolean): void => {
      if (done) return;
      done = true;
      if (healthy) connection.release();
      else connection.destroy();
    };
    try {
      if (mode === 'none') {
        let value: T;
        try {
          value = await fn(query);
        } catch (error) {
          // A batch that opened a transaction and failed inside it (a lock wait timeout undoes only the statement)
          // must not hand its connection back mid-transaction.
          if (serverErrno(error) !== undefined) await send('ROLLBACK');
          throw error;
        }
        finish(true);
        return value;
      }
      if (mode === 'read') {
        await send('SET TRANSACTION ISOLATION LEVEL REPEATABLE READ');
        await send('START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY');
      } else await send('START TRANSACTION');
      let value: T;
      try {
        value = await fn(query);
      } catch (error) {
        if (serverErrno(error) !== undefined || error instanceof ConcordError) await send('ROLLBACK');
        throw error;
      }
      await send('COMMIT');
      finish(true);
      return value;
    } catch (error) {
      finish(serverErrno(error) !== undefined || error instanceof ConcordError);
      throw error;
    }
  }

  /**
   * One statement, given up after the query timeout with its connection dropped (the statement may still run there).
   * Not mysql2's own `timeout`: its timer outlives a connection that dies meanwhile, and would hold the process.
   */
  async #bounded(connection: PoolConnection, sql: string, params: readonly unknown[]): Promise<unknown> {
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<never>((_resolve, reject) => {
      timer = setTimeout(() => {
        connection.destroy();
        // No SQL state: classified as a lost connection, and the connection is not reused.
        reject(new Error(`no answer within ${String(this.#queryTimeoutMs)} ms`));
      }, this.#queryTimeoutMs);
    });
    try {
      const [value] = await Promise.race([connection.query(sql, params as unknown[]), timedOut]);
      return value;
    } finally {
      clearTimeout(timer);
    }
  }

  heartbeat(sql: string, params: readonly unknown[], timeoutMs: number): Promise<Result> {
    return withTimeout(
      this.run('none', (query) => query(sql, params)),
      timeoutMs,
    );
  }

  async notify(query: Query, namespace: string, topic: string): Promise<void> {
    await query('INSERT INTO concord_notes (ns, topic, version) VALUES (?, ?, 1) ON DUPLICATE KEY UPDATE version = version + 1', [
      namespace,
      topic,
    ]);
  }

  notifyIfChanged(sql: string, params: readonly unknown[], namespace: string, topic: string): { sql: string; params: readonly unknown[] } {
    // One round trip: the change, its note only if it changed a row, one commit.
    return {
      sql: `START TRANSACTION; ${sql}; SET @concord_changed = ROW_COUNT();
        INSERT INTO concord_notes (ns, topic, version) SELECT ?, ?, 1 FROM DUAL WHERE @concord_changed > 0
          ON DUPLICATE KEY UPDATE version = version + 1;
        COMMIT`,
      params: [...params, namespace, topic],
    };
  }

  /**
   * The uncontended exclusive acquire in one round trip (the counter as read FOR UPDATE: the assignments of one UPDATE
   * see each other in MySQL, not in MariaDB with SIMULTANEOUS_ASSIGNMENT): the first statements of the driver's look (the lock row
   * FOR UPDATE, then the session row LOCK IN SHARE MODE, the line read), and the grant only when the lock row is free and the
   * line is empty or holds this request alone; anything else ('look') is left to the driver's full look. Leadership
   * is left out (its grants are announced).
   */
  attemptCall(request: AttemptRequest): { sql: string; params: readonly unknown[] } | undefined {
    if (request.shared || request.kind === 'leader' || request.slot !== 0) return undefined;
    const key = [request.namespace, request.kind, request.name];
    return {
      sql: `SET @concord_live = 0, @concord_fence = NULL, @concord_queued = 1, @concord_mine = 0, @concord_granted = 0;
        START TRANSACTION;
        SELECT fence INTO @concord_fence FROM concord_locks WHERE ns = ? AND kind = ? AND name = ? FOR UPDATE;
        SELECT 1 INTO @concord_live FROM concord_sessions WHERE id = ? AND expires_at > ${dialect.nowMs} LOCK IN SHARE MODE;
        SELECT COUNT(*), COALESCE(SUM(session = ? AND slot = 0 AND shared = 0 AND token IS NULL), 0) INTO @concord_queued, @concord_mine
          FROM concord_waiters WHERE ns = ? AND kind = ? AND name = ?;
        UPDATE concord_locks SET fence = @concord_fence + 1, session = ?, member = ?, token = @concord_fence + 1
          WHERE ns = ? AND kind = ? AND name = ? AND session IS NULL AND @concord_live = 1
            AND (@concord_queued = 0 OR (@concord_queued = 1 AND @concord_mine = 1));
        SET @concord_granted = ROW_COUNT();
        DELETE FROM concord_waiters WHERE @concord_granted = 1 AND ns = ? AND kind = ? AND name = ? AND session = ? AND slot = 0;
        COMMIT;
        SELECT CASE WHEN @concord_live = 0 THEN 'gone' WHEN @concord_granted = 1 THEN 'token' ELSE 'look' END AS o_status,
          @concord_fence + 1 AS o_token, NULL AS o_wait_ms, NULL AS o_lim`,
      params: [...key, request.session, request.session, ...key, request.session, request.member, ...key, ...key, request.session],
    };
  }

  listen(namespace: string, handlers: WakeHandlers): Promise<WakeSource> {
    this.#poller = new Poller(async (topics) => {
      const { rows } = await this.run('none', (query) =>
        query(`SELECT topic, version FROM concord_notes WHERE ns = ? AND topic IN (${topics.map(() => '?').join(', ')})`, [
          namespace,
          ...topics,
        ]),
      );
      const versions = new Map<string, bigint>();
      for (const row of rows) {
        const topic = Buffer.isBuffer(row.topic) ? row.topic.toString('utf8') : String(row.topic);
        versions.set(topic, BigInt(String(row.version)));
      }
      return versions;
    }, handlers);
    return Promise.resolve(this.#poller);
  }

  classify(error: unknown): FailureKind {
    return classify(error);
  }

  async close(): Promise<void> {
    await this.#poller?.close();
    await this.#pool.end().catch(() => undefined);
  }

  destroy(): void {
    void this.#poller?.close();
    for (const connection of this.#connections) connection.destroy();
    this.#pool.end().catch(() => undefined);
  }

  /** Creates the tables unless they are there at our version; refuses a newer schema. */
  async ensureSchema(): Promise<void> {
    const version = await this.#schemaVersion();
    if (version === SCHEMA_VERSION) return;
    if (version !== undefined && version > SCHEMA_VERSION) {
      throw new ConcordError(
        'ERR_REFUSED',
        `mysql: the concord tables are at schema version ${String(version)}, newer than this release knows (${String(SCHEMA_VERSION)}); upgrade concord`,
      );
    }
    const connection: PoolConnection = await this.#pool.getConnection();
    try {
      // DDL commits by itself in MySQL: a named lock keeps concurrent first connects from racing each other.
      await connection.query("SELECT GET_LOCK('concord_schema', 30) AS got");
      try {
        for (const statement of MYSQL_SCHEMA) await connection.query(statement);
      } finally {
        await connection.query("SELECT RELEASE_LOCK('concord_schema')");
      }
      connection.release();
    } catch (error) {
      connection.destroy();
      const errno = serverErrno(error);
      if (errno === 1142 || errno === 1044 || errno === 1227) {
        throw new ConcordError(
          'ERR_REFUSED',
          `mysql: this user may not create concord's tables (${(error as Error).message}); run the SQL printed by \`concord schema --url <url>\` as a user who may, once`,
          { cause: error },
        );
      }
      throw error;
    }
  }

  async #schemaVersion(): Promise<number | undefined> {
    return this.run('none', async (query) => {
      const { rows } = await query(
        "SELECT count(*) AS n FROM information_schema.tables WHERE table_schema = DATABASE() AND table_name = 'concord_schema'",
      );
      if (Number(rows[0]?.n ?? 0) === 0) return undefined;
      return Number((await query('SELECT max(version) AS version FROM concord_schema')).rows[0]?.version ?? 0);
    });
  }
}

export async function createDriver(context: DriverContext): Promise<Driver> {
  const options = poolOptions(context);
  const mysql = await importClient<{ default: { createPool(options: PoolOptions): CallbackPool } }>(
    'mysql2',
    context.url.protocol.slice(0, -1),
  );
  const { signal } = context;
  if (signal.aborted) throw abortedError(signal, 'connecting');
  const fallbackMs = Math.max(50, Math.min(1000, context.sessionTtlMs / 3));
  const backend = new MysqlBackend(mysql.default.createPool(options), Math.max(2000, Math.min(context.sessionTtlMs, 30_000)));
  const driver = new SqlDriver(backend, context, { features, fallbackMs });
  const onAbort = (): void => {
    backend.destroy();
  };
  signal.addEventListener('abort', onAbort, { once: true });
  try {
    await backend.ensureSchema();
    await driver.start();
    if (signal.aborted) throw abortedError(signal, 'connecting');
  } catch (error) {
    backend.destroy();
    if (signal.aborted) throw abortedError(signal, 'connecting');
    if (error instanceof ConcordError) throw error;
    const kind = classify(error);
    throw new ConcordError(kind === 'refused' ? 'ERR_REFUSED' : 'ERR_CONNECTION', `mysql: ${(error as Error).message}`, { cause: error });
  } finally {
    signal.removeEventListener('abort', onAbort);
  }
  return driver;
}
