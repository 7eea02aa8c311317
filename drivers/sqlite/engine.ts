/**
 * The SQLite library the driver runs on, behind the little it needs: prepared statements, transactions and a busy
 * test. better-sqlite3 is a native addon (compiled for each Node ABI).
 */
import type BetterSqlite3 from 'better-sqlite3';
import { importClient } from '../../src/client.js';
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

/** A SQLite library. */
export interface Engine {
  readonly name: string;
  open(path: string, options: OpenOptions): Connection;
}

/** better-sqlite3, loaded on first use: ERR_DRIVER_UNAVAILABLE naming the package when it is not installed. */
export async function betterSqlite3(): Promise<Engine> {
  const module = await importClient<{ default: typeof BetterSqlite3 }>('better-sqlite3', 'sqlite');
  const Database = module.default;
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
  return typeof code === 'string' && (code.startsWith('SQLITE_BUSY') || code.startsWith('SQLITE_LOCKED'));
}
