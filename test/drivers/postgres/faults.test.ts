import pg from 'pg';
import { requireServer, startPostgres } from '../../support/servers.js';
import { describeSqlFaults, type RawSql } from '../sql/faults.js';

async function deadlocks(url: string): Promise<number> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    const { rows } = await client.query<{ n: string }>('SELECT sum(deadlocks)::text AS n FROM pg_stat_database');
    return Number(rows[0]?.n);
  } finally {
    await client.end();
  }
}

async function raw(url: string): Promise<RawSql> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  return {
    query: async (sql, params = []) => {
      let i = 0;
      const { rows } = await client.query<Record<string, unknown>>(
        sql.replace(/\?/g, () => `$${String(++i)}`),
        params as unknown[],
      );
      return rows;
    },
    end: () => client.end(),
  };
}

describeSqlFaults({
  name: 'postgres',
  availability: requireServer('postgres'),
  start: startPostgres,
  defaultPort: 5432,
  deadlocks,
  raw,
  dropSeenAtOnce: true,
  lockWaits: async (client) => {
    const [row] = await client.query(
      "SELECT count(*) AS n FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = current_database()",
    );
    return Number(row?.n);
  },
});
