/**
 * mysql://, mariadb:// — MySQL 8 and MariaDB 10.6+ with the `mysql2` package: every feature, fair locks with fencing
 * tokens from a durable counter, sessions judged by the server's clock; changes are polled (MySQL has no
 * notifications), every 5 ms while an acquire waits (10 ms once it has waited 2 s with nothing changing), every 10 ms
 * for 2 s after a change, else every 55 ms while only watches are open.
 *
 * @module concord/drivers/mysql
 */
import type { DriverContext, DriverDescriptor } from '../../src/driver.js';
import type { Features } from '../../src/types.js';

/** What the MySQL driver offers. */
export const features: Features = Object.freeze({
  scope: 'cluster',
  groups: true,
  election: true,
  fencing: true,
  watch: 'poll',
  fairLocks: true,
  sharedLocks: true,
});

/** The MySQL / MariaDB driver, as `connect()` and the capability matrix know it. */
export const driver: DriverDescriptor = Object.freeze({
  name: 'MySQL',
  schemes: ['mysql', 'mariadb'],
  features,
  clientPackage: 'mysql2',
  crashDetection: { text: 'TTL + a few ms when a live member waits or watches; else up to TTL/3 more (reaped on renewal)', delayMs: 500 },
  create: async (context: DriverContext) => (await import('./driver.js')).createDriver(context),
});
