/**
 * postgres://, postgresql:// — PostgreSQL 12+ with the `pg` package: every feature, pushed changes (LISTEN/NOTIFY),
 * fair locks with fencing tokens from a durable counter, sessions judged by the server's clock.
 *
 * @module concord/drivers/postgres
 */
import type { DriverContext, DriverDescriptor } from '../../src/driver.js';
import type { Features } from '../../src/types.js';

/** What the PostgreSQL driver offers. */
export const features: Features = Object.freeze({
  scope: 'cluster',
  groups: true,
  election: true,
  fencing: true,
  watch: 'push',
  fairLocks: true,
  sharedLocks: true,
});

/** The PostgreSQL driver, as `connect()` and the capability matrix know it. */
export const driver: DriverDescriptor = Object.freeze({
  name: 'PostgreSQL',
  schemes: ['postgres', 'postgresql'],
  features,
  clientPackage: 'pg',
  crashDetection: { text: 'TTL + a few ms when a live member waits or watches; else up to TTL/3 more (reaped on renewal)', delayMs: 500 },
  create: async (context: DriverContext) => (await import('./driver.js')).createDriver(context),
});
