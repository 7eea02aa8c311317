/** The backends the inspection commands are tested on: SQLite (a file in a temporary folder) and a Redis started here. */
import { requireServer, startRedis, type Availability } from '../support/servers.js';
import { SQLITE_SKIP, sqliteAvailable, tempDb } from './run.js';

export interface Backend {
  readonly name: string;
  readonly availability: Availability;
  /** Starts the backend; resolves with its URL and how to stop it. */
  start(): Promise<{ url: string; stop: () => Promise<void> }>;
}

export const BACKENDS: readonly Backend[] = [
  {
    name: 'sqlite',
    availability: sqliteAvailable ? { ok: true } : { ok: false, reason: SQLITE_SKIP },
    start: () => {
      const db = tempDb();
      return Promise.resolve({
        url: db.url,
        stop: () => {
          db.remove();
          return Promise.resolve();
        },
      });
    },
  },
  {
    name: 'redis',
    availability: requireServer('redis'),
    start: async () => {
      const server = await startRedis();
      return { url: server.url, stop: () => server.stop() };
    },
  },
];
