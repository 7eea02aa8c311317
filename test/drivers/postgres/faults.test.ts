import pg from 'pg';
import { requireServer, startPostgres } from '../../support/servers.js';
import { describeSqlFaults } from '../sql/faults.js';

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

describeSqlFaults({ name: 'postgres', availability: requireServer('postgres'), start: startPostgres, defaultPort: 5432, deadlocks });
