/** The MySQL wake source's pace: fast while an acquire waits, fast for a while after a change, slow otherwise. */
import { afterEach, describe, expect, it } from 'vitest';
import { Poller, type PollIntervals } from '../../../drivers/mysql/poller.js';

/** A fake notes table: versions by topic, when each poll read it, and the wake-ups it caused. */
class Notes {
  readonly versions = new Map<string, bigint>();
  readonly polls: number[] = [];
  readonly woken: string[] = [];
  #waiters: Array<{ ready: () => boolean; resolve: () => void }> = [];

  readonly read = (topics: readonly string[]): Promise<Map<string, bigint>> => {
    this.polls.push(performance.now());
    this.#check();
    return Promise.resolve(new Map(topics.map((t) => [t, this.versions.get(t) ?? 0n])));
  };

  readonly wake = (topic: string): void => {
    this.woken.push(topic);
    this.#check();
  };

  /** Resolves once `ready` holds (checked at each poll and each wake-up). */
  until(ready: () => boolean): Promise<void> {
    if (ready()) return Promise.resolve();
    return new Promise((resolve) => this.#waiters.push({ ready, resolve }));
  }

  polled(count: number): Promise<void> {
    return this.until(() => this.polls.length >= count);
  }

  bump(topic: string): void {
    this.versions.set(topic, (this.versions.get(topic) ?? 0n) + 1n);
  }

  #check(): void {
    for (const waiter of [...this.#waiters]) {
      if (!waiter.ready()) continue;
      this.#waiters.splice(this.#waiters.indexOf(waiter), 1);
      waiter.resolve();
    }
  }
}

const INTERVALS: PollIntervals = { lockMs: 10, burstMs: 10, burstForMs: 60_000, watchMs: 2000 };

describe('mysql poller', () => {
  const pollers: Poller[] = [];
  afterEach(async () => {
    await Promise.all(pollers.splice(0).map((p) => p.close()));
  });
  const poller = (notes: Notes): Poller => {
    const p = new Poller(notes.read, { topic: notes.wake, reset: () => undefined }, INTERVALS);
    pollers.push(p);
    return p;
  };

  it('a waiting acquire brings the next poll forward from the slow pace of a watch', async () => {
    const notes = new Notes();
    const p = poller(notes);
    p.want('g:group');
    const t0 = performance.now();
    p.want('l:lock:a');
    await notes.polled(5);
    // Five polls at the lock pace, where the watch alone would have made its first after 2 s.
    expect((notes.polls[4] ?? Infinity) - t0).toBeLessThan(1000);
  });

  it('polls fast for a while after a change, and only then', async () => {
    const notes = new Notes();
    const p = poller(notes);
    const t0 = performance.now();
    p.want('g:group');
    await notes.polled(1);
    // The first poll of a quiet watch comes at the slow pace.
    expect((notes.polls[0] ?? 0) - t0).toBeGreaterThanOrEqual(1900);
    notes.bump('g:group');
    // Woken at the first poll (first seen), then for the change.
    await notes.until(() => notes.woken.length === 2);
    expect(notes.polls.length).toBe(2);
    const changed = performance.now();
    await notes.polled(7);
    expect((notes.polls[6] ?? Infinity) - changed).toBeLessThan(1000);
  });
});
