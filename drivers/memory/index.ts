/**
 * memory://NAME — coordinators of one process connected to the same NAME share state. Every feature, pushed changes,
 * fair locks. `memoryFaults()` lets tests cut a coordinator's link or expire its session, so the core's suspended,
 * lost and restored paths run without a real backend.
 *
 * @module concord/drivers/memory
 */
import { ConcordError } from '../../src/errors.js';
import type { Driver, DriverContext, DriverDescriptor } from '../../src/driver.js';
import type { Coordinator, Features } from '../../src/types.js';
import type { MemoryDriver } from './driver.js';

/** What the memory driver offers: everything, within one process. */
export const features: Features = Object.freeze({
  scope: 'process',
  groups: true,
  election: true,
  fencing: true,
  watch: 'push',
  fairLocks: true,
  sharedLocks: true,
});

/** The memory driver, as `connect()` and the capability matrix know it. */
export const driver: DriverDescriptor = Object.freeze({
  name: 'memory',
  schemes: ['memory'],
  features,
  crashDetection: { text: 'TTL', delayMs: 0 },
  create: async (context: DriverContext) => (await import('./driver.js')).createDriver(context),
  faults: (instance: Driver) => {
    const memory = linkOf(instance);
    return {
      disconnect: () => {
        memory?.setLink('down');
      },
      reconnect: () => {
        memory?.setLink('up');
      },
    };
  },
});

/** What the fault controls use of a memory driver instance. */
type Controls = Pick<MemoryDriver, 'setLink' | 'stall' | 'server'>;

function linkOf(instance: unknown): Controls | undefined {
  return instance !== null && typeof instance === 'object' && 'setLink' in instance ? (instance as Controls) : undefined;
}

/** The driver instance behind a coordinator (the core keeps it under a registered symbol). */
function driverOf(coordinator: Coordinator): Controls | undefined {
  return linkOf((coordinator as unknown as Record<symbol, unknown>)[Symbol.for('concord.driver')]);
}

/** Faults to inject into one memory:// coordinator's link to its in-process server; from `memoryFaults()`. */
export interface MemoryFaults {
  /** Cut the coordinator's link: its requests fail and nothing is pushed to it, while its session ages on the server. */
  disconnect(): void;
  /** Swallow the coordinator's requests: nothing it sends is answered, as in a partition that drops packets. */
  blackhole(): void;
  /** Restore the link; watches resynchronise and waiters re-check. */
  reconnect(): void;
  /** Expire the session on the server now, as a TTL running out would; the client is told first if its link is up. */
  expire(): void;
  /** End the session on the server without telling anyone, as a restart that lost its data would. */
  forget(): void;
  /** Answer nothing the coordinator sends for `ms`, then everything, as a server stalled that long would. */
  stall(ms: number): void;
}

/** Fault controls for a coordinator connected with memory://. For tests. */
export function memoryFaults(coordinator: Coordinator): MemoryFaults {
  const driver = driverOf(coordinator);
  if (!driver || coordinator.session.state === 'closed') {
    throw new ConcordError('ERR_INVALID_ARGUMENT', 'coordinator must be an open memory:// coordinator');
  }
  return {
    disconnect: () => {
      driver.setLink('down');
    },
    blackhole: () => {
      driver.setLink('blackhole');
    },
    reconnect: () => {
      driver.setLink('up');
    },
    // The session id is read at call time: after a lost session the coordinator runs a new one on the same driver.
    expire: () => {
      driver.server.expireSession(coordinator.session.id);
    },
    forget: () => {
      driver.server.closeSession(coordinator.session.id);
    },
    stall: (ms) => {
      driver.stall(ms);
    },
  };
}
