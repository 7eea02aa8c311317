/**
 * The SQLite library the driver runs on, behind the little it needs: prepared statements, transactions and a busy
 * test. Two engines write the same file format with the same locking, so processes on either share one file:
 *
 * - `node`: node:sqlite, built into Node 22.13+, 24 and 26: nothing to install or compile. The default where it exists.
 * - `better-sqlite3`: a native addon (an optional peer dependency, compiled for each Node ABI): the default on Node 20.
 *
 * `?engine=node` or `?engine=better-sqlite3` on the URL chooses one.
 */
import { createRequire } from 'node:module';
import type BetterSqlite3 from 'better-sqlite3';
import { importClient } from '../../src/client.js';
import { debug } from '../../src/debug.js';
import { ConcordError } from '../../src/errors.js';

/** What a write reports. */
export interface RunResult {
  readonly changes: number;
  readonly lastInsertRowid: number | bigint;
}

/** A prepared statement, typed by its parameters and row (with `pluck`, the first column only). */
export interface Statement<P extends unknown[], R> {
  run(...params: P): RunResult;
  get(...params: P): R | undefined;
  all(...params: P): R[];
}

/** One open database connection. */
export interface Connection {
  prepare<P extends unknown[] = unknown[], R = unknown>(sql: string, pluck?: boolean): Statement<P, R>;
  exec(sql: string): void;
  /** Runs `fn` in a transaction begun as `mode` says; commits, or rolls back and rethrows if it throws. */
  transaction<T>(mode: 'immediate' | 'deferred', fn: () => T): T;
  readonly inTransaction: boolean;
  close(): void;
}

export interface OpenOptions {
  /** How long one statement waits, synchronously, for another connection's write lock. */
  readonly busyTimeoutMs: number;
  readonly readonly?: boolean;
}

export type EngineName = 'node' | 'better-sqlite3';

/** A SQLite library. */
export interface Engine {
  readonly name: EngineName;
  open(path: string, options: OpenOptions): Connection;
}

/** better-sqlite3, loaded on first use: ERR_DRIVER_UNAVAILABLE naming the package when it is not installed. */
export async function betterSqlite3(): Promise<Engine> {
  const module = await importClient<{ default: typeof BetterSqlite3 }>('better-sqlite3', 'sqlite');
  const Database = module.default;
  // The addon loads on the first open: one built for another Node (its ABI) fails here, not on the database file.
  try {
    new Database(':memory:').close();
  } catch (cause) {
    const why = (cause as Error).message.replace(/\s+/g, ' ').trim();
    throw new ConcordError(
      'ERR_DRIVER_UNAVAILABLE',
      `the sqlite: driver's better-sqlite3 engine cannot load on Node ${process.versions.node} (${why}): run npm rebuild better-sqlite3, or use node:sqlite (Node 22.13+) by leaving the engine parameter out or with engine=node`,
      { cause },
    );
  }
  return {
    name: 'better-sqlite3',
    open: (path, options) => wrapBetterSqlite3(new Database(path, { timeout: options.busyTimeoutMs, readonly: options.readonly === true })),
  };
}

function wrapBetterSqlite3(db: BetterSqlite3.Database): Connection {
  // One transaction wrapper for every step (making one per call costs more than the step).
  const tx = db.transaction((fn: () => unknown) => fn());
  return {
    prepare: <P extends unknown[], R>(sql: string, pluck = false): Statement<P, R> => {
      const prepared = db.prepare<P, R>(sql);
      return pluck ? prepared.pluck() : prepared;
    },
    exec: (sql) => {
      db.exec(sql);
    },
    transaction: <T>(mode: 'immediate' | 'deferred', fn: () => T): T => tx[mode](fn) as T,
    get inTransaction() {
      return db.inTransaction;
    },
    close: () => {
      db.close();
    },
  };
}

/** SQLITE_BUSY or SQLITE_LOCKED (and their extended codes): another connection holds what a step needs; retry. */
export function isBusy(error: unknown): boolean {
  const cause = error instanceof ConcordError ? error.cause : error;
  if (typeof cause !== 'object' || cause === null) return false;
  const code = 'code' in cause ? cause.code : undefined;
  // node:sqlite: ERR_SQLITE_ERROR with SQLite's (extended) result code; the primary code is its low byte.
  if (code === 'ERR_SQLITE_ERROR' && 'errcode' in cause && typeof cause.errcode === 'number') {
    const primary = cause.errcode & 0xff;
    return primary === SQLITE_BUSY || primary === SQLITE_LOCKED;
  }
  return typeof code === 'string' && (code.startsWith('SQLITE_BUSY') || code.startsWith('SQLITE_LOCKED'));
}

const SQLITE_BUSY = 5;
const SQLITE_LOCKED = 6;

// ---- node:sqlite

/** The part of node:sqlite used here (@types/node for Node 20 does not describe it). */
interface NodeSqlite {
  readonly DatabaseSync: new (path: string, options?: { readonly readOnly?: boolean }) => NodeDatabase;
}

interface NodeDatabase {
  exec(sql: string): void;
  prepare(sql: string): NodeStatement;
  close(): void;
  /** Node 22.16+, 24+. */
  readonly isTransaction?: boolean;
}

interface NodeStatement {
  run(...params: unknown[]): { changes: number | bigint; lastInsertRowid: number | bigint };
  get(...params: unknown[]): Record<string, unknown> | undefined;
  all(...params: unknown[]): Array<Record<string, unknown>>;
}

let nodeSqlite: NodeSqlite | null | undefined;

/** node:sqlite, or undefined where this Node has none (20, or 22 before 22.13 without --experimental-sqlite). */
export function loadNodeSqlite(): NodeSqlite | undefined {
  if (nodeSqlite === undefined) {
    // Node 22 warns once, as it loads the module, that node:sqlite is experimental: that warning alone is dropped.
    // eslint-disable-next-line @typescript-eslint/unbound-method -- put back as it was below, never called unbound
    const original = process.emitWarning;
    const emit = original.bind(process) as (warning: string | Error, ...rest: unknown[]) => void;
    process.emitWarning = (warning: string | Error, ...rest: unknown[]): void => {
      const first = rest[0];
      const type =
        typeof warning === 'string' ? (typeof first === 'string' ? first : (first as { type?: string } | undefined)?.type) : warning.name;
      const message = typeof warning === 'string' ? warning : warning.message;
      if (type === 'ExperimentalWarning' && message.startsWith('SQLite is an experimental feature')) return;
      emit(warning, ...rest);
    };
    try {
      nodeSqlite = createRequire(import.meta.url)('node:sqlite') as NodeSqlite;
    } catch (error) {
      debug('node:sqlite is not available here: %s', (error as Error).message);
      nodeSqlite = null;
    } finally {
      process.emitWarning = original;
    }
  }
  return nodeSqlite ?? undefined;
}

function nodeEngine(module: NodeSqlite): Engine {
  return {
    name: 'node',
    open: (path, options) => {
      const db = new module.DatabaseSync(path, { readOnly: options.readonly === true });
      try {
        db.exec(`PRAGMA busy_timeout = ${String(Math.max(0, Math.floor(options.busyTimeoutMs)))}`);
      } catch (error) {
        db.close();
        throw error;
      }
      return wrapNode(db);
    },
  };
}

/**
 * node:sqlite binds every JavaScript number as a REAL: whole numbers go as 64-bit integers instead, so both engines
 * store the same values (a column without a type, like concord_meta's, keeps what it is given).
 */
function bind(params: unknown[]): unknown[] {
  return params.map((value) => (typeof value === 'number' && Number.isSafeInteger(value) ? BigInt(value) : value));
}

function firstColumn(row: Record<string, unknown> | undefined): unknown {
  return row === undefined ? undefined : Object.values(row)[0];
}

function wrapNode(db: NodeDatabase): Connection {
  let depth = 0;
  const begin = { immediate: db.prepare('BEGIN IMMEDIATE'), deferred: db.prepare('BEGIN DEFERRED') };
  const commit = db.prepare('COMMIT');
  const rollback = db.prepare('ROLLBACK');
  const inTransaction = (): boolean => db.isTransaction ?? depth > 0;
  return {
    prepare: <P extends unknown[], R>(sql: string, pluck = false): Statement<P, R> => {
      const prepared = db.prepare(sql);
      return {
        run: (...params: P) => {
          const result = prepared.run(...bind(params));
          return { changes: Number(result.changes), lastInsertRowid: result.lastInsertRowid };
        },
        get: (...params: P) => (pluck ? firstColumn(prepared.get(...bind(params))) : prepared.get(...bind(params))) as R | undefined,
        all: (...params: P) => {
          const rows = prepared.all(...bind(params));
          return (pluck ? rows.map(firstColumn) : rows) as R[];
        },
      };
    },
    exec: (sql) => {
      db.exec(sql);
    },
    transaction: <T>(mode: 'immediate' | 'deferred', fn: () => T): T => {
      // Nested: a savepoint, as better-sqlite3 does.
      if (depth > 0) {
        db.exec('SAVEPOINT concord');
        depth++;
        try {
          const result = fn();
          db.exec('RELEASE concord');
          return result;
        } catch (error) {
          db.exec('ROLLBACK TO concord');
          db.exec('RELEASE concord');
          throw error;
        } finally {
          depth--;
        }
      }
      begin[mode].run();
      depth++;
      try {
        const result = fn();
        commit.run();
        return result;
      } catch (error) {
        if (inTransaction()) rollback.run();
        throw error;
      } finally {
        depth--;
      }
    },
    get inTransaction() {
      return inTransaction();
    },
    close: () => {
      db.close();
    },
  };
}

// ---- the choice

/**
 * The engine a URL asks for with `?engine=`, else node:sqlite where this Node has it, else better-sqlite3. A value
 * that names no engine is ERR_INVALID_URL; one this runtime cannot load, ERR_DRIVER_UNAVAILABLE, both naming the
 * parameter. Checked before any file is opened.
 */
export async function chooseEngine(params: URLSearchParams): Promise<Engine> {
  const asked = params.get('engine');
  if (asked !== null && asked !== 'node' && asked !== 'better-sqlite3') {
    throw new ConcordError(
      'ERR_INVALID_URL',
      `url parameter engine=${asked} names no SQLite engine: use engine=node or engine=better-sqlite3`,
    );
  }
  if (asked === 'better-sqlite3') return betterSqlite3();
  const module = loadNodeSqlite();
  if (module) return nodeEngine(module);
  if (asked === 'node') {
    throw new ConcordError(
      'ERR_DRIVER_UNAVAILABLE',
      `url parameter engine=node needs node:sqlite (Node 22.13+, 24 or 26); this is Node ${process.versions.node}: leave engine out or use engine=better-sqlite3`,
    );
  }
  return betterSqlite3();
}
