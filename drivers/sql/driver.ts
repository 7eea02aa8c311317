/**
 * The driver PostgreSQL and MySQL share: the same tables, the same transactions, the same rules; each database brings
 * its connections, a few lines of dialect and its wake-ups (backend.ts).
 *
 * - Time: a session is a row whose `expires_at` is the database server's clock plus the TTL; every expiry is judged by
 *   that one clock, never a client's. Renewal moves it on only while it has not passed.
 * - Reaping: an expired session's memberships leave (logged, so watchers hear) and its locks and queue places go, in
 *   one transaction, by any live coordinator: on each renewal, and at the expiry a waiter or a watcher has in view.
 *   Group operations also remove their group's expired members first, so members() never waits for a reaper.
 * - The change log cannot skip a row that commits late: every transaction that logs a change of a group first locks
 *   that group's counter row (concord_logs) and takes the next number from it. Writers of one group are thus serialised
 *   and their numbers follow commit order with no hole (a rolled-back change rolls its number back too). A reader
 *   that sees change n has seen every change before it; one that finds a hole knows the log was trimmed and resyncs.
 *   (A database sequence would not do: ids are taken at insert, transactions commit out of id order, and a reader that
 *   passed id 7 would never see an id 6 committed after.)
 * - Locks: one row per (namespace, kind, full name) holding the fencing counter, bumped in the acquiring transaction,
 *   so a token is never handed out twice while the database keeps its default durability, and the exclusive holder.
 *   Requests wait in concord_waiters, one row per (session, slot), ordered by id; the id is taken while the lock row
 *   is locked, so ids follow arrival. That is the name's one line (src/driver.ts, holdsAt): an exclusive request
 *   takes the free lock row when it is first in line; a shared request or a permit is granted in its row (its token
 *   set) when every request before it is shared and fewer than its limit are, and keeps the row while it holds, so
 *   the holders are always the first rows. Each request takes its own grant at its own look (woken by the release
 *   or grant before it), in line order. A lock held by an expired session is freed by the next attempt.
 * - Lock order, to keep deadlocks rare: the session row first (FOR SHARE by writers, deleted by reapers), then lock
 *   rows, then group counter rows in name order; except where a shared lock on the session row would also block its
 *   renewals (MySQL), a lock attempt or a join locks the lock row or the group's counter first and its session row
 *   after, so that a request waiting for a busy row does not hold up its session's renewals meanwhile. A deadlock or serialization failure that still
 *   happens is retried here, never shown to the caller.
 */
import { randomBytes } from 'node:crypto';
import { debug } from '../../src/debug.js';
import { ConcordError, abortedError } from '../../src/errors.js';
import {
  EXCLUSIVE,
  holdsAt,
  type Driver,
  type DriverContext,
  type GroupSnapshot,
  type LockHolder,
  type LockKind,
  type LockListing,
  type LockWaiter,
  type LockMode,
  type Revision,
  type Unsubscribe,
  type WatchSink,
} from '../../src/driver.js';
import {
  Wakeup,
  compareIds,
  groupExists,
  groupNotEmpty,
  groupNotFound,
  limitMismatch,
  memberExists,
  memberNotJoined,
  parseCapabilities,
  sessionGone,
} from '../../src/kit/index.js';
import type { Capabilities, Features } from '../../src/types.js';
import type { Query, Result, SqlBackend, WakeSource } from './backend.js';

/** How often a failed transaction (deadlock, serialization failure) is tried again before giving up as ERR_CONNECTION. */
const RETRIES = 30;
/** The change log keeps at least this many recent changes per group; a reader further behind resynchronises. */
const LOG_KEEP = 1024;
const LOG_TRIM_EVERY = 128;
/** Expired sessions reaped per transaction (the rest on the next). */
const REAP_LIMIT = 16;
/** Change rows read per round. */
const READ_BATCH = 500;

interface GroupWatchEntry {
  readonly group: string;
  last: bigint;
  readonly sink: WatchSink;
  active: boolean;
}

/** A group whose log is being read: one read at a time, and one more if woken meanwhile. */
interface GroupReader {
  reading: boolean;
  again: boolean;
}

export interface SqlDriverOptions {
  readonly features: Features;
  /** A waiting acquire re-checks this often without a wake-up. */
  readonly fallbackMs: number;
}

export function groupTopic(group: string): string {
  return `g:${group}`;
}

export function lockTopic(kind: LockKind, name: string): string {
  return `l:${kind}:${name}`;
}

function str(value: unknown): string {
  if (Buffer.isBuffer(value)) return value.toString('utf8');
  return String(value);
}

function big(value: unknown): bigint {
  if (typeof value === 'bigint') return value;
  if (typeof value === 'number') return BigInt(Math.trunc(value));
  return BigInt(str(value));
}

function nullableStr(value: unknown): string | null {
  return value === null || value === undefined ? null : str(value);
}

type Attempt = { readonly token: bigint } | { readonly waitMs: number | undefined };

/** Whether a request in `slot` is an exclusive one, held in the lock row (slot 0 of a lock or a leadership). */
function isExclusive(kind: LockKind, slot: number): boolean {
  return kind !== 'semaphore' && slot === 0;
}

/** A holder from a row of the lock row / granted request union (none while the lock row is free). */
function holderOf(row: Record<string, unknown>): LockHolder[] {
  if (row.member === null || row.token === null || row.member === undefined || row.token === undefined) return [];
  const holder = { member: str(row.member), token: big(row.token) };
  return Number(row.shared) === 1 ? [{ ...holder, shared: true }] : [holder];
}

function byToken(a: LockHolder, b: LockHolder): number {
  return a.token < b.token ? -1 : a.token > b.token ? 1 : 0;
}

export class SqlDriver implements Driver {
  readonly features: Features;
  readonly pollIntervalMs: number;
  readonly #backend: SqlBackend;
  readonly #context: DriverContext;
  readonly #ns: string;
  readonly #q: SqlBackend['dialect'];
  #wake: WakeSource | undefined;
  #closed = false;
  /** Sessions opened here: when one is found gone, the core hears at once. */
  readonly #sessions = new Map<string, number>();
  readonly #groupWatches = new Map<string, Set<GroupWatchEntry>>();
  readonly #readers = new Map<string, GroupReader>();
  readonly #lockListeners = new Map<string, Set<() => void>>();
  readonly #interest = new Map<string, { count: number; end: () => void }>();
  /** Lock requests (kind, name, session, slot) whose last look failed on the connection: it may have committed. */
  readonly #unanswered = new Set<string>();
  /** A reap at the next expiry this driver has in view (a watched member, a holder a waiter waits for). */
  #reapTimer: NodeJS.Timeout | undefined;
  #reapAt = Infinity;

  constructor(backend: SqlBackend, context: DriverContext, options: SqlDriverOptions) {
    this.#backend = backend;
    this.#context = context;
    this.#ns = context.namespace;
    this.#q = backend.dialect;
    this.features = options.features;
    this.pollIntervalMs = options.fallbackMs;
  }

  async start(): Promise<void> {
    this.#wake = await this.#backend.listen(this.#ns, {
      topic: (topic) => {
        this.#onTopic(topic);
      },
      reset: () => {
        this.#onReset();
      },
      // Suspended at once, not at the next renewal; renewed at once when the connection is back. (After close() the
      // core has stopped its session machine, which ignores both.)
      linkDown: () => this.#context.events.linkDown?.(),
      linkUp: () => this.#context.events.linkUp?.(),
    });
  }

  // ---- plumbing

  /** Runs a transaction, again on a deadlock or serialization failure; other failures become ConcordErrors. */
  async #tx<T>(mode: 'write' | 'read' | 'none', fn: (query: Query) => Promise<T>): Promise<T> {
    if (this.#closed) throw new ConcordError('ERR_CONNECTION', `the ${this.#backend.label} connection is closed`);
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.#backend.run(mode, fn);
      } catch (error) {
        if (error instanceof ConcordError) throw error;
        const kind = this.#backend.classify(error);
        const text = error instanceof Error ? error.message : String(error);
        if (kind === 'retry' && attempt < RETRIES) {
          debug('%s transaction retried (%s)', this.#backend.label, text);
          await new Promise((resolve) => setTimeout(resolve, Math.random() * Math.min(50, 2 * attempt)));
          continue;
        }
        if (kind === 'refused') {
          throw new ConcordError('ERR_REFUSED', `${this.#backend.label} refused the request: ${text}`, { cause: error });
        }
        throw new ConcordError('ERR_CONNECTION', `${this.#backend.label}: ${text}`, { cause: error });
      }
    }
  }

  #notify(query: Query, topic: string): Promise<void> {
    return this.#backend.notify(query, this.#ns, topic);
  }

  #want(topic: string): () => void {
    let entry = this.#interest.get(topic);
    if (!entry) {
      entry = { count: 0, end: this.#wake?.want(topic) ?? (() => undefined) };
      this.#interest.set(topic, entry);
    }
    entry.count++;
    let ended = false;
    return () => {
      if (ended) return;
      ended = true;
      const current = this.#interest.get(topic);
      if (!current) return;
      if (--current.count === 0) {
        this.#interest.delete(topic);
        current.end();
      }
    };
  }

  #onTopic(topic: string): void {
    if (topic.startsWith('g:')) {
      const group = topic.slice(2);
      if (this.#groupWatches.has(group)) this.#readGroup(group);
    } else {
      for (const listener of [...(this.#lockListeners.get(topic) ?? [])]) listener();
    }
  }

  /** Wake-ups may have been lost: every watched group is read again and every waiter looks. */
  #onReset(): void {
    for (const group of this.#groupWatches.keys()) this.#readGroup(group);
    for (const listeners of this.#lockListeners.values()) for (const listener of [...listeners]) listener();
  }

  /** Throws ERR_SESSION_LOST unless the session is live; keeps reapers off it until we commit. */
  async #requireSession(query: Query, sessionId: string): Promise<void> {
    const { rows } = await query(
      `SELECT 1 AS ok FROM concord_sessions WHERE id = ? AND expires_at > ${this.#q.nowMs} ${this.#q.forShare}`,
      [sessionId],
    );
    if (rows.length === 0) throw sessionGone();
  }

  /** Locks a group's change counter (creating it), serialising the writers of the group's log. */
  #lockLog(query: Query, group: string): Promise<bigint> {
    return this.#lockLogIn(query, this.#ns, group);
  }

  /** Appends a change under the lock #lockLog took; `seq` is the counter as read there, returns the new one. */
  async #log(
    query: Query,
    group: string,
    seq: bigint,
    type: 'join' | 'update' | 'leave',
    member: string,
    capabilities: string | null,
  ): Promise<bigint> {
    const next = seq + 1n;
    await query('INSERT INTO concord_changes (ns, grp, seq, type, member, capabilities) VALUES (?, ?, ?, ?, ?, ?)', [
      this.#ns,
      group,
      next.toString(),
      type,
      member,
      capabilities,
    ]);
    await query('UPDATE concord_logs SET seq = ? WHERE ns = ? AND grp = ?', [next.toString(), this.#ns, group]);
    if (next % BigInt(LOG_TRIM_EVERY) === 0n && next > BigInt(LOG_KEEP)) {
      await query('DELETE FROM concord_changes WHERE ns = ? AND grp = ? AND seq <= ?', [
        this.#ns,
        group,
        (next - BigInt(LOG_KEEP)).toString(),
      ]);
    }
    return next;
  }

  /** Under the group's log lock: members whose session expired or ended leave, logged. */
  async #pruneGroup(query: Query, group: string, seq: bigint, ns = this.#ns): Promise<bigint> {
    const { rows } = await query(
      `SELECT m.member AS member FROM concord_members m LEFT JOIN concord_sessions s ON s.id = m.session
        WHERE m.ns = ? AND m.grp = ? AND (s.id IS NULL OR s.expires_at <= ${this.#q.nowMs})`,
      [ns, group],
    );
    let current = seq;
    for (const row of rows) {
      const member = str(row.member);
      const gone = await query('DELETE FROM concord_members WHERE ns = ? AND grp = ? AND member = ?', [ns, group, member]);
      if (gone.count > 0) current = await this.#log(query, group, current, 'leave', member, null);
    }
    return current;
  }

  /**
   * Inside a write transaction: ends a session and everything hanging off it (only if it has expired, unless `force`).
   * False when there was nothing to end (another reaper was first).
   */
  async #endSession(query: Query, sessionId: string, force: boolean): Promise<boolean> {
    const condition = force ? '' : ` AND expires_at <= ${this.#q.nowMs}`;
    const { rows } = await query(`SELECT ns FROM concord_sessions WHERE id = ?${condition} FOR UPDATE`, [sessionId]);
    const row = rows[0];
    if (!row) return false;
    const ns = str(row.ns);
    await query('DELETE FROM concord_sessions WHERE id = ?', [sessionId]);
    const topics = new Set<string>();
    const locks = await query('SELECT kind, name FROM concord_locks WHERE session = ? FOR UPDATE', [sessionId]);
    if (locks.rows.length > 0) {
      await query('UPDATE concord_locks SET session = NULL, member = NULL, token = NULL WHERE session = ?', [sessionId]);
      for (const lock of locks.rows) topics.add(`${str(lock.kind)}\u0000${str(lock.name)}`);
    }
    const waited = await query('SELECT DISTINCT kind, name FROM concord_waiters WHERE session = ?', [sessionId]);
    if (waited.rows.length > 0) {
      await query('DELETE FROM concord_waiters WHERE session = ?', [sessionId]);
      for (const lock of waited.rows) topics.add(`${str(lock.kind)}\u0000${str(lock.name)}`);
    }
    const memberships = await query('SELECT grp, member FROM concord_members WHERE session = ?', [sessionId]);
    const groups = [...new Set(memberships.rows.map((m) => str(m.grp)))].sort(compareIds);
    for (const group of groups) {
      const seq = await this.#lockLogIn(query, ns, group);
      let current = seq;
      for (const m of memberships.rows.filter((x) => str(x.grp) === group)) {
        const member = str(m.member);
        const gone = await query('DELETE FROM concord_members WHERE ns = ? AND grp = ? AND member = ? AND session = ?', [
          ns,
          group,
          member,
          sessionId,
        ]);
        if (gone.count > 0) current = await this.#logIn(query, ns, group, current, 'leave', member);
      }
      if (current !== seq) await this.#backend.notify(query, ns, groupTopic(group));
    }
    for (const key of topics) {
      const [kind = '', name = ''] = key.split('\u0000');
      await this.#backend.notify(query, ns, lockTopic(kind as LockKind, name));
    }
    return true;
  }

  /**
   * #lockLog for a session of any namespace (reapers end sessions of every namespace). The row is locked first and
   * created only when missing: MySQL's INSERT IGNORE takes a shared lock on an existing row, so two writers that both
   * inserted first would each hold it shared and deadlock upgrading it (100 concurrent joins to one group did).
   */
  async #lockLogIn(query: Query, ns: string, group: string): Promise<bigint> {
    const counter = 'SELECT seq FROM concord_logs WHERE ns = ? AND grp = ? FOR UPDATE';
    let { rows } = await query(counter, [ns, group]);
    if (rows.length === 0) {
      await query(this.#q.insertIgnore('concord_logs', ['ns', 'grp', 'seq']), [ns, group, 0]);
      ({ rows } = await query(counter, [ns, group]));
    }
    return big(rows[0]?.seq ?? 0);
  }

  async #logIn(query: Query, ns: string, group: string, seq: bigint, type: 'leave', member: string): Promise<bigint> {
    const next = seq + 1n;
    await query('INSERT INTO concord_changes (ns, grp, seq, type, member, capabilities) VALUES (?, ?, ?, ?, ?, ?)', [
      ns,
      group,
      next.toString(),
      type,
      member,
      null,
    ]);
    await query('UPDATE concord_logs SET seq = ? WHERE ns = ? AND grp = ?', [next.toString(), ns, group]);
    return next;
  }

  /** Ends up to REAP_LIMIT expired sessions, each in its own transaction. Returns ms until the next known expiry. */
  async #reap(): Promise<number | undefined> {
    const { rows } = await this.#tx('none', (query) =>
      query(
        `SELECT id, expires_at - ${this.#q.nowMs} AS left_ms FROM concord_sessions ORDER BY expires_at LIMIT ${String(REAP_LIMIT + 1)}`,
      ),
    );
    let next: number | undefined;
    for (const row of rows) {
      const left = Number(row.left_ms);
      const id = str(row.id);
      if (left > 0) {
        if (!this.#sessions.has(id)) next ??= left;
        continue;
      }
      const ended = await this.#tx('write', (query) => this.#endSession(query, id, false));
      if (ended) debug('%s reaped session %s', this.#backend.label, id);
      if (this.#sessions.has(id)) this.#tellExpired(id);
    }
    return next;
  }

  /** Schedules a reap at `ms` from now (when something here waits for an expiry), keeping the earliest. */
  #reapIn(ms: number): void {
    const at = performance.now() + Math.max(0, ms) + 5;
    if (at >= this.#reapAt || this.#closed) return;
    clearTimeout(this.#reapTimer);
    this.#reapAt = at;
    this.#reapTimer = setTimeout(() => {
      this.#reapAt = Infinity;
      this.#reapTimer = undefined;
      if (!this.#watching()) return;
      this.#reap()
        .then((next) => {
          if (next !== undefined && this.#watching()) this.#reapIn(next);
        })
        .catch((error: unknown) => {
          debug('%s reap failed: %s', this.#backend.label, (error as Error).message);
          if (this.#watching()) this.#reapIn(this.pollIntervalMs);
        });
    }, at - performance.now());
    this.#reapTimer.unref();
  }

  /** Whether anything here waits or watches (only then is a crash worth noticing before the next renewal). */
  #watching(): boolean {
    return this.#groupWatches.size > 0 || this.#lockListeners.size > 0;
  }

  #tellExpired(sessionId: string): void {
    if (!this.#sessions.delete(sessionId)) return;
    queueMicrotask(() => {
      this.#context.events.sessionExpired(sessionId);
    });
  }

  // ---- sessions

  async openSession(ttlMs: number): Promise<string> {
    const id = `s${randomBytes(12).toString('hex')}`;
    const ttl = Math.ceil(ttlMs);
    await this.#tx('none', (query) =>
      query(`INSERT INTO concord_sessions (id, ns, member, ttl_ms, expires_at) VALUES (?, ?, ?, ?, ${this.#q.nowMs} + ?)`, [
        id,
        this.#ns,
        this.#context.member,
        ttl,
        ttl,
      ]),
    );
    this.#sessions.set(id, ttl);
    return id;
  }

  /** Moves the expiry on (only while it has not passed), then reaps what expired elsewhere. */
  async renewSession(sessionId: string): Promise<boolean> {
    if (this.#closed) throw new ConcordError('ERR_CONNECTION', `the ${this.#backend.label} connection is closed`);
    const ttl = this.#sessions.get(sessionId) ?? Math.ceil(this.#context.sessionTtlMs);
    let result: Result;
    try {
      result = await this.#backend.heartbeat(
        `UPDATE concord_sessions SET expires_at = ${this.#q.nowMs} + ? WHERE id = ? AND expires_at > ${this.#q.nowMs}`,
        [ttl, sessionId],
        ttl / 3,
      );
    } catch (error) {
      if (error instanceof ConcordError) throw error;
      throw new ConcordError('ERR_CONNECTION', `${this.#backend.label}: ${(error as Error).message}`, { cause: error });
    }
    if (result.count === 0) {
      this.#sessions.delete(sessionId);
      return false;
    }
    this.#reap()
      .then((next) => {
        if (next !== undefined && this.#watching()) this.#reapIn(next);
      })
      .catch((error: unknown) => {
        debug('%s reap failed: %s', this.#backend.label, (error as Error).message);
      });
    return true;
  }

  async closeSession(sessionId: string): Promise<void> {
    this.#sessions.delete(sessionId);
    await this.#tx('write', (query) => this.#endSession(query, sessionId, true));
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#shut();
    await this.#wake?.close();
    await this.#backend.close();
  }

  destroy(): void {
    if (this.#closed) return;
    this.#shut();
    void this.#wake?.close();
    this.#backend.destroy();
  }

  #shut(): void {
    this.#closed = true;
    clearTimeout(this.#reapTimer);
    // Waiting acquires wake, find the driver closed and fail with ERR_CONNECTION.
    for (const listeners of this.#lockListeners.values()) for (const listener of [...listeners]) listener();
    for (const watches of this.#groupWatches.values()) for (const watch of watches) watch.active = false;
    this.#groupWatches.clear();
  }

  // ---- groups

  async createGroup(group: string): Promise<void> {
    await this.#tx('write', async (query) => {
      const { count } = await query(this.#q.insertIgnore('concord_groups', ['ns', 'name']), [this.#ns, group]);
      if (count === 0) throw groupExists(group);
    });
  }

  async deleteGroup(group: string): Promise<void> {
    await this.#tx('write', async (query) => {
      const seq = await this.#lockLog(query, group);
      if (!(await this.#groupExists(query, group))) throw groupNotFound(group);
      const after = await this.#pruneGroup(query, group, seq);
      const { rows } = await query('SELECT count(*) AS n FROM concord_members WHERE ns = ? AND grp = ?', [this.#ns, group]);
      if (Number(rows[0]?.n ?? 0) > 0) throw groupNotEmpty(group);
      await query('DELETE FROM concord_groups WHERE ns = ? AND name = ?', [this.#ns, group]);
      if (after !== seq) await this.#notify(query, groupTopic(group));
    });
  }

  async #groupExists(query: Query, group: string): Promise<boolean> {
    const { rows } = await query('SELECT 1 AS ok FROM concord_groups WHERE ns = ? AND name = ?', [this.#ns, group]);
    return rows.length > 0;
  }

  async listGroups(): Promise<string[]> {
    const { rows } = await this.#tx('none', (query) => query('SELECT name FROM concord_groups WHERE ns = ?', [this.#ns]));
    return rows.map((row) => str(row.name)).sort(compareIds);
  }

  async joinGroup(group: string, member: string, sessionId: string, capabilities: Capabilities, create: boolean): Promise<void> {
    const json = JSON.stringify(capabilities);
    await this.#tx('write', async (query) => {
      const late = this.#q.sessionAfterLockRow;
      if (!late) await this.#requireSession(query, sessionId);
      let seq = await this.#lockLog(query, group);
      if (late) await this.#requireSession(query, sessionId);
      if (!(await this.#groupExists(query, group))) {
        if (!create) throw groupNotFound(group);
        await query(this.#q.insertIgnore('concord_groups', ['ns', 'name']), [this.#ns, group]);
      }
      seq = await this.#pruneGroup(query, group, seq);
      const { count } = await query(this.#q.insertIgnore('concord_members', ['ns', 'grp', 'member', 'session', 'capabilities']), [
        this.#ns,
        group,
        member,
        sessionId,
        json,
      ]);
      if (count === 0) throw memberExists(group, member);
      await this.#log(query, group, seq, 'join', member, json);
      await this.#notify(query, groupTopic(group));
    });
  }

  async leaveGroup(group: string, member: string): Promise<void> {
    await this.#tx('write', async (query) => {
      const seq = await this.#lockLog(query, group);
      if (!(await this.#groupExists(query, group))) throw groupNotFound(group);
      const { count } = await query('DELETE FROM concord_members WHERE ns = ? AND grp = ? AND member = ?', [this.#ns, group, member]);
      if (count === 0) throw memberNotJoined(group, member);
      await this.#log(query, group, seq, 'leave', member, null);
      await this.#notify(query, groupTopic(group));
    });
  }

  async updateMember(group: string, member: string, capabilities: Capabilities): Promise<void> {
    const json = JSON.stringify(capabilities);
    await this.#tx('write', async (query) => {
      const seq = await this.#lockLog(query, group);
      if (!(await this.#groupExists(query, group))) throw groupNotFound(group);
      const { rows } = await query('SELECT 1 AS ok FROM concord_members WHERE ns = ? AND grp = ? AND member = ?', [
        this.#ns,
        group,
        member,
      ]);
      if (rows.length === 0) throw memberNotJoined(group, member);
      await query('UPDATE concord_members SET capabilities = ? WHERE ns = ? AND grp = ? AND member = ?', [json, this.#ns, group, member]);
      await this.#log(query, group, seq, 'update', member, json);
      await this.#notify(query, groupTopic(group));
    });
  }

  /**
   * One consistent snapshot: the members and the log position they reflect. When a member's session has expired, its
   * leave is written first (so the snapshot and the log agree) and the snapshot taken again.
   */
  async getMembers(group: string): Promise<GroupSnapshot> {
    for (let round = 0; ; round++) {
      const snapshot = await this.#tx('read', async (query) => {
        const log = await query('SELECT seq FROM concord_logs WHERE ns = ? AND grp = ?', [this.#ns, group]);
        const exists = await this.#groupExists(query, group);
        const { rows } = await query(
          `SELECT m.member AS member, m.capabilities AS capabilities, CASE WHEN s.expires_at > ${this.#q.nowMs} THEN 1 ELSE 0 END AS live
             FROM concord_members m LEFT JOIN concord_sessions s ON s.id = m.session WHERE m.ns = ? AND m.grp = ?`,
          [this.#ns, group],
        );
        return { seq: big(log.rows[0]?.seq ?? 0), exists, rows };
      });
      if (round < 2 && snapshot.rows.some((row) => Number(row.live) !== 1)) {
        await this.#tx('write', async (query) => {
          const seq = await this.#lockLog(query, group);
          if ((await this.#pruneGroup(query, group, seq)) !== seq) await this.#notify(query, groupTopic(group));
        });
        continue;
      }
      const members = snapshot.rows
        .map((row) => ({ id: str(row.member), capabilities: parseCapabilities(nullableStr(row.capabilities)) }))
        .sort((a, b) => compareIds(a.id, b.id));
      return { exists: snapshot.exists, members, revision: snapshot.seq.toString() };
    }
  }

  watchGroup(group: string, fromRevision: Revision, sink: WatchSink): Promise<Unsubscribe> {
    if (this.#closed) return Promise.reject(new ConcordError('ERR_CONNECTION', `the ${this.#backend.label} connection is closed`));
    let last: bigint;
    try {
      last = BigInt(String(fromRevision));
    } catch {
      last = -1n;
    }
    const watch: GroupWatchEntry = { group, last, sink, active: true };
    let watches = this.#groupWatches.get(group);
    if (!watches) {
      watches = new Set();
      this.#groupWatches.set(group, watches);
    }
    watches.add(watch);
    const unwant = this.#want(groupTopic(group));
    if (last < 0n) {
      setImmediate(() => {
        if (!watch.active) return;
        watch.active = false;
        sink.resync();
      });
    } else {
      // Catch up on what happened since the snapshot (the wake-up subscription is already in place).
      this.#readGroup(group);
    }
    return Promise.resolve(() => {
      watch.active = false;
      unwant();
      const set = this.#groupWatches.get(group);
      set?.delete(watch);
      if (set?.size === 0) this.#groupWatches.delete(group);
    });
  }

  /** Reads a group's new changes for its watches; one read at a time per group, again if woken meanwhile. */
  #readGroup(group: string): void {
    let reader = this.#readers.get(group);
    if (!reader) {
      reader = { reading: false, again: false };
      this.#readers.set(group, reader);
    }
    if (reader.reading) {
      reader.again = true;
      return;
    }
    reader.reading = true;
    const current = reader;
    void (async () => {
      try {
        do {
          current.again = false;
          await this.#readOnce(group);
        } while (current.again && this.#groupWatches.has(group));
      } catch (error) {
        debug('%s reading the log of group "%s" failed: %s', this.#backend.label, group, (error as Error).message);
        // Continuity is in doubt: the core takes a new snapshot (and watches again).
        for (const watch of [...(this.#groupWatches.get(group) ?? [])]) {
          if (!watch.active) continue;
          watch.active = false;
          watch.sink.resync();
        }
      } finally {
        current.reading = false;
        if (this.#readers.get(group) === current) this.#readers.delete(group);
      }
    })();
  }

  async #readOnce(group: string): Promise<void> {
    for (;;) {
      const watches = [...(this.#groupWatches.get(group) ?? [])].filter((w) => w.active);
      if (watches.length === 0) return;
      const from = watches.reduce((min, w) => (w.last < min ? w.last : min), watches[0]?.last ?? 0n);
      const { rows } = await this.#tx('none', (query) =>
        query(
          `SELECT seq, type, member, capabilities FROM concord_changes WHERE ns = ? AND grp = ? AND seq > ? ORDER BY seq LIMIT ${String(READ_BATCH)}`,
          [this.#ns, group, from.toString()],
        ),
      );
      for (const watch of watches) {
        for (const row of rows) {
          if (!watch.active) break;
          const seq = big(row.seq);
          if (seq <= watch.last) continue;
          if (seq !== watch.last + 1n) {
            // A hole: the log was trimmed past this watch's position.
            watch.active = false;
            watch.sink.resync();
            break;
          }
          watch.last = seq;
          const type = str(row.type);
          const member = str(row.member);
          if (type === 'leave') watch.sink.event({ type: 'leave', member });
          else
            watch.sink.event({
              type: type === 'join' ? 'join' : 'update',
              member,
              capabilities: parseCapabilities(nullableStr(row.capabilities)),
            });
        }
      }
      if (rows.length < READ_BATCH) return;
    }
  }

  // ---- locks

  /**
   * One look at a name's line, inside a write transaction: frees it from an expired exclusive holder, drops dead
   * requests, and grants this request when the rule of holdsAt lets it hold. An exclusive grant takes the lock row
   * (session, member, token) as ever; a shared grant writes the token into the request's row, which stays in line
   * while it holds. `queue`: join the line when not granted. A refused limit rolls the whole look back.
   */
  async #attempt(
    query: Query,
    kind: LockKind,
    name: string,
    sessionId: string,
    member: string,
    queue: boolean,
    mode: LockMode,
  ): Promise<Attempt> {
    const late = this.#q.sessionAfterLockRow;
    if (!late) await this.#requireSession(query, sessionId);
    const key = [this.#ns, kind, name];
    const lockRow = 'SELECT fence, session, token FROM concord_locks WHERE ns = ? AND kind = ? AND name = ? FOR UPDATE';
    let { rows } = await query(lockRow, key);
    if (rows.length === 0) {
      // First use of this name: create its row (a concurrent first use may win the insert), then lock it.
      await query(this.#q.insertIgnore('concord_locks', ['ns', 'kind', 'name', 'fence']), [...key, 0]);
      ({ rows } = await query(lockRow, key));
    }
    if (late) await this.#requireSession(query, sessionId);
    const lock = rows[0];
    if (!lock) throw new ConcordError('ERR_CONNECTION', `${this.#backend.label}: the lock row vanished`);
    let changed = false;
    let waitMs: number | undefined;
    const holder = nullableStr(lock.session);
    if (holder !== null && holder !== sessionId) {
      const live = await query(`SELECT expires_at - ${this.#q.nowMs} AS left_ms FROM concord_sessions WHERE id = ?`, [holder]);
      const left = live.rows[0] === undefined ? 0 : Number(live.rows[0].left_ms);
      if (left > 0) waitMs = left;
      else {
        // Held by a session that has expired: free (its reaper ends the rest of it).
        await query('UPDATE concord_locks SET session = NULL, member = NULL, token = NULL WHERE ns = ? AND kind = ? AND name = ?', key);
        changed = true;
      }
    }
    // Held exclusively by this very session for a shared request of it (another slot): wait.
    const held = waitMs !== undefined || holder === sessionId;
    const requests = await query(
      `SELECT w.id AS id, w.session AS session, w.slot AS slot, w.shared AS shared, w.lim AS lim, w.token AS token,
              s.expires_at - ${this.#q.nowMs} AS left_ms
         FROM concord_waiters w LEFT JOIN concord_sessions s ON s.id = w.session
        WHERE w.ns = ? AND w.kind = ? AND w.name = ? ORDER BY w.id`,
      key,
    );
    // A request without a session row has left_ms NULL: dead too.
    const dead = requests.rows.filter((w) => !(Number(w.left_ms) > 0)).map((w) => big(w.id));
    if (dead.length > 0) {
      await query(`DELETE FROM concord_waiters WHERE id IN (${dead.map(() => '?').join(', ')})`, dead.map(String));
      changed = true;
    }
    const line = requests.rows.filter((w) => Number(w.left_ms) > 0);
    const other = line.find((w) => Number(w.lim) !== mode.limit);
    // Thrown inside the transaction, so the clean-up above rolls back with it: a refusal changes nothing.
    if (other) throw limitMismatch(name, mode.limit, Number(other.lim));
    // This request's row, if an earlier look made one (the core frees a slot only once its release has landed, so a
    // row of this session and slot is this request's).
    let at = line.findLastIndex((w) => str(w.session) === sessionId && Number(w.slot) === mode.slot);
    const mine = line[at];
    if (holder === sessionId && !mode.shared && isExclusive(kind, mode.slot) && lock.token !== null) {
      // The lock row held by this very session, for this request's own slot: the core passes an exclusive turn on
      // only once the release before it has landed, and cancels an abandoned grant before the next request looks, so
      // this is this request's own grant whose answer was lost (a dropped connection, a statement given up after the
      // query timeout that committed all the same). Waiting for it would wait for ever.
      if (mine) await query('DELETE FROM concord_waiters WHERE id = ?', [big(mine.id).toString()]);
      if (changed || mine) await this.#notify(query, lockTopic(kind, name));
      return { token: big(lock.token) };
    }
    if (mine && mine.token !== null) {
      // Granted before (its look committed, but the answer was lost: a retry after a dropped connection).
      if (changed) await this.#notify(query, lockTopic(kind, name));
      return { token: big(mine.token) };
    }
    const modes = line.map((w) => ({ shared: Number(w.shared) === 1, limit: Number(w.lim) }));
    if (at < 0) {
      at = modes.length;
      modes.push(mode);
    }
    const holding = held ? 0 : holdsAt(modes);
    if (at < holding && !mode.shared) {
      const token = big(lock.fence) + 1n;
      await query('UPDATE concord_locks SET fence = ?, session = ?, member = ?, token = ? WHERE ns = ? AND kind = ? AND name = ?', [
        token.toString(),
        sessionId,
        member,
        token.toString(),
        ...key,
      ]);
      if (mine) await query('DELETE FROM concord_waiters WHERE id = ?', [big(mine.id).toString()]);
      // Leader watchers hear of every new term; lock waiters need only releases.
      if (kind === 'leader' || changed) await this.#notify(query, lockTopic(kind, name));
      return { token };
    }
    // A shared request in line takes its token only once every request ahead of it has taken theirs, so the tokens
    // of the shared waiters granted together follow the line, and none of them is noticed after a later one was held
    // and released. (A newcomer that may hold takes its token at once.)
    if (at < holding && (!mine || line.slice(0, at).every((w) => w.token !== null))) {
      const token = big(lock.fence) + 1n;
      if (mine) await query('UPDATE concord_waiters SET token = ? WHERE id = ?', [token.toString(), big(mine.id).toString()]);
      else {
        await query(
          `INSERT INTO concord_waiters (ns, kind, name, session, slot, shared, lim, member, token, since) VALUES (?, ?, ?, ?, ?, 1, ?, ?, ?, ${this.#q.nowMs})`,
          [...key, sessionId, mode.slot, mode.limit, member, token.toString()],
        );
      }
      await query('UPDATE concord_locks SET fence = ? WHERE ns = ? AND kind = ? AND name = ?', [token.toString(), ...key]);
      // The shared waiters granted with it take their tokens after it: they look again when it has.
      const behind = line.slice(at + 1, holding).some((w) => w.token === null);
      if (behind || changed) await this.#notify(query, lockTopic(kind, name));
      return { token };
    }
    // Waiting: a reap is due when a holder ahead of it expires (the exclusive one, or a shared one).
    for (const request of line.slice(0, at)) {
      if (request.token === null) continue;
      const left = Number(request.left_ms);
      waitMs = waitMs === undefined ? left : Math.min(waitMs, left);
    }
    if (queue && !mine) {
      await query(
        `INSERT INTO concord_waiters (ns, kind, name, session, slot, shared, lim, member, since) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ${this.#q.nowMs})${this.#q.returningId}`,
        [...key, sessionId, mode.slot, mode.shared ? 1 : 0, mode.limit, member],
      );
    }
    if (changed) await this.#notify(query, lockTopic(kind, name));
    return { waitMs };
  }

  /**
   * One look at the line: a server-side routine's one call where the backend has one, else #attempt's transaction.
   * After a look whose answer was lost, the next one of the same request is #attempt's, which knows a grant of its
   * own it finds in the lock row (a routine waits for it).
   */
  async #look(kind: LockKind, name: string, sessionId: string, member: string, queue: boolean, mode: LockMode): Promise<Attempt> {
    const request = `${kind}\u0000${name}\u0000${sessionId}\u0000${String(mode.slot)}`;
    const routine = !this.#unanswered.has(request);
    try {
      const result = await this.#lookOnce(kind, name, sessionId, member, queue, mode, routine);
      this.#unanswered.delete(request);
      return result;
    } catch (error) {
      if (error instanceof ConcordError && error.code === 'ERR_CONNECTION') {
        if (this.#unanswered.size >= 1024) this.#unanswered.clear();
        this.#unanswered.add(request);
      }
      throw error;
    }
  }

  async #lookOnce(
    kind: LockKind,
    name: string,
    sessionId: string,
    member: string,
    queue: boolean,
    mode: LockMode,
    routine: boolean,
  ): Promise<Attempt> {
    const call = !routine
      ? undefined
      : this.#backend.attemptCall?.({
          namespace: this.#ns,
          kind,
          name,
          session: sessionId,
          member,
          queue,
          slot: mode.slot,
          shared: mode.shared,
          limit: mode.limit,
        });
    const full = (): Promise<Attempt> => this.#tx('write', (query) => this.#attempt(query, kind, name, sessionId, member, queue, mode));
    if (!call) return full();
    const { rows } = await this.#tx('none', (query) => query(call.sql, call.params));
    const row = rows[0];
    switch (row === undefined ? undefined : str(row.o_status)) {
      case 'look':
        return full();
      case 'token':
        return { token: big(row?.o_token) };
      case 'wait':
        return { waitMs: row?.o_wait_ms === null || row?.o_wait_ms === undefined ? undefined : Number(row.o_wait_ms) };
      case 'gone':
        throw sessionGone();
      case 'limit':
        throw limitMismatch(name, mode.limit, Number(row?.o_lim));
      default:
        throw new ConcordError('ERR_CONNECTION', `${this.#backend.label}: a lock attempt answered nothing`);
    }
  }

  async tryLock(kind: LockKind, name: string, sessionId: string, member: string, mode: LockMode = EXCLUSIVE): Promise<bigint | undefined> {
    const result = await this.#look(kind, name, sessionId, member, false, mode);
    return 'token' in result ? result.token : undefined;
  }

  /**
   * The fair wait: queue (or take the lock at once), then look again on every wake-up of this lock's topic (a release,
   * a queue change, a grant made by another request's look), when a holder's session is due to expire, and every
   * fallbackMs.
   */
  async acquireLock(
    kind: LockKind,
    name: string,
    sessionId: string,
    member: string,
    signal: AbortSignal,
    queued: () => void,
    mode: LockMode = EXCLUSIVE,
  ): Promise<bigint> {
    if (signal.aborted) throw abortedError(signal);
    const wakeup = new Wakeup();
    // Listening before the first look, so a release between the look and the wait still wakes us.
    const stop = this.#listenLock(kind, name, () => {
      wakeup.wake();
    });
    let announced = false;
    try {
      await this.#wake?.baseline?.(lockTopic(kind, name));
      for (;;) {
        if (signal.aborted) throw abortedError(signal);
        const result = await this.#look(kind, name, sessionId, member, true, mode);
        if ('token' in result) return result.token;
        if (!announced) {
          announced = true;
          queued();
        }
        if (result.waitMs !== undefined) this.#reapIn(result.waitMs);
        const waitMs = Math.min(this.pollIntervalMs, result.waitMs === undefined ? Infinity : result.waitMs + 5);
        await wakeup.wait(waitMs, signal);
      }
    } catch (error) {
      if (signal.aborted) {
        // Leave the queue at once so the next waiter is not delayed; the core's cancelLock covers a failure here.
        await this.cancelLock(kind, name, sessionId, mode.slot).catch((cancelError: unknown) => {
          debug('%s leaving the queue of "%s" failed: %s', this.#backend.label, name, (cancelError as Error).message);
        });
        throw abortedError(signal);
      }
      throw error;
    } finally {
      stop();
    }
  }

  async cancelLock(kind: LockKind, name: string, sessionId: string, slot = 0): Promise<void> {
    // Statements of their own, not one transaction: the queue place is gone one round trip after an abort, before
    // the next in line (or a tryAcquire elsewhere) looks. Each is idempotent; a wake-up missed by a crash in between
    // is made up by the waiters' bounded re-check.
    await this.#tx('none', async (query) => {
      const key = [this.#ns, kind, name];
      const left = await query('DELETE FROM concord_waiters WHERE ns = ? AND kind = ? AND name = ? AND session = ? AND slot = ?', [
        ...key,
        sessionId,
        slot,
      ]);
      // Only an exclusive request (slot 0 of a lock or a leadership) can hold the lock row.
      const freed = isExclusive(kind, slot)
        ? await query(
            'UPDATE concord_locks SET session = NULL, member = NULL, token = NULL WHERE ns = ? AND kind = ? AND name = ? AND session = ?',
            [...key, sessionId],
          )
        : { count: 0 };
      if (left.count > 0 || freed.count > 0) await this.#notify(query, lockTopic(kind, name));
    });
  }

  async unlock(kind: LockKind, name: string, sessionId: string, token: bigint, slot = 0): Promise<void> {
    const free = isExclusive(kind, slot)
      ? 'UPDATE concord_locks SET session = NULL, member = NULL, token = NULL WHERE ns = ? AND kind = ? AND name = ? AND session = ? AND token = ?'
      : 'DELETE FROM concord_waiters WHERE ns = ? AND kind = ? AND name = ? AND session = ? AND token = ?';
    await this.#free(kind, name, free, [this.#ns, kind, name, sessionId, token.toString()]);
  }

  async #free(kind: LockKind, name: string, free: string, params: readonly unknown[]): Promise<void> {
    // One round trip where the backend can notify from the statement itself (PostgreSQL): a release is the hand-off's
    // first half.
    const single = this.#backend.notifyIfChanged?.(free, params, this.#ns, lockTopic(kind, name));
    if (single) {
      await this.#tx('none', (query) => query(single.sql, single.params));
      return;
    }
    await this.#tx('write', async (query) => {
      const { count } = await query(free, params);
      if (count > 0) await this.#notify(query, lockTopic(kind, name));
    });
  }

  async lockHolder(kind: LockKind, name: string): Promise<LockHolder | undefined> {
    if (kind !== 'leader') return (await this.lockHolders(kind, name))[0];
    // Leadership is never shared: its holder is the lock row's.
    const { rows } = await this.#tx('none', (query) =>
      query(
        `SELECT l.member AS member, l.token AS token FROM concord_locks l JOIN concord_sessions s ON s.id = l.session
          WHERE l.ns = ? AND l.kind = ? AND l.name = ? AND s.expires_at > ${this.#q.nowMs}`,
        [this.#ns, kind, name],
      ),
    );
    const row = rows[0];
    if (!row || row.member === null || row.token === null) return undefined;
    return { member: str(row.member), token: big(row.token) };
  }

  async lockHolders(kind: LockKind, name: string): Promise<LockHolder[]> {
    const key = [this.#ns, kind, name];
    const { rows } = await this.#tx('none', (query) =>
      query(
        `SELECT l.member AS member, l.token AS token, 0 AS shared
           FROM concord_locks l JOIN concord_sessions s ON s.id = l.session
          WHERE l.ns = ? AND l.kind = ? AND l.name = ? AND s.expires_at > ${this.#q.nowMs}
         UNION ALL
         SELECT w.member AS member, w.token AS token, 1 AS shared
           FROM concord_waiters w JOIN concord_sessions s ON s.id = w.session
          WHERE w.ns = ? AND w.kind = ? AND w.name = ? AND w.token IS NOT NULL AND s.expires_at > ${this.#q.nowMs}`,
        [...key, ...key],
      ),
    );
    return rows.flatMap(holderOf).sort(byToken);
  }

  async listLocks(kind: LockKind | undefined, prefix: string): Promise<LockListing[]> {
    const kindClause = (table: string): string => (kind === undefined ? '' : ` AND ${table}.kind = ?`);
    const args = kind === undefined ? [this.#ns] : [this.#ns, kind];
    const [held, waiting, first] = await this.#tx('none', async (query) => [
      (
        await query(
          `SELECT l.kind AS kind, l.name AS name, l.member AS member, l.token AS token, 0 AS shared
             FROM concord_locks l JOIN concord_sessions s ON s.id = l.session
            WHERE l.ns = ?${kindClause('l')} AND s.expires_at > ${this.#q.nowMs}
           UNION ALL
           SELECT w.kind AS kind, w.name AS name, w.member AS member, w.token AS token, 1 AS shared
             FROM concord_waiters w JOIN concord_sessions s ON s.id = w.session
            WHERE w.ns = ?${kindClause('w')} AND w.token IS NOT NULL AND s.expires_at > ${this.#q.nowMs}`,
          [...args, ...args],
        )
      ).rows,
      (
        await query(
          `SELECT w.kind AS kind, w.name AS name, SUM(CASE WHEN w.token IS NULL THEN 1 ELSE 0 END) AS n, MAX(w.lim) AS lim
             FROM concord_waiters w JOIN concord_sessions s ON s.id = w.session
            WHERE w.ns = ?${kindClause('w')} AND s.expires_at > ${this.#q.nowMs}
            GROUP BY w.kind, w.name`,
          args,
        )
      ).rows,
      // The first live request still waiting in each line, and how long it has, by the server's clock.
      (
        await query(
          `SELECT w.kind AS kind, w.name AS name, w.member AS member, ${this.#q.nowMs} - w.since AS waited_ms
             FROM concord_waiters w JOIN concord_sessions s ON s.id = w.session
            WHERE w.ns = ?${kindClause('w')} AND w.token IS NULL AND s.expires_at > ${this.#q.nowMs}
              AND w.id = (SELECT MIN(x.id) FROM concord_waiters x JOIN concord_sessions xs ON xs.id = x.session
                           WHERE x.ns = w.ns AND x.kind = w.kind AND x.name = w.name AND x.token IS NULL
                             AND xs.expires_at > ${this.#q.nowMs})`,
          args,
        )
      ).rows,
    ]);
    // Prefixes are matched here, not with LIKE, whose escaping differs between the dialects.
    type Entry = { kind: LockKind; name: string; holders: LockHolder[]; waiting: number; limit?: number; oldestWaiter?: LockWaiter };
    const byLock = new Map<string, Entry>();
    const entry = (row: Record<string, unknown>): Entry | undefined => {
      const name = str(row.name);
      if (!name.startsWith(prefix)) return undefined;
      const id = `${str(row.kind)}\u0000${name}`;
      let found = byLock.get(id);
      if (!found) byLock.set(id, (found = { kind: str(row.kind) as LockKind, name, holders: [], waiting: 0 }));
      return found;
    };
    for (const row of held) {
      const holder = holderOf(row)[0];
      if (holder) entry(row)?.holders.push(holder);
    }
    for (const row of waiting) {
      const found = entry(row);
      if (!found) continue;
      found.waiting = Number(row.n);
      if (found.kind === 'semaphore') found.limit = Number(row.lim);
    }
    for (const row of first) {
      const found = entry(row);
      // A waiter queued by version 1 names no member; one of version 2 has no time.
      if (!found || row.member === null) continue;
      found.oldestWaiter =
        row.waited_ms === null ? { member: str(row.member) } : { member: str(row.member), waitedMs: Number(row.waited_ms) };
    }
    for (const found of byLock.values()) found.holders.sort(byToken);
    return [...byLock.values()];
  }

  watchLock(kind: LockKind, name: string, listener: () => void): Promise<Unsubscribe> {
    if (this.#closed) return Promise.reject(new ConcordError('ERR_CONNECTION', `the ${this.#backend.label} connection is closed`));
    return Promise.resolve(this.#listenLock(kind, name, listener));
  }

  #listenLock(kind: LockKind, name: string, listener: () => void): Unsubscribe {
    const topic = lockTopic(kind, name);
    let listeners = this.#lockListeners.get(topic);
    if (!listeners) {
      listeners = new Set();
      this.#lockListeners.set(topic, listeners);
    }
    const own = (): void => {
      listener();
    };
    listeners.add(own);
    const unwant = this.#want(topic);
    return () => {
      unwant();
      const set = this.#lockListeners.get(topic);
      set?.delete(own);
      if (set?.size === 0) this.#lockListeners.delete(topic);
    };
  }
}
