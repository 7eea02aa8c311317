import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect } from '../../../src/index.js';
import { kDriver } from '../../../src/coordinator.js';
import type { Driver } from '../../../src/driver.js';
import { driver } from '../../../drivers/sqlite/index.js';
import { describeConformance } from '../../conformance/suite.js';

let dir = '';
const url = (): string => `sqlite://${join(dir, 'conformance.db')}`;

describeConformance({
  name: 'sqlite',
  descriptor: driver,
  setup: () => {
    dir = mkdtempSync(join(tmpdir(), 'concord-sqlite-'));
    return Promise.resolve();
  },
  teardown: () => {
    rmSync(dir, { recursive: true, force: true });
    return Promise.resolve();
  },
  url,
  shortTtlMs: 400,
  // A crashed coordinator of a live process ends by TTL; a watcher's reaper finds it within FALLBACK_POLL_MS.
  detectionDelayMs: driver.crashDetection.delayMs,
  async connectFaulty(options) {
    const coordinator = await connect(url(), options);
    const instance = (coordinator as unknown as Record<symbol, Driver | undefined>)[kDriver];
    if (!instance || !driver.faults) throw new Error('the sqlite driver has no link faults');
    const faults = driver.faults(instance);
    return {
      coordinator,
      disconnect: () => {
        faults.disconnect();
      },
      reconnect: () => {
        faults.reconnect();
      },
    };
  },
});
