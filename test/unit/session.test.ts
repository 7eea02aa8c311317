/** The core's session machine, driven through the memory driver's fault controls. */
import { describe, expect, it } from 'vitest';
import { ConcordError, connect } from '../../src/index.js';
import { memoryFaults } from '../../drivers/memory/index.js';
import { Collector, eventually, once } from '../support/wait.js';

describe('session', () => {
  it('the backend expiring the session aborts every held lock before anyone else can take it', async () => {
    const a = await connect('memory://session-expire', { member: 'a' });
    const b = await connect('memory://session-expire', { member: 'b' });
    const held = await a.lock('l').acquire();
    const lead = await a.group('g').campaign();
    const log: string[] = [];
    held.signal.addEventListener('abort', () => log.push('lock lost'));
    lead.signal.addEventListener('abort', () => log.push('leadership lost'));
    a.on('lost', () => log.push('lost event'));
    const next = b
      .lock('l')
      .acquire()
      .then((h) => {
        log.push('b acquired');
        return h;
      });
    const restored = once(a, 'restored');
    memoryFaults(a).expire();
    expect(log.slice(0, 3).sort()).toEqual(['leadership lost', 'lock lost', 'lost event']);
    const taken = await next;
    expect(log.at(-1)).toBe('b acquired');
    expect((held.signal.reason as ConcordError).code).toBe('ERR_LOCK_LOST');
    expect((lead.signal.reason as ConcordError).code).toBe('ERR_LEADERSHIP_LOST');
    expect(taken.token).toBeGreaterThan(held.token);
    await restored;
    await Promise.all([a.close(), b.close()]);
  });

  it('a process that was stopped past its TTL learns it lost the lock the moment it looks at the signal', async () => {
    const a = await connect('memory://session-paused', { member: 'a', sessionTtlMs: 150 });
    const held = await a.lock('l').acquire();
    // Block the event loop past the TTL, as SIGSTOP or a long GC pause would: no timer can run meanwhile.
    const until = performance.now() + 300;
    while (performance.now() < until) {
      /* busy */
    }
    // The first thing the process does on resuming is read the signal: it must already say lost.
    expect(held.signal.aborted).toBe(true);
    expect((held.signal.reason as ConcordError).code).toBe('ERR_LOCK_LOST');
    await once(a, 'restored');
    await a.close();
  });

  it('with rejoin: false, a lost session does not re-join its groups', async () => {
    const a = await connect('memory://session-norejoin', { member: 'a', rejoin: false });
    const b = await connect('memory://session-norejoin', { member: 'b' });
    await a.group('g').join({ create: true });
    const restored = once(a, 'restored');
    memoryFaults(a).expire();
    await restored;
    expect(await b.group('g').members()).toEqual([]);
    await Promise.all([a.close(), b.close()]);
  });

  it('a watch resynchronises after the history it started from is gone', async () => {
    const a = await connect('memory://session-trim', { member: 'a' });
    const b = await connect('memory://session-trim', { member: 'b' });
    await a.group('g').join({ create: true, capabilities: { n: 0 } });
    const faults = memoryFaults(b);
    const events = new Collector(b.group('g').watch());
    await events.until((e) => e.length === 1, 'the snapshot');
    faults.disconnect();
    // More changes than the server keeps in its per-group log.
    for (let n = 1; n <= 400; n++) await a.group('g').updateCapabilities({ n });
    faults.reconnect();
    await events.until((e) => e.some((x) => x.type === 'update' && x.capabilities.n === 400), 'the last value');
    // A resync emits the difference, not the 400 intermediate steps.
    expect(events.items.length).toBeLessThan(10);
    await Promise.all([a.close(), b.close()]);
  });

  it('a partitioner follows weight updates', async () => {
    const a = await connect('memory://session-weights', { member: 'a' });
    const b = await connect('memory://session-weights', { member: 'b' });
    const pa = await a.group('w').partitioner();
    await b.group('w').partitioner();
    await eventually(
      () => pa.members(),
      (m) => m.length === 2,
      5000,
      'two members',
    );
    const keys = Array.from({ length: 1000 }, (_v, i) => `k${i}`);
    const shareOfB = (): number => keys.filter((k) => pa.owners(k)[0] === 'b').length;
    const before = shareOfB();
    await b.group('w').updateCapabilities({ weight: 9 });
    const after = await eventually(
      () => shareOfB(),
      (n) => n > before + 200,
      5000,
      'b to own more keys',
    );
    expect(after).toBeGreaterThan(800);
    await Promise.all([a.close(), b.close()]);
  });
});
