import { describe } from 'vitest';
import { describeConformance } from '../../conformance/suite.js';
import { postgresUrl, requireReachable } from '../../support/servers.js';
import { postgresDescriptor, sharedServerTarget } from './target.js';

const availability = await requireReachable('postgres');

describe.skipIf(!availability.ok)(`postgres${availability.ok ? '' : ` (skipped: ${availability.reason})`}`, () => {
  describeConformance(
    sharedServerTarget({
      name: 'postgres',
      url: postgresUrl(),
      defaultPort: 5432,
      descriptor: postgresDescriptor,
      // A crashed member is reaped by a live waiter or watcher at its expiry (server clock), or at the next renewal.
      shortTtlMs: 600,
      detectionDelayMs: 500,
    }),
  );
});
