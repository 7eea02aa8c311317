/**
 * Negative controls: every checker must catch its deliberately unsafe client mode in a real (short) campaign, with
 * real processes on a real SQLite file. A checker that cannot fail proves nothing. Each control gives its unsafe mode
 * the chance it needs (one hot lock, the fault that exposes it) and asserts that the checker meant for it fires.
 */
import { rmSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { runCampaign, type CampaignOptions } from './campaign.js';
import type { Checker } from './checkers.js';
import type { UnsafeMode } from './protocol.js';
import { summary } from './report.js';
import type { FaultKind } from './schedule.js';

const controls: Array<{ unsafe: UnsafeMode; checker: Checker; faults: FaultKind[] }> = [
  // Stopped while holding past the TTL, it writes on after another process took the lock.
  { unsafe: 'no-check', checker: 'register', faults: ['pause-holder'] },
  { unsafe: 'skip-lock', checker: 'lock-overlap', faults: [] },
  { unsafe: 'small-token', checker: 'token-order', faults: [] },
  // Stopped while leading past the TTL, it goes on leading after another process was elected.
  { unsafe: 'ignore-leader-signal', checker: 'leader-overlap', faults: ['pause-leader'] },
  { unsafe: 'drop-event', checker: 'convergence', faults: [] },
  { unsafe: 'partitioner-miss', checker: 'convergence', faults: [] },
  { unsafe: 'pending-op', checker: 'settle', faults: [] },
  { unsafe: 'leak-timer', checker: 'leak', faults: [] },
  // Its own lock as a third "permit" beside the two the others hold.
  { unsafe: 'over-limit', checker: 'permit-limit', faults: [] },
  // A writer under a read lock: its "exclusive" hold overlaps the other clients' shared holds.
  { unsafe: 'write-under-shared', checker: 'lock-overlap', faults: [] },
];

describe('chaos checkers catch their negative controls (sqlite)', () => {
  for (const { unsafe, checker, faults } of controls) {
    it(`${checker} catches --unsafe ${unsafe}`, async () => {
      const options: CampaignOptions = {
        driver: 'sqlite',
        seconds: 6,
        seed: 1414,
        clients: 3,
        locks: 1,
        semaphores: 1,
        unsafe,
        faults,
        settleMs: 3000,
      };
      const result = await runCampaign(options);
      // The history is kept because anomalies were found: here they were meant to be.
      if (result.dir) rmSync(result.dir, { recursive: true, force: true });
      const caught = result.anomalies.filter((a) => a.checker === checker);
      expect(caught.length, summary(result)).toBeGreaterThan(0);
    }, 120_000);
  }
});
