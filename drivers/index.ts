/**
 * The built-in drivers, one line each. A descriptor is small: each driver's implementation and client library load
 * only when a URL needs them.
 */
import type { DriverDescriptor } from '../src/driver.js';
import { driver as memory } from './memory/index.js';
import { driver as postgres } from './postgres/index.js';
import { driver as redis } from './redis/index.js';
import { driver as etcd } from './etcd/index.js';

// Drivers still exporting createDriver from index.ts, described here until their folders export a descriptor.
const sqlite: DriverDescriptor = {
  name: 'SQLite',
  schemes: ['sqlite'],
  features: { scope: 'host', groups: true, election: true, fencing: true, watch: 'poll', fairLocks: true },
  clientPackage: 'better-sqlite3',
  crashDetection: { text: 'milliseconds when the process is gone; else TTL + 50 ms', delayMs: 100 },
  create: async (context) => (await import('./sqlite/index.js')).createDriver(context),
};

export const builtinDrivers: readonly DriverDescriptor[] = [memory, sqlite, redis, etcd, postgres];
