/**
 * A plain connection to a database file, beside the driver's own: the tests read and change rows directly, as
 * another program or an operator would. It uses the SQLite library the driver uses in this process.
 */
import { chooseEngine, type Connection } from '../../../drivers/sqlite/engine.js';

const engine = await chooseEngine(new URLSearchParams());

/** Opens `path` (read-only unless `writable`); a busy file is waited for up to `busyTimeoutMs`. */
export function openDatabase(path: string, options: { readonly writable?: boolean; readonly busyTimeoutMs?: number } = {}): Connection {
  return engine.open(path, { busyTimeoutMs: options.busyTimeoutMs ?? 5000, readonly: options.writable !== true });
}
