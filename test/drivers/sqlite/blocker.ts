/**
 * Holds the database's write lock (BEGIN IMMEDIATE) until SIGTERM, as a slow writer of another process would: every
 * write of every other connection finds the file busy meanwhile. Prints {locked} once it holds it and {unlocked}
 * once it let go. Args: databasePath
 */
import { openDatabase } from './database.js';

const [path = ''] = process.argv.slice(2);
const say = (message: Record<string, unknown>): void => {
  process.stdout.write(`${JSON.stringify(message)}\n`);
};

const db = openDatabase(path, { writable: true, busyTimeoutMs: 10_000 });
db.exec('BEGIN IMMEDIATE');
say({ locked: process.pid });
const keepAlive = setInterval(() => undefined, 1000);
process.once('SIGTERM', () => {
  db.exec('ROLLBACK');
  db.close();
  clearInterval(keepAlive);
  say({ unlocked: process.pid });
});
