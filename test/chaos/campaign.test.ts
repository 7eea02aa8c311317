/**
 * The short chaos campaign CI runs on every driver (npm run chaos runs the long ones): real servers, client
 * processes, a seeded nemesis, and every checker. Fixed seeds keep CI's verdict a function of the code; set
 * CONCORD_CHAOS_SEED to try another. A failing campaign names its seed and prints the history around each anomaly.
 */
import { describe, expect, it } from 'vitest';
import { runCampaign } from './campaign.js';
import { DRIVERS } from './drivers.js';
import { excerpt, summary } from './report.js';
import type { FaultKind } from './schedule.js';

const seed = Number(process.env.CONCORD_CHAOS_SEED ?? 20261204);

// Seconds of faults per driver. The campaigns run side by side: together well under a minute, start-up and shutdown
// included (a Sentinel failover alone takes several seconds to heal).
const runs: Array<{ driver: string; seconds: number; mustInject?: FaultKind }> = [
  { driver: 'sqlite', seconds: 10 },
  { driver: 'redis', seconds: 10 },
  { driver: 'etcd', seconds: 10 },
  { driver: 'zookeeper', seconds: 10 },
  { driver: 'redis-sentinel', seconds: 6, mustInject: 'failover' },
  { driver: 'postgres', seconds: 8 },
  { driver: 'mysql', seconds: 8 },
];

describe.concurrent('short chaos campaign', () => {
  for (const { driver, seconds, mustInject } of runs) {
    const availability = DRIVERS[driver]?.available() ?? { ok: false, reason: 'unknown driver' };
    it.skipIf(!availability.ok)(
      `${driver}: no anomaly under a seeded nemesis (seed ${seed})`,
      async () => {
        const result = await runCampaign({ driver, seconds, seed, clients: 3 });
        const ttl = DRIVERS[driver]?.ttlMs ?? 1000;
        const report = [summary(result), ...result.anomalies.slice(0, 5).map((a) => excerpt(a, result.history, ttl))].join('\n\n');
        // A campaign that did nothing would prove nothing.
        expect(
          Object.values(result.faults).reduce((a, b) => a + b, 0),
          report,
        ).toBeGreaterThan(0);
        if (mustInject) expect(result.faults[mustInject], report).toBeGreaterThan(0);
        expect(result.holds.lock, report).toBeGreaterThan(0);
        expect(result.holds.lead, report).toBeGreaterThan(0);
        // Where the driver has shared locks, the workload must have taken shared holds and permits too.
        if (result.sharedLocks) {
          expect(result.holds.shared, report).toBeGreaterThan(0);
          expect(result.holds.permit, report).toBeGreaterThan(0);
        }
        expect(result.convergence?.ok, report).toBe(true);
        expect(result.anomalies, report).toEqual([]);
      },
      120_000,
    );
  }
});
