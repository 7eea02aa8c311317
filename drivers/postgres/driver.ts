/**
 * postgres:// and postgresql:// — PostgreSQL 12+ with the `pg` package, on the shared SQL driver (../sql/driver.ts).
 *
 * Connections per coordinator: a small pool for transactions (at most POOL_MAX) and one LISTEN connection, on which
 * the renewals run too. The URL is a libpq-style connection string: user, password (never printed), host, port,
 * database, `application_name`..., and TLS with libpq's `sslmode` / `sslrootcert` / `sslcert` / `sslkey` (options.ts).
 *
 * Tables are created on the first connect, under a transaction-scoped advisory lock so that many processes
 * connecting at once for the first time do not trip over each other's CREATE; a user without CREATE rights gets
 * ERR_REFUSED saying to run `concord schema --url ...` as one that has them.
 */
import { createHash } from 'node:crypto';
import type { Client, ClientConfig, Pool, PoolConfig } from 'pg';
import { importClient } from '../../src/client.js';
import { withTimeout } from '../../src/clock.js';
import { debug } from '../../src/debug.js';
import { ConcordError, abortedError } from '../../src/errors.js';
import type { Driver, DriverContext } from '../../src/driver.js';
import type { AttemptRequest, Dialect, FailureKind, Query, Result, SqlBackend, WakeHandlers, WakeSource } from '../sql/backend.js';
import { SqlDriver } from '../sql/driver.js';
import { SCHEMA_VERSION } from '../sql/schema.js';
import { features } from './index.js';
import { Listener, dropClient, type ClientConstructor } from './listener.js';
import { poolConfig } from './options.js';
import { POSTGRES_SCHEMA } from './schema.js';

const POOL_MAX = 3;
/** Arbitrary, fixed: every concord process creating the tables takes this advisory lock first. */
const SCHEMA_LOCK = 0x636f6e63;

export const dialect: Dialect = Object.freeze({
  nowMs: '(extract(epoch from clock_timestamp()) * 1000)::bigint',
  // A renewal's UPDATE of the expiry takes FOR NO KEY UPDATE, which KEY SHARE lets through; a reaper's DELETE does not.
  forShare: 'FOR KEY SHARE',
  sessionAfterLockRow: false,
  insertIgnore: (table: string, columns: readonly string[]) =>
    `INSERT INTO ${table} (${columns.join(', ')}) VALUES (${columns.map(() => '?').join(', ')}) ON CONFLICT DO NOTHING`,
  returningId: ' RETURNING id',
});

/** `?` placeholders become `$1`, `$2`... (no statement here has a `?` inside a string). */
function numbered(sql: string): string {
  let n = 0;
  return sql.replace(/\?/g, () => `$${String(++n)}`);
}

/** The LISTEN channel of a namespace: a fixed-length identifier whatever the namespace holds. */
export function channelOf(namespace: string): string {
  return `concord_${createHash('sha256').update(namespace).digest('hex').slice(0, 40)}`;
}

function sqlState(error: unknown): string | undefined {
  const code = typeof error === 'object' && error !== null && 'code' in error ? error.code : undefined;
  return typeof code === 'string' && /^[0-9A-Z]{5}$/.test(code) ? code : undefined;
}

/** Serialization failure, deadlock, lock not available: the transaction is tried again. */
export function classify(error: unknown): FailureKind {
  const state = sqlState(error);
  if (state === undefined) return 'connection';
  if (state === '40001' || state === '40P01' || state === '55P03') return 'retry';
  // Connection exceptions, insufficient resources (too many connections), operator intervention (shutdown, crash).
  if (state.startsWith('08') || state.startsWith('53') || state.startsWith('57')) return 'connection';
  return 'refused';
}

interface PgModule {
  Pool: new (config: PoolConfig) => Pool;
  Client: ClientConstructor;
}

class PostgresBackend implements SqlBackend {
  readonly label = 'postgres';
  readonly dialect = dialect;
  readonly #pool: Pool;
  readonly #Client: ClientConstructor;
  readonly #config: ClientConfig;
  readonly #fallbackMs: number;
  readonly #clients = new Set<Client>();
  #listener: Listener | undefined;

  constructor(pg: PgModule, config: PoolConfig, fallbackMs: number) {
    this.#Client = pg.Client;
    this.#config = config;
    this.#fallbackMs = fallbackMs;
    this.#pool = new pg.Pool({ ...config, max: POOL_MAX, idleTimeoutMillis: 30_000 });
    // An idle client's failure (a cut link, a restart) is reported here; the pool drops that client.
    this.#pool.on('error', (error) => {
      debug('postgres idle connection failed: %s', error.message);
    });
    this.#pool.on('connect', (client) => {
      this.#clients.add(client);
      // A checked-out client's socket failing is reported to its query; without a listener it would also throw.
      client.on('error', (error) => {
        debug('postgres connection failed: %s', error.message);
      });
      client.on('end', () => this.#clients.delete(client));
    });
  }

  async run<T>(mode: 'write' | 'read' | 'none', fn: (query: Query) => Promise<T>): Promise<T> {
    const client = await this.#pool.connect();
    const query: Query = async (sql, params = []) => {
      const result = await client.query(numbered(sql), params as unknown[]);
      const rows = result.rows as Array<Record<string, unknown>>;
      const first = rows[0];
      const id = first && 'id' in first && /RETURNING id$/.test(sql) ? BigInt(String(first.id)) : undefined;
      return { rows, count: result.rowCount ?? 0, ...(id === undefined ? {} : { insertId: id }) };
    };
    let released = false;
    const release = (error?: Error): void => {
      if (released) return;
      released = true;
      client.release(error);
    };
    try {
      if (mode === 'none') {
        const value = await fn(query);
        release();
        return value;
      }
      await client.query(mode === 'read' ? 'BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY' : 'BEGIN');
      let value: T;
      try {
        value = await fn(query);
      } catch (error) {
        if (sqlState(error) !== undefined || error instanceof ConcordError) {
          // The connection is fine: roll back and keep it.
          await client.query('ROLLBACK');
        }
        throw error;
      }
      await client.query('COMMIT');
      release();
      return value;
    } catch (error) {
      // A connection whose state is in doubt is not reused.
      release(sqlState(error) === undefined && !(error instanceof ConcordError) ? (error as Error) : undefined);
      throw error;
    }
  }

  async heartbeat(sql: string, params: readonly unknown[], timeoutMs: number): Promise<Result> {
    const client = this.#listener?.client;
    if (!client) return this.run('none', (query) => query(sql, params));
    try {
      const result = await withTimeout(client.query(numbered(sql), params as unknown[]), timeoutMs);
      return { rows: result.rows as Array<Record<string, unknown>>, count: result.rowCount ?? 0 };
    } catch (error) {
      // The LISTEN connection did not answer: it may be dead without knowing; replace it.
      if (sqlState(error) === undefined) this.#listener?.recycle();
      throw error;
    }
  }

  async notify(query: Query, namespace: string, topic: string): Promise<void> {
    await query('SELECT pg_notify(?, ?)', [channelOf(namespace), topic]);
  }

  notifyIfChanged(sql: string, params: readonly unknown[], namespace: string, topic: string): { sql: string; params: readonly unknown[] } {
    return {
      sql: `WITH changed AS (${sql} RETURNING 1) SELECT pg_notify(?, ?) FROM (SELECT 1 FROM changed LIMIT 1) AS c`,
      params: [...params, channelOf(namespace), topic],
    };
  }

  attemptCall(request: AttemptRequest): { sql: string; params: readonly unknown[] } {
    return {
      sql: 'SELECT o_status, o_token, o_wait_ms, o_lim FROM concord_attempt(?, ?, ?, ?, ?, ?, ?, ?, ?, ?)',
      params: [
        request.namespace,
        request.kind,
        request.name,
        request.session,
        request.member,
        request.queue,
        request.slot,
        request.shared,
        request.limit,
        channelOf(request.namespace),
      ],
    };
  }

  async listen(namespace: string, handlers: WakeHandlers): Promise<WakeSource> {
    const listener = new Listener(this.#Client, this.#config, channelOf(namespace), handlers, this.#fallbackMs);
    this.#listener = listener;
    try {
      await listener.start();
    } catch (error) {
      // A pooler in transaction mode, or a server that refuses LISTEN: woken every fallbackMs meanwhile.
      debug('postgres LISTEN failed, re-checking every %d ms until it works: %s', this.#fallbackMs, (error as Error).message);
    }
    return listener;
  }

  classify(error: unknown): FailureKind {
    return classify(error);
  }

  async close(): Promise<void> {
    await this.#listener?.close();
    await this.#pool.end().catch(() => undefined);
  }

  destroy(): void {
    this.#listener?.destroy();
    for (const client of this.#clients) dropClient(client);
    this.#pool.end().catch(() => undefined);
  }

  /** Creates the tables unless they are there at our version; refuses a newer schema. */
  async ensureSchema(): Promise<void> {
    const version = await this.run('none', async (query) => {
      const { rows } = await query("SELECT to_regclass('concord_schema') IS NOT NULL AS present");
      if (rows[0]?.present !== true) return undefined;
      return Number((await query('SELECT max(version) AS version FROM concord_schema')).rows[0]?.version ?? 0);
    });
    if (version === SCHEMA_VERSION) return;
    if (version !== undefined && version > SCHEMA_VERSION) {
      throw new ConcordError(
        'ERR_REFUSED',
        `postgres: the concord tables are at schema version ${String(version)}, newer than this release knows (${String(SCHEMA_VERSION)}); upgrade concord`,
      );
    }
    try {
      await this.run('write', async (query) => {
        // Concurrent CREATE TABLE IF NOT EXISTS can still collide in the catalog: one creator at a time.
        await query('SELECT pg_advisory_xact_lock(?)', [SCHEMA_LOCK]);
        for (const statement of POSTGRES_SCHEMA) await query(statement);
      });
    } catch (error) {
      if (sqlState(error) === '42501') {
        throw new ConcordError(
          'ERR_REFUSED',
          `postgres: this user may not create concord's tables (${(error as Error).message}); run the SQL printed by \`concord schema --url <url>\` as a user who may, once`,
          { cause: error },
        );
      }
      throw error;
    }
  }
}

export async function createDriver(context: DriverContext): Promise<Driver> {
  // Bad parameters are refused before anything is loaded or opened.
  const config = poolConfig(context);
  const pg = await importClient<{ default: PgModule }>('pg', context.url.protocol.slice(0, -1));
  const { signal } = context;
  if (signal.aborted) throw abortedError(signal, 'connecting');
  const fallbackMs = Math.max(50, Math.min(1000, context.sessionTtlMs / 3));
  const backend = new PostgresBackend(pg.default, config, fallbackMs);
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
    const text = (error as Error).message;
    throw new ConcordError(kind === 'refused' ? 'ERR_REFUSED' : 'ERR_CONNECTION', `postgres: ${text}`, { cause: error });
  } finally {
    signal.removeEventListener('abort', onAbort);
  }
  return driver;
}
