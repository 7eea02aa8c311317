/**
 * Edge cases of promises the README makes, each once broken: the test fails if the fix is undone. In-process, on the
 * memory driver and its fault controls (a stalled, silent or forgetful server).
 */
import { describe, expect, it } from 'vitest';
import { ConcordError, connect, type Coordinator, type HeldLock, type Leadership } from '../../src/index.js';
import { kQueued } from '../../src/coordinator.js';
import { Channel } from '../../src/channel.js';
import { memoryFaults } from '../../drivers/memory/index.js';
import { aborted, deadline, eventually, once } from '../support/wait.js';

let n = 0;
const fresh = (): string => `memory://edges-${++n}`;

/** Blocks the event loop, as SIGSTOP or a long GC pause would: no timer runs meanwhile. */
function pause(ms: number): void {
  const until = performance.now() + ms;
  while (performance.now() < until) {
    /* busy */
  }
}

/** The ConcordError code a promise rejects with, or 'resolved'. */
async function outcome(promise: Promise<unknown>): Promise<string> {
  try {
    await promise;
    return 'resolved';
  } catch (error) {
    expect(error).toBeInstanceOf(ConcordError);
    return (error as ConcordError).code;
  }
}

/** Tracks whether a promise has settled yet, without awaiting it. */
function track(promise: Promise<unknown>): { readonly settled: boolean; readonly result: Promise<string> } {
  const state = { settled: false, result: outcome(promise) };
  void state.result.then(() => {
    state.settled = true;
  });
  return state;
}

describe('a stored signal after a pause', () => {
  it('reads aborted on the first look, though no timer has run since the TTL passed', async () => {
    const a = await connect(fresh(), { member: 'a', sessionTtlMs: 150 });
    const held = await a.lock('l').acquire();
    const signal = held.signal; // kept, as `refresh({ signal: held.signal })` keeps it
    pause(300);
    expect(signal.aborted).toBe(true);
    expect((signal.reason as ConcordError).code).toBe('ERR_LOCK_LOST');
    expect(() => {
      signal.throwIfAborted();
    }).toThrow(ConcordError);
    await once(a, 'restored');
    await a.close();
  });

  it('throwIfAborted() of a stored signal throws ERR_LOCK_LOST on the first call', async () => {
    const a = await connect(fresh(), { member: 'a', sessionTtlMs: 150 });
    const held = await a.lock('l').acquire();
    const signal = held.signal;
    pause(300);
    let thrown: unknown;
    try {
      signal.throwIfAborted();
    } catch (error) {
      thrown = error;
    }
    expect((thrown as ConcordError).code).toBe('ERR_LOCK_LOST');
    await once(a, 'restored');
    await a.close();
  });

  it("held.valid and assertValid() check the deadline too; so do a Leadership's", async () => {
    const a = await connect(fresh(), { member: 'a', sessionTtlMs: 150 });
    const held: HeldLock = await a.lock('l').acquire();
    const leadership: Leadership = await a.group('g').campaign();
    expect(held.valid).toBe(true);
    expect(leadership.valid).toBe(true);
    held.assertValid();
    pause(300);
    expect(held.valid).toBe(false);
    expect(() => {
      held.assertValid();
    }).toThrow(expect.objectContaining({ code: 'ERR_LOCK_LOST' }) as Error);
    expect(leadership.valid).toBe(false);
    expect(() => {
      leadership.assertValid();
    }).toThrow(expect.objectContaining({ code: 'ERR_LEADERSHIP_LOST' }) as Error);
    await once(a, 'restored');
    const again = await a.lock('l').acquire();
    await again.release();
    expect(again.valid).toBe(false);
    expect(() => {
      again.assertValid();
    }).toThrow(expect.objectContaining({ code: 'ERR_ABORTED' }) as Error);
    await a.close();
  });
});

describe('abandoned waits', () => {
  it('tryAcquire after a timed-out and an aborted wait finds the released lock free', async () => {
    const url = fresh();
    const a = await connect(url, { member: 'a' });
    const b = await connect(url, { member: 'b' });
    const held = await a.lock('t').acquire();
    expect(await b.lock('t').tryAcquire()).toBeUndefined();
    expect(await outcome(b.lock('t').acquire({ timeoutMs: 100 }))).toBe('ERR_LOCK_TIMEOUT');
    const controller = new AbortController();
    const waiting = outcome(b.lock('t').acquire({ signal: controller.signal }));
    await once(b, kQueued);
    controller.abort();
    expect(await waiting).toBe('ERR_ABORTED');
    await held.release();
    const mine = await b.lock('t').tryAcquire();
    expect(mine).toBeDefined();
    expect(mine?.token).toBeGreaterThan(held.token);
    await mine?.release();
    await Promise.all([a.close(), b.close()]);
  });

  it('tryAcquire still says taken while another acquisition of this process holds the lock', async () => {
    const a = await connect(fresh(), { member: 'a' });
    const held = await a.lock('t').acquire();
    expect(await a.lock('t').tryAcquire()).toBeUndefined();
    await held.release();
    await a.close();
  });
});

describe('a backend that forgot the session (a restart without persistence)', () => {
  it('an acquire on an idle coordinator runs on the replacement session', async () => {
    const url = fresh();
    const a = await connect(url, { member: 'a' });
    const b = await connect(url, { member: 'b' });
    const before = a.session.id;
    memoryFaults(a).forget();
    const held = await deadline(a.lock('l').acquire(), 10_000, 'the acquire');
    expect(a.session.id).not.toBe(before);
    expect(await b.lock('l').holder()).toBe('a');
    expect(held.signal.aborted).toBe(false);
    await held.release();
    await Promise.all([a.close(), b.close()]);
  });

  it('the acquire stays within its own timeout while the replacement is awaited', async () => {
    const url = fresh();
    const a = await connect(url, { member: 'a' });
    memoryFaults(a).forget();
    memoryFaults(a).disconnect();
    expect(await outcome(a.lock('l').acquire({ timeoutMs: 200 }))).toBe('ERR_LOCK_TIMEOUT');
    memoryFaults(a).reconnect();
    await a.close();
  });

  it('tryAcquire reports ERR_SESSION_LOST, and the session is replaced', async () => {
    const a = await connect(fresh(), { member: 'a' });
    const restored = once(a, 'restored');
    memoryFaults(a).forget();
    expect(await outcome(a.lock('l').tryAcquire())).toBe('ERR_SESSION_LOST');
    await restored;
    const held = await a.lock('l').tryAcquire();
    expect(held).toBeDefined();
    await a.close();
  });

  it('a waiter queued in the forgotten session still fails with ERR_SESSION_LOST', async () => {
    const url = fresh();
    const a = await connect(url, { member: 'a' });
    const b = await connect(url, { member: 'b' });
    const held = await b.lock('l').acquire();
    const queued = once(a, kQueued);
    const waiting = outcome(a.lock('l').acquire());
    await queued;
    memoryFaults(a).forget();
    expect(await waiting).toBe('ERR_SESSION_LOST');
    await held.release();
    await Promise.all([a.close(), b.close()]);
  });
});

describe('tokens and terms', () => {
  it('keep growing after every coordinator of a memory:// name has closed', async () => {
    const url = fresh();
    const tokens: bigint[] = [];
    const terms: bigint[] = [];
    for (let round = 0; round < 3; round++) {
      const c = await connect(url, { member: `m${round}` });
      const held = await c.lock('l').acquire();
      tokens.push(held.token);
      const lead = await c.group('g').campaign();
      terms.push(lead.term);
      await held.release();
      await lead.resign();
      await c.close();
    }
    expect(tokens[1]).toBeGreaterThan(tokens[0] ?? 0n);
    expect(tokens[2]).toBeGreaterThan(tokens[1] ?? 0n);
    expect(terms[1]).toBeGreaterThan(terms[0] ?? 0n);
    expect(terms[2]).toBeGreaterThan(terms[1] ?? 0n);
  });
});

describe('names that are not well-formed text', () => {
  const bad = ['a\ud800', '\udc00b', 'x\ud800\ud800', 'a\u0085b', '\u009f', 'c\u0080'];

  it('are refused before any I/O, as lock, group, member and namespace names', async () => {
    const url = fresh();
    const a = await connect(url, { member: 'a' });
    for (const name of bad) {
      expect(() => a.lock(name)).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARGUMENT' }) as Error);
      expect(() => a.group(name)).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARGUMENT' }) as Error);
      expect(await outcome(connect(url, { member: name }))).toBe('ERR_INVALID_ARGUMENT');
      expect(await outcome(connect(url, { namespace: name }))).toBe('ERR_INVALID_ARGUMENT');
    }
    expect(() => a.lock('a\ud800')).toThrow(/name must be well-formed Unicode/);
    expect(() => a.group('a\u0085')).toThrow(/name must not contain control characters/);
    expect(await a.groups()).toEqual([]);
    await a.close();
  });

  it('well-formed names with astral characters are fine', async () => {
    const a = await connect(fresh(), { member: 'a' });
    const held = await a.lock('emoji-\u{1F512}').acquire();
    expect(await a.lock('emoji-\u{1F512}').holder()).toBe('a');
    await held.release();
    await a.close();
  });
});

describe('calls in flight when the backend stops answering', () => {
  it('settle once the session is lost: one-shot calls fail, a waiting acquire carries on in the replacement', async () => {
    const url = fresh();
    const a = await connect(url, { member: 'a', sessionTtlMs: 300 });
    const b = await connect(url, { member: 'b' });
    await b.group('g').create();
    memoryFaults(a).blackhole();
    const acquiring = a.lock('x').acquire();
    const trying = track(a.lock('y').tryAcquire());
    const reading = track(a.group('g').members());
    const holder = track(a.lock('y').holder());
    await once(a, 'lost');
    expect(await trying.result).toBe('ERR_SESSION_LOST');
    expect(await reading.result).toBe('ERR_SESSION_LOST');
    expect(await holder.result).toBe('ERR_SESSION_LOST');
    const restored = once(a, 'restored');
    memoryFaults(a).reconnect();
    await restored;
    const held = await deadline(acquiring, 10_000, 'the acquire to go through in the new session');
    expect(await b.lock('x').holder()).toBe('a');
    await held.release();
    await Promise.all([a.close(), b.close()]);
  });

  it('settle with ERR_CLOSED when the coordinator closes', async () => {
    const url = fresh();
    const a = await connect(url, { member: 'a', sessionTtlMs: 10_000 });
    const b = await connect(url, { member: 'b' });
    await b.group('g').create();
    const held = await a.lock('z').acquire();
    memoryFaults(a).blackhole();
    const calls = [
      a.lock('x').acquire(),
      a.lock('y').tryAcquire(),
      a.group('g').members(),
      a.group('g').join(),
      a.groups(),
      a.group('g').leader(),
    ].map(track);
    const release = track(held.release());
    await a.close();
    for (const call of calls) expect(await deadline(call.result, 5000, 'the call to settle')).toBe('ERR_CLOSED');
    expect(await deadline(release.result, 5000, 'the release to settle')).toBe('resolved');
    await b.close();
  });
});

describe('partitioner on a group the member joined itself', () => {
  it('adds its weight to the capabilities, and close() leaves the membership alone', async () => {
    const url = fresh();
    const a = await connect(url, { member: 'a' });
    const b = await connect(url, { member: 'b' });
    await a.group('g').join({ create: true, capabilities: { zone: 'eu', slots: 8 } });
    const partitioner = await a.group('g').partitioner({ weight: 2 });
    expect(await b.group('g').members()).toEqual([{ id: 'a', capabilities: { zone: 'eu', slots: 8, weight: 2 } }]);
    await partitioner.close();
    expect(await b.group('g').members()).toEqual([{ id: 'a', capabilities: { zone: 'eu', slots: 8, weight: 2 } }]);
    await a.group('g').leave();
    const own = await a.group('h').partitioner();
    await own.close();
    expect(await b.group('h').members()).toEqual([]);
    await Promise.all([a.close(), b.close()]);
  });

  it('honours a weight given in capabilities, and refuses two weights that disagree', async () => {
    const url = fresh();
    const a = await connect(url, { member: 'a' });
    const partitioner = await a.group('g').partitioner({ capabilities: { weight: 5, zone: 'us' } });
    expect(await a.group('g').members()).toEqual([{ id: 'a', capabilities: { weight: 5, zone: 'us' } }]);
    await partitioner.close();
    expect(await outcome(a.group('g2').partitioner({ weight: 2, capabilities: { weight: 5 } }))).toBe('ERR_INVALID_ARGUMENT');
    expect(await outcome(a.group('g2').partitioner({ capabilities: { weight: -1 } }))).toBe('ERR_INVALID_ARGUMENT');
    expect(await a.groups()).toEqual(['g']);
    await a.close();
  });

  it('changes() yields the current view first', async () => {
    const url = fresh();
    const a = await connect(url, { member: 'a' });
    const b = await connect(url, { member: 'b' });
    const pa = await a.group('g').partitioner();
    const pb = await b.group('g').partitioner();
    await eventually(
      () => pa.members(),
      (m) => m.length === 2,
      5000,
      'a to see b',
    );
    const first = await pa.changes()[Symbol.asyncIterator]().next();
    expect(first.value).toEqual({ members: ['a', 'b'], joined: ['a', 'b'], left: [] });
    const quiet = pa.changes({ initial: false })[Symbol.asyncIterator]();
    const next = quiet.next();
    await pb.close();
    expect((await next).value).toEqual({ members: ['a'], joined: [], left: ['b'] });
    await pa.close();
    await Promise.all([a.close(), b.close()]);
  });

  it('changes({ signal }) ends the stream when the signal aborts, and refuses a non-signal', async () => {
    const a = await connect(fresh(), { member: 'a' });
    const partitioner = await a.group('g').partitioner();
    const controller = new AbortController();
    const seen: string[][] = [];
    const loop = (async () => {
      for await (const change of partitioner.changes({ signal: controller.signal })) {
        seen.push(change.members);
        controller.abort();
      }
    })();
    await loop;
    expect(seen).toEqual([['a']]);
    const stopped = AbortSignal.abort();
    expect(await partitioner.changes({ signal: stopped })[Symbol.asyncIterator]().next()).toEqual({ value: undefined, done: true });
    expect(() => partitioner.changes({ signal: 'soon' as unknown as AbortSignal })).toThrow(/options\.signal/);
    await partitioner.close();
    await a.close();
  });
});

describe('session TTLs', () => {
  it('too short to renew are refused, naming the minimum', async () => {
    const error = await connect(fresh(), { sessionTtlMs: 5 }).catch((e: unknown) => e);
    expect(error).toMatchObject({ code: 'ERR_INVALID_ARGUMENT' });
    expect((error as Error).message).toMatch(/options\.sessionTtlMs must be at least 100 ms/);
    expect(await outcome(connect(`${fresh()}?sessionTtlMs=99`))).toBe('ERR_INVALID_ARGUMENT');
    const ok = await connect(fresh(), { sessionTtlMs: 100 });
    await ok.close();
  });

  it('a session opened during a server stall is renewed at once, not lost again before its first renewal', async () => {
    const a = await connect(fresh(), { member: 'a', sessionTtlMs: 300 });
    let losses = 0;
    a.on('lost', () => {
      losses++;
      // The replacement's open is answered only after the stall: most of a TTL after it was sent.
      memoryFaults(a).stall(250);
    });
    const restored = once(a, 'restored');
    memoryFaults(a).expire();
    await restored;
    // Beyond the deadline a TTL counted from the open's sending would set, and past two renewals.
    const watched = performance.now() + 600;
    await eventually(
      () => performance.now(),
      (t) => t > watched,
      5000,
      'the window to pass',
    );
    expect(losses).toBe(1);
    expect(a.session.state).toBe('connected');
    await a.close();
  });
});

describe('errors are ConcordErrors', () => {
  it('two pending next() calls on one watch are answered in order', async () => {
    const url = fresh();
    const a = await connect(url, { member: 'a' });
    const b = await connect(url, { member: 'b' });
    await a.group('g').create();
    const iterator = a.group('g').watch()[Symbol.asyncIterator]();
    const first = iterator.next();
    const second = iterator.next();
    await b.group('g').join();
    await a.group('g').join();
    expect((await first).value).toMatchObject({ type: 'join', member: 'b' });
    expect((await second).value).toMatchObject({ type: 'join', member: 'a' });
    await iterator.return?.();
    await Promise.all([a.close(), b.close()]);
  });

  it('a stream ended with something that is not an Error rejects with a ConcordError carrying it', async () => {
    const channel = new Channel<number>();
    const reading = channel.next();
    channel.end('boom');
    const error = await reading.catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ConcordError);
    expect((error as ConcordError).cause).toBe('boom');
  });

  it('a misspelt event or a listener that is not a function is refused', async () => {
    const a = await connect(fresh(), { member: 'a' });
    expect(() => a.on('lots' as 'lost', () => undefined)).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARGUMENT' }) as Error);
    expect(() => a.on('lost', 'nope' as unknown as () => void)).toThrow(/listener must be a function/);
    expect(() => a.off('typo' as unknown as 'lost', () => undefined)).toThrow(/event must be one of/);
    await a.close();
  });
});

describe('group.lead()', () => {
  it('keeps campaigning across a lost session until aborted, and resigns at the end', async () => {
    const url = fresh();
    const a = await connect(url, { member: 'a' });
    const b = await connect(url, { member: 'b' });
    const controller = new AbortController();
    const terms: bigint[] = [];
    let led: () => void = () => undefined;
    const ledTwice = new Promise<void>((resolve) => {
      led = resolve;
    });
    const running = a.group('g').lead(
      async (leadership) => {
        terms.push(leadership.term);
        if (terms.length === 2) led();
        await aborted(leadership.signal, 30_000);
      },
      { signal: controller.signal },
    );
    await eventually(
      () => b.group('g').leader(),
      (l) => l === 'a',
      5000,
      'a to lead',
    );
    memoryFaults(a).expire();
    await deadline(ledTwice, 10_000, 'a to lead again in its new session');
    expect(terms[1]).toBeGreaterThan(terms[0] ?? 0n);
    controller.abort();
    await deadline(running, 5000, 'lead() to end');
    expect(await b.group('g').leader()).toBeUndefined();
    await Promise.all([a.close(), b.close()]);
  });

  it('hands over when fn returns, and rejects with what fn threw while leading', async () => {
    const url = fresh();
    const a = await connect(url, { member: 'a' });
    const b = await connect(url, { member: 'b' });
    let runs = 0;
    const failing = a.group('g').lead(() => {
      runs++;
      if (runs === 2) throw new Error('boom');
    });
    await expect(deadline(failing, 5000, 'lead() to reject')).rejects.toThrow('boom');
    expect(runs).toBe(2);
    expect(await b.group('g').leader()).toBeUndefined();
    expect(await outcome(a.group('g').lead('x' as unknown as () => void))).toBe('ERR_INVALID_ARGUMENT');
    await Promise.all([a.close(), b.close()]);
  });

  it('ends when the coordinator closes', async () => {
    const a: Coordinator = await connect(fresh(), { member: 'a' });
    let started: () => void = () => undefined;
    const leading = new Promise<void>((resolve) => {
      started = resolve;
    });
    const running = a.group('g').lead(async (leadership) => {
      started();
      await aborted(leadership.signal, 30_000);
    });
    await leading;
    await a.close();
    await deadline(running, 5000, 'lead() to end');
  });
});
