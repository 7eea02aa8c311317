import { connect } from '../../src/index.js';
import { memoryFaults } from '../../drivers/memory/index.js';
import { describeConformance } from './suite.js';

describeConformance({
  name: 'memory',
  setup: () => Promise.resolve(),
  teardown: () => Promise.resolve(),
  url: () => 'memory://conformance',
  shortTtlMs: 400,
  detectionDelayMs: 0,
  async connectFaulty(options) {
    const coordinator = await connect('memory://conformance', options);
    const faults = memoryFaults(coordinator);
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
