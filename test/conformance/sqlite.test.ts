import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect } from '../../src/index.js';
import { sqliteFaults } from '../../drivers/sqlite/index.js';
import { describeConformance } from './suite.js';

let dir = '';
const url = (): string => `sqlite://${join(dir, 'conformance.db')}`;

describeConformance({
  name: 'sqlite',
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
  // A crashed coordinator of a live process ends by TTL; a watcher's reaper finds it within about 50 ms.
  detectionDelayMs: 100,
  async connectFaulty(options) {
    const coordinator = await connect(url(), options);
    const faults = sqliteFaults(coordinator);
    return { coordinator, disconnect: faults.disconnect, reconnect: faults.reconnect };
  },
});
