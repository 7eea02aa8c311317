import mysql from 'mysql2/promise';
import { requireServer, startMariadb } from '../../support/servers.js';
import { describeSqlFaults } from '../sql/faults.js';

async function deadlocks(url: string): Promise<number> {
  const connection = await mysql.createConnection(url);
  try {
    const [rows] = await connection.query("SHOW GLOBAL STATUS LIKE 'Innodb_deadlocks'");
    return Number((rows as Array<{ Value: string }>)[0]?.Value);
  } finally {
    await connection.end();
  }
}

describeSqlFaults({ name: 'mysql', availability: requireServer('mysql'), start: startMariadb, defaultPort: 3306, deadlocks });
