import type { Capabilities } from '../types.js';

/**
 * Capabilities as stored by a driver (JSON text): a missing value is `{}`, and so is anything that is not a JSON
 * object, so a damaged record can never make a watcher or a partitioner throw.
 */
export function parseCapabilities(json: string | null | undefined): Capabilities {
  if (json === null || json === undefined || json === '') return {};
  try {
    const value: unknown = JSON.parse(json);
    return typeof value === 'object' && value !== null && !Array.isArray(value) ? (value as Capabilities) : {};
  } catch {
    return {};
  }
}
