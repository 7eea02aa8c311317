/**
 * The drivers connect() knows: the built-in ones (listed once, in drivers/index.ts) and any registered with
 * registerDriver(). A descriptor is small; its driver's code and client library load only when a URL needs them.
 */
import { builtinDrivers } from '../drivers/index.js';
import { invalidArgument } from './errors.js';
import type { DriverDescriptor } from './driver.js';

const byScheme = new Map<string, DriverDescriptor>();

/**
 * Adds a driver: `connect()` then serves its URL schemes. A scheme another driver serves already is refused with
 * ERR_INVALID_ARGUMENT (registering the same descriptor again is fine).
 *
 * @example
 * ```ts
 * import { registerDriver, connect } from 'concord';
 * registerDriver(consulDriver);
 * await using coordinator = await connect('consul://127.0.0.1:8500');
 * ```
 */
export function registerDriver(descriptor: DriverDescriptor): void {
  if (typeof descriptor !== 'object' || descriptor === null) throw invalidArgument('descriptor', 'must be a driver descriptor');
  if (typeof descriptor.name !== 'string' || descriptor.name === '') throw invalidArgument('descriptor.name', 'must be a non-empty string');
  if (typeof descriptor.create !== 'function') throw invalidArgument('descriptor.create', 'must be a function');
  if (!Array.isArray(descriptor.schemes) || descriptor.schemes.length === 0) {
    throw invalidArgument('descriptor.schemes', 'must list at least one URL scheme');
  }
  const schemes: readonly unknown[] = descriptor.schemes;
  for (const scheme of schemes) {
    if (typeof scheme !== 'string' || !/^[a-z][a-z0-9+.-]*$/.test(scheme)) {
      throw invalidArgument('descriptor.schemes', `must hold lowercase URL schemes without ':', got ${JSON.stringify(scheme)}`);
    }
    const taken = byScheme.get(scheme);
    if (taken && taken !== descriptor) {
      throw invalidArgument('descriptor.schemes', `"${scheme}:" is served by the ${taken.name} driver already`);
    }
  }
  for (const scheme of schemes as readonly string[]) byScheme.set(scheme, descriptor);
}

for (const descriptor of builtinDrivers) registerDriver(descriptor);

/** The driver serving `scheme`, if any. */
export function driverFor(scheme: string): DriverDescriptor | undefined {
  return byScheme.get(scheme);
}

/** Every registered driver, built-in ones first, each once. */
export function registeredDrivers(): DriverDescriptor[] {
  return [...new Set(byScheme.values())];
}

/** The URL schemes `connect()` understands, sorted. */
export function schemes(): string[] {
  return [...byScheme.keys()].sort();
}
