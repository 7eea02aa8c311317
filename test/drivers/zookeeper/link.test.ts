/**
 * ZooKeeper's link state drives the session's: a dropped connection (the client's Disconnected) is `suspended` at
 * once, not at the next renewal that fails, and the link back (SyncConnected) renews at once, so `reconnected` comes
 * as soon as the server confirms the session. One server behind a fault proxy; what is checked is the order of
 * events, renewals and the driver's link calls, never how long they took.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { connect, type Coordinator } from '../../../src/index.js';
import type { DriverEvents } from '../../../src/driver.js';
import { driverCallChannel, type DriverCallContext } from '../../../src/diagnostics.js';
import { cutAndRestore } from '../../support/link.js';
import { FaultProxy } from '../../support/proxy.js';
import { requireServer, startZooKeeper, type ServerHandle } from '../../support/servers.js';
import { once } from '../../support/wait.js';

const availability = requireServer('zookeeper');

describe.skipIf(!availability.ok)(`zookeeper link state${availability.ok ? '' : ` (skipped: ${availability.reason})`}`, () => {
  let server: ServerHandle;
  let proxy: FaultProxy;
  const open: Coordinator[] = [];
  const unsubscribe: Array<() => void> = [];

  beforeAll(async () => {
    server = await startZooKeeper();
    const port = Number(new URL(server.url).port);
    proxy = await FaultProxy.start({ host: '127.0.0.1', port });
  });
  afterAll(async () => {
    await proxy.close();
    await server.stop();
  });
  afterEach(async () => {
    for (const stop of unsubscribe.splice(0)) stop();
    proxy.pass();
    await Promise.all(open.splice(0).map((c) => c.close()));
  });

  /** Records, in order, the coordinator's session events, its renewals and the driver's link calls into the core. */
  const record = (c: Coordinator, seen: string[]): void => {
    for (const event of ['suspended', 'reconnected', 'lost', 'restored'] as const) c.on(event, () => seen.push(event));
    const events = (c as unknown as { driverEvents: DriverEvents }).driverEvents;
    const linkDown = events.linkDown?.bind(events);
    const linkUp = events.linkUp?.bind(events);
    events.linkDown = () => {
      seen.push('linkDown');
      linkDown?.();
    };
    events.linkUp = () => {
      seen.push('linkUp');
      linkUp?.();
    };
    // The only coordinator of this process: every traced renewal is its own.
    const subscribers = {
      start: (context: DriverCallContext) => {
        if (context.op === 'renewSession') seen.push('renewal');
      },
      end: () => undefined,
      asyncStart: () => undefined,
      asyncEnd: () => undefined,
      error: () => undefined,
    };
    driverCallChannel.subscribe(subscribers);
    unsubscribe.push(() => {
      driverCallChannel.unsubscribe(subscribers);
    });
  };

  it('a dropped link is suspended before any renewal fails, and reconnected by the renewal sent when the link is back', async () => {
    // A long TTL: the next scheduled renewal is seconds away, so a renewal's failure cannot be what suspends.
    const c = await connect(`zookeeper://127.0.0.1:${proxy.port}`, { member: 'a', namespace: 'link', sessionTtlMs: 30_000 });
    open.push(c);
    const held = await c.lock('l').acquire();
    await c.group('g').join({ create: true });
    const seen: string[] = [];
    record(c, seen);

    const suspended = once(c, 'suspended', 30_000);
    seen.push('cut');
    proxy.cut();
    await suspended;
    // Suspended at the client's Disconnected, with no renewal in between.
    expect(seen.slice(0, 3)).toEqual(['cut', 'linkDown', 'suspended']);
    expect(c.session.state).toBe('suspended');

    const reconnected = once(c, 'reconnected', 30_000);
    seen.push('pass');
    proxy.pass();
    await reconnected;
    // Renewals while the link was down (if one fell due) failed without a word; the one sent as the link came back
    // confirmed the session, and reconnected followed it.
    const back = seen.lastIndexOf('linkUp');
    expect(back).toBeGreaterThan(seen.indexOf('pass'));
    expect(seen.slice(back)).toEqual(['linkUp', 'renewal', 'reconnected']);
    expect(seen.filter((e) => e === 'suspended' || e === 'reconnected' || e === 'lost' || e === 'restored')).toEqual([
      'suspended',
      'reconnected',
    ]);
    expect(c.session.state).toBe('connected');
    expect(held.signal.aborted).toBe(false);
    expect(await c.group('g').members()).toEqual([{ id: 'a', capabilities: {} }]);
    await held.release();
  });

  it('each of repeated drops is one suspended, then one reconnected', async () => {
    const c = await connect(`zookeeper://127.0.0.1:${proxy.port}`, { member: 'b', namespace: 'link', sessionTtlMs: 30_000 });
    open.push(c);
    const seen: string[] = [];
    record(c, seen);
    for (let round = 0; round < 3; round++) await cutAndRestore(c, proxy, 30_000);
    expect(seen.filter((e) => e !== 'renewal' && e !== 'linkDown' && e !== 'linkUp')).toEqual([
      'suspended',
      'reconnected',
      'suspended',
      'reconnected',
      'suspended',
      'reconnected',
    ]);
  });
});
