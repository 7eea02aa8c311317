/**
 * A driver that keeps a connection open reports its drop at once: a coordinator connected through `proxy` with
 * renewals 20 s apart (sessionTtlMs 60 000, which the caller sets) holds a lock while the proxy cuts it off, and must
 * be `suspended` within 10 s, then `reconnected` within 10 s of the link coming back, with the lock kept. A driver
 * that learns of the drop only from a failed renewal misses the first deadline.
 */
import { expect } from 'vitest';
import type { Coordinator } from '../../src/index.js';
import type { FaultProxy } from './proxy.js';
import { once } from './wait.js';

/** The sessionTtlMs the coordinator given to suspendedAtOnce must be connected with. */
export const RENEWALS_FAR_APART_TTL_MS = 60_000;

/** The proxy cuts `c` off until it is `suspended`, then lets it through until it is `reconnected`, each within `withinMs`. */
export async function cutAndRestore(c: Coordinator, proxy: FaultProxy, withinMs: number): Promise<void> {
  const suspended = once(c, 'suspended', withinMs);
  proxy.cut();
  await suspended;
  const reconnected = once(c, 'reconnected', withinMs);
  proxy.pass();
  await reconnected;
}

export async function suspendedAtOnce(c: Coordinator, proxy: FaultProxy): Promise<void> {
  const held = await c.lock('dropped').acquire();
  await cutAndRestore(c, proxy, 10_000);
  expect(c.session.state).toBe('connected');
  expect(held.signal.aborted).toBe(false);
  await held.release();
}
