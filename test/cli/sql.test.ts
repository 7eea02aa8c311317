/**
 * The concord command and the SQL backends: `concord schema` prints the tables' SQL for postgres:// and mysql:// (and
 * refuses anything else as a usage mistake), and the demo runs on the machine's PostgreSQL and MariaDB.
 */
import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { mysqlUrl, postgresUrl, requireReachable } from '../support/servers.js';
import { concord, lines } from './run.js';

const postgres = await requireReachable('postgres');
const mysql = await requireReachable('mysql');

describe('concord schema', { timeout: 60_000 }, () => {
  it('prints a PostgreSQL script for postgres:// and postgresql://, without connecting', async () => {
    // Port 1: nothing listens there; the command must not try.
    const [short, long] = await Promise.all([
      concord(['schema', '--url', 'postgres://app:hunter2@127.0.0.1:1/app']),
      concord(['schema'], { env: { CONCORD_URL: 'postgresql://127.0.0.1:1/app' } }),
    ]);
    expect(short.code, short.stderr).toBe(0);
    expect(short.stderr).toBe('');
    expect(long.stdout).toBe(short.stdout);
    expect(short.stdout).toMatch(/^BEGIN;\n/);
    expect(short.stdout).toMatch(/\nCOMMIT;\n$/);
    expect(short.stdout).toMatch(/CREATE TABLE IF NOT EXISTS concord_locks \(/);
    expect(short.stdout).toMatch(/bigserial/);
    expect(short.stdout).toMatch(/INSERT INTO concord_schema \(version\)/);
    expect(short.stdout).not.toContain('hunter2');
  });

  it('prints a MySQL script for mysql:// and mariadb://', async () => {
    const [mysqlScript, mariadb] = await Promise.all([
      concord(['schema', '--url', 'mysql://root@127.0.0.1:1/app']),
      concord(['schema', '--url', 'mariadb://root@127.0.0.1:1/app']),
    ]);
    expect(mysqlScript.code, mysqlScript.stderr).toBe(0);
    expect(mariadb.stdout).toBe(mysqlScript.stdout);
    expect(mysqlScript.stdout).toMatch(/CREATE TABLE IF NOT EXISTS concord_locks \(/);
    expect(mysqlScript.stdout).toMatch(/ENGINE=InnoDB/);
    expect(mysqlScript.stdout).toMatch(/AUTO_INCREMENT/);
    // Every statement ends with a semicolon, so the output can be piped to the mysql client.
    expect(mysqlScript.stdout.trimEnd()).toMatch(/;$/);
    expect(mysqlScript.stdout).not.toMatch(/BEGIN;/);
  });

  it('refuses other schemes as a usage mistake: one line, exit code 2, no password', async () => {
    const results = await Promise.all(
      ['redis://u:hunter2@127.0.0.1:6379', 'etcd://127.0.0.1:2379', 'sqlite:///tmp/x.db', 'memory://x'].map((url) =>
        concord(['schema', '--url', url]),
      ),
    );
    for (const result of results) {
      expect(result.code).toBe(2);
      const said = lines(result.stderr);
      expect(said).toHaveLength(1);
      expect(said[0]).toMatch(/^concord: --url must be a postgres:\/\/ or mysql:\/\/ URL .*\(see concord schema --help\)$/);
      expect(result.stdout).toBe('');
      expect(result.stderr).not.toContain('hunter2');
    }
    expect(lines(results[0]?.stderr ?? '')[0]).toMatch(/"redis:"/);
  });

  it('has --help with an example', async () => {
    const result = await concord(['schema', '--help']);
    expect(result.code).toBe(0);
    expect(result.stdout).toMatch(/^usage: concord schema/);
    expect(result.stdout).toMatch(/^examples?:\n {2}concord schema /m);
  });
});

const SQL_TARGETS = [
  { name: 'postgres', availability: postgres, url: postgresUrl },
  { name: 'mysql', availability: mysql, url: mysqlUrl },
] as const;

for (const target of SQL_TARGETS) {
  const { availability } = target;
  describe.skipIf(!availability.ok)(
    `concord demo on ${target.name}${availability.ok ? '' : ` (skipped: ${availability.reason})`}`,
    { timeout: 120_000 },
    () => {
      it('kills a worker midway, the survivors take over, and every task completes exactly once', async () => {
        const namespace = `demo${randomBytes(4).toString('hex')}`;
        const url = target.url();
        const result = await concord(['demo', '--workers', '3', '--tasks', '30', '--work-ms', '2', '--url', url, '--namespace', namespace]);
        expect(result.code, `${result.stdout}\n${result.stderr}`).toBe(0);
        expect(result.stdout).toMatch(new RegExp(`^concord demo: 3 workers, 30 tasks, on ${new URL(url).protocol}//`));
        expect(result.stdout).toMatch(/killed worker-\d \(pid \d+, SIGKILL\)/);
        expect(result.stdout).toMatch(/^ {2}verdict {3}PASS: every one of the 30 tasks completed exactly once$/m);
      });
    },
  );
}
