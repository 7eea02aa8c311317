import mysql from 'mysql2/promise';
import { requireServer, startMariadb } from '../../support/servers.js';
import { describeSqlFaults, type RawSql } from '../sql/faults.js';

async function deadlocks(url: string): Promise<number> {
  const connection = await mysql.createConnection(url);
  try {
    const [rows] = await connection.query("SHOW GLOBAL STATUS LIKE 'Innodb_deadlocks'");
    return Number((rows as Array<{ Value: string }>)[0]?.Value);
  } finally {
    await connection.end();
  }
}

async function raw(url: string): Promise<RawSql> {
  const connection = await mysql.createConnection(url);
  return {
    query: async (sql, params = []) => {
      const [rows] = await connection.query(sql, [...params]);
      return Array.isArray(rows) ? (rows as Array<Record<string, unknown>>) : [];
    },
    end: () => connection.end(),
  };
}

describeSqlFaults({
  name: 'mysql',
  availability: requireServer('mysql'),
  start: startMariadb,
  defaultPort: 3306,
  deadlocks,
  raw,
  dropSeenAtOnce: false,
  lockWaits: async (connection) => {
    // InnoDB refreshes this view only once it has gone unread for 100 ms: read it more often and it never changes.
    await new Promise((resolve) => setTimeout(resolve, 150));
    const [row] = await connection.query("SELECT count(*) AS n FROM information_schema.INNODB_TRX WHERE trx_state = 'LOCK WAIT'");
    return Number(row?.n);
  },
});
