/**
 * What concord publishes on node:diagnostics_channel: the contexts a tracer or metrics exporter sees, for a contended
 * lock, a timeout, a campaign, a backend call, a session going through suspended and lost, and a watch resync.
 */
import diagnostics_channel from 'node:diagnostics_channel';
import { afterEach, describe, expect, it } from 'vitest';
import { connect, type Coordinator } from '../../src/index.js';
import { kDriver, kQueued } from '../../src/coordinator.js';
import type { Driver } from '../../src/driver.js';
import { driver as memory } from '../../drivers/memory/index.js';
import type {
  AcquireContext,
  DriverCallContext,
  LostMessage,
  ReleaseContext,
  ResyncMessage,
  SessionMessage,
} from '../../src/diagnostics.js';
import { Collector, once } from '../support/wait.js';

const open: Coordinator[] = [];
const unsubscribe: (() => void)[] = [];
let space = 0;

afterEach(async () => {
  for (const stop of unsubscribe.splice(0)) stop();
  await Promise.all(open.splice(0).map((c) => c.close()));
});

async function coordinator(member: string, sessionTtlMs = 2000): Promise<Coordinator> {
  const c = await connect(`memory://diagnostics-${String(space)}`, { member, sessionTtlMs });
  open.push(c);
  return c;
}

/** Collects what a tracing channel publishes, by event. */
function trace<C extends object>(name: string): { start: C[]; asyncEnd: C[]; error: C[] } {
  const seen = { start: [] as C[], asyncEnd: [] as C[], error: [] as C[] };
  const handlers = {
    start: (context: C) => seen.start.push(context),
    end: () => undefined,
    asyncStart: () => undefined,
    asyncEnd: (context: C) => seen.asyncEnd.push(context),
    error: (context: C) => seen.error.push(context),
  };
  const channel = diagnostics_channel.tracingChannel<object, C>(name);
  channel.subscribe(handlers);
  unsubscribe.push(() => {
    channel.unsubscribe(handlers);
  });
  return seen;
}

function listen<M>(name: string): M[] {
  const seen: M[] = [];
  const handler = (message: unknown): void => {
    seen.push(message as M);
  };
  diagnostics_channel.subscribe(name, handler);
  unsubscribe.push(() => {
    diagnostics_channel.unsubscribe(name, handler);
  });
  return seen;
}

function faults(c: Coordinator): { disconnect(): void; reconnect(): void } {
  const instance = (c as unknown as Record<symbol, Driver | undefined>)[kDriver];
  if (!instance || !memory.faults) throw new Error('the memory driver has no link faults');
  return memory.faults(instance);
}

describe('diagnostics channels', () => {
  it('concord:lock:acquire and concord:lock:release trace a contended hand-off with its token and times', async () => {
    space++;
    const acquires = trace<AcquireContext>('concord:lock:acquire');
    const releases = trace<ReleaseContext>('concord:lock:release');
    const a = await coordinator('a');
    const b = await coordinator('b');
    const first = await a.lock('job').acquire();
    const queued = once(b, kQueued);
    const waiting = b.lock('job').acquire();
    await queued;
    expect(acquires.start.map((c) => [c.coordinator, c.kind, c.name])).toEqual([
      ['a', 'lock', 'job'],
      ['b', 'lock', 'job'],
    ]);
    await first.release();
    const second = await waiting;
    expect(acquires.asyncEnd).toHaveLength(2);
    const [ofA, ofB] = acquires.asyncEnd;
    expect(ofA).toMatchObject({ coordinator: 'a', token: first.token });
    expect(ofB).toMatchObject({ coordinator: 'b', kind: 'lock', name: 'job', token: second.token });
    expect(ofB?.waitedMs).toBeGreaterThan(0);
    expect(releases.asyncEnd).toEqual([
      expect.objectContaining({ coordinator: 'a', kind: 'lock', name: 'job', token: first.token, heldMs: expect.any(Number) as number }),
    ]);
    await second.release();
    expect(releases.asyncEnd).toHaveLength(2);
    expect(acquires.error).toEqual([]);
  });

  it('a timeout is published on the error event with ERR_LOCK_TIMEOUT; a campaign is traced as kind leader with its term', async () => {
    space++;
    const acquires = trace<AcquireContext>('concord:lock:acquire');
    const a = await coordinator('a');
    const b = await coordinator('b');
    const held = await a.lock('l').acquire();
    await expect(b.lock('l').acquire({ timeoutMs: 20 })).rejects.toMatchObject({ code: 'ERR_LOCK_TIMEOUT' });
    expect(acquires.error).toEqual([
      expect.objectContaining({ coordinator: 'b', name: 'l', error: expect.objectContaining({ code: 'ERR_LOCK_TIMEOUT' }) as unknown }),
    ]);
    expect(acquires.error[0]?.token).toBeUndefined();
    const leadership = await b.group('g').campaign();
    expect(acquires.asyncEnd.at(-1)).toMatchObject({ coordinator: 'b', kind: 'leader', name: 'g', token: leadership.term });
    await Promise.all([held.release(), leadership.resign()]);
  });

  it('shared holds and semaphore permits are traced with shared: true and their kind', async () => {
    space++;
    const acquires = trace<AcquireContext>('concord:lock:acquire');
    const releases = trace<ReleaseContext>('concord:lock:release');
    const a = await coordinator('a');
    const reader = await a.lock('l').acquire({ shared: true });
    const permit = await a.semaphore('s', { limit: 2 }).acquire();
    const writer = a.lock('w');
    await (await writer.acquire()).release();
    await Promise.all([reader.release(), permit.release()]);
    expect(acquires.asyncEnd.map((c) => [c.kind, c.name, c.shared, c.token])).toEqual([
      ['lock', 'l', true, reader.token],
      ['semaphore', 's', true, permit.token],
      ['lock', 'w', false, expect.any(BigInt) as bigint],
    ]);
    expect(releases.start.map((c) => [c.kind, c.name, c.shared]).sort()).toEqual([
      ['lock', 'l', true],
      ['lock', 'w', false],
      ['semaphore', 's', true],
    ]);
  });

  it('concord:driver:call traces each backend request with the driver and step names', async () => {
    space++;
    const calls = trace<DriverCallContext>('concord:driver:call');
    const a = await coordinator('a');
    await a.group('g').join({ create: true });
    await a
      .lock('x')
      .tryAcquire()
      .then((held) => held?.release());
    const ops = calls.asyncEnd.map((c) => c.op);
    expect(ops).toEqual(expect.arrayContaining(['openSession', 'joinGroup', 'tryLock', 'unlock']));
    expect(new Set(calls.asyncEnd.map((c) => c.driver))).toEqual(new Set([memory.name]));
    for (const call of calls.asyncEnd) expect(call.ms).toBeGreaterThanOrEqual(0);
    // A step that fails is published on error, with the driver's error.
    await a
      .group('missing')
      .leave()
      .catch(() => undefined);
    expect(calls.error.map((c) => c.op)).toContain('leaveGroup');
  });

  it('concord:session follows suspended -> connected, and lost; concord:watch:resync and concord:lock:lost name what happened', async () => {
    space++;
    const sessions = listen<SessionMessage>('concord:session');
    const resyncs = listen<ResyncMessage>('concord:watch:resync');
    const lost = listen<LostMessage>('concord:lock:lost');
    const a = await coordinator('a', 400);
    const link = faults(a);
    await a.group('g').join({ create: true });
    const watch = new Collector(a.group('g').watch());
    await watch.until((events) => events.length >= 1, 'the first snapshot');
    const suspended = once(a, 'suspended');
    link.disconnect();
    await suspended;
    const reconnected = once(a, 'reconnected');
    link.reconnect();
    await reconnected;
    expect(sessions.filter((m) => m.member === 'a').map((m) => [m.from, m.to])).toEqual([
      ['connected', 'suspended'],
      ['suspended', 'connected'],
    ]);
    // Watches resynchronise as the session reconnects, before 'reconnected' is announced.
    expect(resyncs).toContainEqual({ member: 'a', group: 'g' });
    const held = await a.lock('kept').acquire();
    const gone = once(a, 'lost', 15_000);
    link.disconnect();
    await gone;
    expect(sessions.at(-1)).toMatchObject({ member: 'a', to: 'lost' });
    expect(lost).toEqual([{ member: 'a', kind: 'lock', name: 'kept', token: held.token }]);
    link.reconnect();
  });
});
