/**
 * What the shared SQL driver needs from one database: a way to run statements in transactions, the few places where
 * the SQL differs (the dialect), how to wake other coordinators (PostgreSQL NOTIFY, MySQL a polled table), and how to
 * tell a failure to retry from one to report.
 */

/** The rows a statement returned and how many it changed. */
export interface Result {
  readonly rows: ReadonlyArray<Record<string, unknown>>;
  /** Rows inserted, updated or deleted. */
  readonly count: number;
  /** The id an INSERT ... of a waiter got (see Dialect.returningId). */
  readonly insertId?: bigint;
}

/** Runs one statement; `?` marks a parameter, in order. */
export type Query = (sql: string, params?: readonly unknown[]) => Promise<Result>;

/** What a failure means: try the whole transaction again, report it as a refusal, or as a lost connection. */
export type FailureKind = 'retry' | 'refused' | 'connection';

/** The SQL that differs between PostgreSQL and MySQL. */
export interface Dialect {
  /** The server's clock in epoch milliseconds, as a bigint expression: every expiry is judged by it. */
  readonly nowMs: string;
  /**
   * Appended to the SELECT of a live session row that keeps reapers (which delete it) off until we commit, and lets its
   * renewals (which update its expiry) through where the backend can tell them apart.
   */
  readonly forShare: string;
  /**
   * Whether a lock attempt or a join checks its session after locking the lock row or the group's counter: where
   * `forShare` also blocks renewals, a request waiting for a busy row must not hold its session row meanwhile.
   */
  readonly sessionAfterLockRow: boolean;
  /** `INSERT ... VALUES (...)` that does nothing (count 0) when the key exists. */
  insertIgnore(table: string, columns: readonly string[]): string;
  /** Appended to the waiter INSERT so the backend can report its id as Result.insertId. */
  readonly returningId: string;
}

/** One look at a lock's line, as the driver asks it of a backend that makes it in one call (SqlBackend.attemptCall). */
export interface AttemptRequest {
  readonly namespace: string;
  readonly kind: string;
  readonly name: string;
  readonly session: string;
  readonly member: string;
  /** Join the line when not granted. */
  readonly queue: boolean;
  readonly slot: number;
  readonly shared: boolean;
  readonly limit: number;
}

/** Where the driver's wake-ups come from; topics are `g:<group>` and `l:<kind>:<name>`. */
export interface WakeSource {
  /** The driver is interested in a topic (a MySQL poller reads only these); returns the end of that interest. */
  want(topic: string): () => void;
  /**
   * Optional (a polled source): records where a wanted topic stands now, before the caller's first look at it, so
   * that the first poll does not wake it for a change that look will see anyway.
   */
  baseline?(topic: string): Promise<void>;
  /** Stops listening; idempotent. */
  close(): Promise<void>;
}

/** What a wake source tells the driver. */
export interface WakeHandlers {
  /** Something changed under `topic` (committed). */
  topic(topic: string): void;
  /** Wake-ups may have been missed (a reconnect): look at everything again. */
  reset(): void;
  /** A dedicated connection (PostgreSQL's LISTEN one) dropped: the link to the server is down. */
  linkDown?(): void;
  /** That connection is back. */
  linkUp?(): void;
}

/** One database, as the shared driver uses it. */
export interface SqlBackend {
  /** 'postgres' or 'mysql', for messages. */
  readonly label: string;
  readonly dialect: Dialect;
  /**
   * Runs `fn` in a READ COMMITTED transaction on one pooled connection (`read`: a consistent snapshot, read only), or
   * as single statements without one (`none`). Rejects with the database's own error; the driver classifies it.
   */
  run<T>(mode: 'write' | 'read' | 'none', fn: (query: Query) => Promise<T>): Promise<T>;
  /** Runs one renewal statement, on the notification connection when there is one (it then proves that one alive). */
  heartbeat(sql: string, params: readonly unknown[], timeoutMs: number): Promise<Result>;
  /** Wakes every coordinator interested in `topic` once the transaction `query` belongs to commits. */
  notify(query: Query, namespace: string, topic: string): Promise<void>;
  /**
   * Optional: one statement that runs `sql` (an UPDATE or DELETE) and, if it changed a row, wakes `topic` on commit;
   * undefined where that takes more than one statement.
   */
  notifyIfChanged?(
    sql: string,
    params: readonly unknown[],
    namespace: string,
    topic: string,
  ): { sql: string; params: readonly unknown[] } | undefined;
  /**
   * Optional: one statement that makes a whole look at a lock's line (a server-side routine of the schema), returning
   * one row: o_status 'token' (o_token), 'wait' (o_wait_ms or NULL), 'gone' (the session is not live), 'limit'
   * (o_lim, the limit the line's requests name; nothing was changed) or 'look' (only a fast path was tried, and it did
   * not apply: nothing was changed). Without it, or when it returns undefined, the driver runs its own transaction.
   */
  attemptCall?(request: AttemptRequest): { sql: string; params: readonly unknown[] } | undefined;
  /** Starts delivering wake-ups for the namespace. */
  listen(namespace: string, handlers: WakeHandlers): Promise<WakeSource>;
  classify(error: unknown): FailureKind;
  /** Releases every connection (gracefully). */
  close(): Promise<void>;
  /** Drops every connection now, as a crash would. */
  destroy(): void;
}
