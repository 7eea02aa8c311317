import { describe } from 'vitest';
import { driver } from '../../../drivers/mysql/index.js';
import { describeConformance } from '../../conformance/suite.js';
import { mysqlUrl, requireReachable } from '../../support/servers.js';
import { sharedServerTarget } from '../postgres/target.js';

const availability = await requireReachable('mysql');

describe.skipIf(!availability.ok)(`mysql${availability.ok ? '' : ` (skipped: ${availability.reason})`}`, () => {
  describeConformance(
    sharedServerTarget({
      name: 'mysql',
      url: mysqlUrl(),
      defaultPort: 3306,
      descriptor: driver,
      // A crashed member is reaped by a live waiter or watcher at its expiry (server clock), or at the next renewal.
      shortTtlMs: 600,
      detectionDelayMs: 500,
    }),
  );
});
