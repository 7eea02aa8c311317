/**
 * What a driver gives the conformance suite. Adding a driver to the suite is one file:
 *
 *   // test/drivers/redis/conformance.test.ts
 *   import { describeConformance } from '../../conformance/suite.js';
 *   describeConformance(redisTarget);
 */
import type { Coordinator, ConnectOptions, DriverDescriptor } from '../../src/index.js';

export interface FaultyCoordinator {
  readonly coordinator: Coordinator;
  /** Cut this coordinator's link to the backend (its session ages on the server meanwhile). */
  disconnect(): void | Promise<void>;
  /** Restore the link. */
  reconnect(): void | Promise<void>;
}

export interface ConformanceTarget {
  readonly name: string;
  /** The driver's descriptor: the suite checks that what a coordinator reports matches it. */
  readonly descriptor?: DriverDescriptor;
  /** Starts servers (once per file). */
  setup(): Promise<void>;
  teardown(): Promise<void>;
  /** The URL to connect with; the suite isolates tests by adding its own `namespace` option. */
  url(): string;
  /** A short TTL that the expiry tests use; the backend's minimum or a little above. */
  readonly shortTtlMs: number;
  /** A coordinator whose link to the backend the test can cut and restore. */
  connectFaulty(options: ConnectOptions): Promise<FaultyCoordinator>;
  /** False when the driver does not serve waiters in arrival order (features.fairLocks false). Default true. */
  readonly fairLocks?: boolean;
  /** Worst-case extra delay after the TTL before a crashed member's leave is published (documented per driver). */
  readonly detectionDelayMs: number;
}
