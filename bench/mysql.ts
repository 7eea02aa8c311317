/**
 * MySQL benchmark (on MariaDB): the floor (GET_LOCK + RELEASE_LOCK on one connection), concord's mysql driver and
 * Python tooz's mysql driver, against one server this script starts. Run: npx tsx bench/mysql.ts
 * Prints a markdown section and writes it to bench/results/mysql.md (see bench/sql.ts for what is measured).
 */
import mysql from 'mysql2/promise';
import { startMariadb } from '../test/support/servers.js';
import { runSqlBench } from './sql.js';

async function client(url: string): Promise<mysql.Connection> {
  const u = new URL(url);
  return mysql.createConnection({ host: u.hostname, port: Number(u.port), user: u.username, database: u.pathname.slice(1) });
}

await runSqlBench({
  file: 'mysql',
  title: 'MySQL (MariaDB)',
  start: startMariadb,
  async floor(url, name) {
    const c = await client(url);
    return {
      name: 'floor (GET_LOCK(name, 0) + RELEASE_LOCK)',
      label: name,
      acquire: async () => {
        for (;;) {
          const [rows] = await c.query<mysql.RowDataPacket[]>('SELECT GET_LOCK(?, 0) AS ok', [name]);
          if (Number(rows[0]?.ok) === 1) return;
        }
      },
      release: async () => {
        await c.query('SELECT RELEASE_LOCK(?)', [name]);
      },
      close: () => c.end(),
    };
  },
  async durable(url) {
    const c = await client(url);
    await c.query('CREATE TABLE IF NOT EXISTS bench_commit (id INT PRIMARY KEY, n BIGINT NOT NULL) ENGINE=InnoDB');
    await c.query('INSERT IGNORE INTO bench_commit VALUES (1, 0)');
    const commit = async (): Promise<void> => {
      await c.query('UPDATE bench_commit SET n = n + 1 WHERE id = 1');
    };
    return { name: 'two durable commits (an UPDATE each, autocommit)', acquire: commit, release: commit, close: () => c.end() };
  },
  async counter(url) {
    const c = await client(url);
    return {
      what: 'Questions (SHOW GLOBAL STATUS: statements clients sent)',
      read: async () => {
        const [rows] = await c.query<mysql.RowDataPacket[]>("SHOW GLOBAL STATUS LIKE 'Questions'");
        return Number(rows[0]?.Value ?? 0);
      },
      close: () => c.end(),
    };
  },
  async version(url) {
    const c = await client(url);
    const [rows] = await c.query<mysql.RowDataPacket[]>('SELECT VERSION() AS v');
    await c.end();
    return `MariaDB ${String(rows[0]?.v ?? '?')}`;
  },
  toozUrl: (url) => url,
  toozModules: 'tooz, pymysql',
  toozHandoffs: 4,
  jitterMs: { handoff: 10, watch: 55 },
  coldWatch: {
    count: 20,
    pauseMs: 2200,
    note: "The watcher is back at its idle pace then (a poll every 55 ms, the idle budget's bound): the join's commit plus half an interval on average. The table's run above joins within 2 s of the previous change (the leave before it), at the burst pace (every 10 ms): changes come in bursts (a join, the rebalance it starts, leaves), and that is when the idle budget is not the bound.",
  },
  idleNote:
    "The rest is the watch's poll of the change notes, one statement every 55 ms while nothing changes (every 10 ms for 2 s after a change).",
  targets: { handoffMs: 10, watchMs: 30, idle: 'at most 20 statements/s' },
  explain:
    "Where concord's time goes: the floor is one round trip each way and writes nothing. concord's uncontended acquire is one round trip of several statements in one transaction (the lock row locked FOR UPDATE, the session row checked LOCK IN SHARE MODE by the server's clock, the line read, the fencing counter bumped only if the row is free and the line empty, COMMIT; anything else falls back to the full look, one transaction of six round trips), and its release one round trip too (the guarded UPDATE, the change note bumped if it changed a row, COMMIT): two round trips, as the floor, plus two durable commits, the lower bound of a lock whose token survives a crash. In return: a fencing token from a durable counter, the holder's session judged by the server's clock, a fair queue. MySQL has no notifications: a coordinator polls the change notes of the topics it waits for or watches, one statement for all of them, at a fixed rate: every 5 ms while an acquire waits (for 2 s after its wait began or anything changed; every 10 ms in a longer quiet wait), every 10 ms for 2 s after a change, else every 55 ms (an idle watch's whole cost, kept under 20 statements/s). A hand-off is the release's commit, half a poll interval, the poll and the waiter's one-round-trip look; a waiting acquire costs the server 200 statements/s while it waits (100 in a quiet wait past 2 s). Before this pace (a poll 10 ms after the previous one ended while an acquire waited, 55 ms for watches), on a quieter machine on 2026-12-05: hand-off p50 10.6 ms, a join seen by a watcher 31.4 ms; an A/B in one process on this machine: hand-off p50 12.4 and 10.7 ms before, 6.6 and 7.7 ms after; a join within 55 ms of the previous change 37.7 and 46.6 ms before, 11.4 and 11.4 ms after; one after 2.2 s of quiet about 37-60 ms before and after (the idle pace did not change). tooz's mysql lock is GET_LOCK, tied to one connection; a blocked tooz acquire retries once a second.",
});
process.exit(0);
