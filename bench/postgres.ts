/**
 * PostgreSQL benchmark: the floor (pg_try_advisory_lock + pg_advisory_unlock on one connection), concord's postgres
 * driver and Python tooz's pgsql driver, against one server this script starts. Run: npx tsx bench/postgres.ts
 * Prints a markdown section and writes it to bench/results/postgres.md (see bench/sql.ts for what is measured).
 */
import advisoryLockPackage from 'advisory-lock';
import pg from 'pg';
import { startPostgres } from '../test/support/servers.js';
import { runSqlBench, type NpmPeer } from './sql.js';

async function client(url: string): Promise<pg.Client> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  return c;
}

/**
 * The npm `advisory-lock` package: pg_advisory_lock on a 64-bit hash of the name, a new connection per lock() (the lock
 * belongs to the connection), closed by the unlock.
 */
function advisoryLockPeer(): NpmPeer {
  const admins: pg.Client[] = [];
  return {
    name: 'npm advisory-lock 2 (lock() + unlock())',
    subject(url, lockName) {
      // A CommonJS module whose export is `exports.default`.
      const mutex = advisoryLockPackage.default(url)(lockName);
      let unlock: (() => Promise<void>) | undefined;
      return {
        name: 'npm advisory-lock 2 (lock() + unlock())',
        acquire: async () => {
          unlock = await mutex.lock();
        },
        release: async () => {
          await unlock?.();
          unlock = undefined;
        },
        close: async () => {
          await unlock?.();
        },
      };
    },
    blocked(url) {
      return async () => {
        const admin = await client(url);
        admins.push(admin);
        for (;;) {
          const { rows } = await admin.query<{ n: number }>(
            "SELECT count(*)::int AS n FROM pg_locks WHERE locktype = 'advisory' AND NOT granted",
          );
          if ((rows[0]?.n ?? 0) > 0) break;
        }
        await admin.end();
        admins.splice(admins.indexOf(admin), 1);
      };
    },
    async close() {
      await Promise.all(admins.splice(0).map((a) => a.end()));
    },
  };
}

await runSqlBench({
  file: 'postgres',
  title: 'PostgreSQL',
  start: startPostgres,
  async floor(url, name) {
    const c = await client(url);
    // The same 64-bit key each time: the floor's cost is the round trips, not the hashing.
    const key = 0x636f6e636f7264n;
    return {
      name: 'floor (pg_try_advisory_lock + pg_advisory_unlock)',
      label: name,
      acquire: async () => {
        for (;;) {
          const { rows } = await c.query<{ ok: boolean }>('SELECT pg_try_advisory_lock($1) AS ok', [key.toString()]);
          if (rows[0]?.ok === true) return;
        }
      },
      release: async () => {
        await c.query('SELECT pg_advisory_unlock($1)', [key.toString()]);
      },
      close: () => c.end(),
    };
  },
  async durable(url) {
    const c = await client(url);
    await c.query('CREATE TABLE IF NOT EXISTS bench_commit (id int PRIMARY KEY, n bigint NOT NULL)');
    await c.query('INSERT INTO bench_commit VALUES (1, 0) ON CONFLICT DO NOTHING');
    const commit = async (): Promise<void> => {
      await c.query('UPDATE bench_commit SET n = n + 1 WHERE id = 1');
    };
    return { name: 'two durable commits (an UPDATE each, autocommit)', acquire: commit, release: commit, close: () => c.end() };
  },
  async counter(url) {
    const c = await client(url);
    return {
      what: 'transactions in its database, pg_stat_database (a statement outside a transaction is one)',
      read: async () => {
        // Statistics reach the shared view at most once a second per backend; the window is 10 s.
        const { rows } = await c.query<{ n: string }>(
          'SELECT xact_commit + xact_rollback AS n FROM pg_stat_database WHERE datname = current_database()',
        );
        return Number(rows[0]?.n ?? 0);
      },
      close: () => c.end(),
    };
  },
  async version(url) {
    const c = await client(url);
    const { rows } = await c.query<{ v: string }>("SELECT current_setting('server_version') AS v");
    await c.end();
    return `PostgreSQL ${rows[0]?.v ?? '?'}`;
  },
  toozUrl: (url) => url.replace(/^postgres:/, 'postgresql:'),
  toozModules: 'tooz, psycopg2',
  toozHandoffs: 30,
  npmPeer: advisoryLockPeer(),
  jitterMs: { handoff: 0, watch: 0 },
  idleNote:
    "A renewal is two statements (the UPDATE of the session row, then a look for expired sessions to reap), as the server's statement log shows with nothing else in between; the transaction count also holds the server's own background work. The LISTEN connection costs nothing while it waits.",
  targets: { handoffMs: 3, watchMs: 5, idle: 'its renewals only' },
  explain:
    "Where concord's time goes: the floor is one round trip each way and writes nothing. concord's acquire is one round trip, a call of the function concord_attempt (schema 4) that runs the whole look at the line server-side as one transaction: the session row checked FOR KEY SHARE by the server's clock (renewals pass, a reaper waits), the lock row locked FOR UPDATE (created on a name's first use), the line read, the fencing counter bumped in the same transaction; its release is one statement (the guarded UPDATE and pg_notify together). Two round trips, as the floor, plus two durable commits, which the floor does not make: the commit of the acquire is what keeps a fencing token from being handed out twice across a crash, and the release's commit cannot be made asynchronous without risking a lock that stays held by a live session after a crash. So 'two durable commits' above is the lower bound of a fenced, session-checked lock here; concord's ratio to it is what the function body and the client add. The 2x-the-floor target is below that bound on this disk with synchronous_commit on. In return: a fencing token from a durable counter, the holder's session judged by the server's clock, the full lock name as the key, a fair queue. tooz's pgsql lock is pg_try_advisory_lock on a 16-bit hash of the name (unrelated names collide), tied to one connection. A hand-off is the release's commit, its NOTIFY on the waiter's LISTEN connection, and the waiter's look: one call since schema 4, where it was six round trips.",
});
process.exit(0);
