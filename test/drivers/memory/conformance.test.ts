import { connect } from '../../../src/index.js';
import { kDriver } from '../../../src/coordinator.js';
import type { Driver } from '../../../src/driver.js';
import { driver } from '../../../drivers/memory/index.js';
import { describeConformance } from '../../conformance/suite.js';

describeConformance({
  name: driver.name,
  descriptor: driver,
  setup: () => Promise.resolve(),
  teardown: () => Promise.resolve(),
  url: () => 'memory://conformance',
  shortTtlMs: 400,
  detectionDelayMs: driver.crashDetection.delayMs,
  async connectFaulty(options) {
    const coordinator = await connect('memory://conformance', options);
    const instance = (coordinator as unknown as Record<symbol, Driver | undefined>)[kDriver];
    if (!instance || !driver.faults) throw new Error('the memory driver has no link faults');
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
