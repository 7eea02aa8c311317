/**
 * MySQL has no notifications: every change the driver announces bumps a row of `concord_notes` (ns, topic) inside the
 * writing transaction, and each coordinator reads the rows of the topics it cares about, in one query, only while it
 * cares about any. How often (PollIntervals): fastest while an acquire waits (a hand-off costs at most that; after
 * a while without change, as fast as a burst), fast for a while after a poll found a change (changes come in bursts:
 * a join, the rebalance it starts, leaves), slow while only quiet watches are open (an idle coordinator with watches costs 1000 / watchMs queries a second, plus its
 * renewals). Polls keep a fixed rate (each starts one interval after the previous one started), and a newly wanted
 * topic that needs a shorter interval brings the next poll forward. A failed read is followed by a `reset` once one
 * works again (wake-ups may have been missed). A waiter reads its topic's version before its first look (baseline),
 * so that the first poll does not send it to look again for nothing: a look in flight when its caller gives up keeps
 * its queue place until it commits.
 */
import { debug } from '../../src/debug.js';
import type { WakeHandlers, WakeSource } from '../sql/backend.js';

export interface PollIntervals {
  /** While an acquire waits (a lock topic is wanted), for burstForMs after its wait began or a poll found a change. */
  readonly lockMs: number;
  /** For burstForMs after a poll found a change, and while an acquire waits longer than that. */
  readonly burstMs: number;
  readonly burstForMs: number;
  /** Otherwise (only quiet watches are open). */
  readonly watchMs: number;
}

/**
 * Measured on MariaDB 10.11 (bench/results/mysql.md): a hand-off is the release's commit, half a lock interval, the
 * poll and the waiter's look; a join seen by a watcher is the join's commit, half an interval, the poll and the read.
 * The idle cost is 1000 / watchMs plus the renewals, under 20 statements/s.
 */
export const POLL_INTERVALS: PollIntervals = Object.freeze({ lockMs: 5, burstMs: 10, burstForMs: 2000, watchMs: 55 });

export type ReadVersions = (topics: readonly string[]) => Promise<Map<string, bigint>>;

export class Poller implements WakeSource {
  readonly #read: ReadVersions;
  readonly #handlers: WakeHandlers;
  readonly #intervals: PollIntervals;
  /** Topic -> how many want it. */
  readonly #wanted = new Map<string, number>();
  /** How many of the wanted topics are lock topics. */
  #lockTopics = 0;
  /** When the lock topics last went from none to some. */
  #lockSince = -Infinity;
  /** The version last seen per topic; a topic seen for the first time wakes its listeners. */
  readonly #versions = new Map<string, bigint>();
  /** Topics whose baseline read is under way. */
  readonly #baselining = new Set<string>();
  #timer: NodeJS.Timeout | undefined;
  /** When the pending timer fires (performance.now()). */
  #timerAt = Infinity;
  /** When the last poll started: the next starts one interval later. */
  #lastStart = 0;
  /** When a poll last found a change. */
  #changedAt = -Infinity;
  #polling = false;
  #failed = false;
  #closed = false;

  constructor(read: ReadVersions, handlers: WakeHandlers, intervals: PollIntervals = POLL_INTERVALS) {
    this.#read = read;
    this.#handlers = handlers;
    this.#intervals = intervals;
  }

  want(topic: string): () => void {
    // Waking from idle: the first poll comes one interval from now, not at once (the caller looks first anyway).
    if (this.#wanted.size === 0 && !this.#polling) this.#lastStart = performance.now();
    const count = this.#wanted.get(topic) ?? 0;
    this.#wanted.set(topic, count + 1);
    if (count === 0 && topic.startsWith('l:') && this.#lockTopics++ === 0) this.#lockSince = performance.now();
    this.#schedule();
    let ended = false;
    return () => {
      if (ended) return;
      ended = true;
      const left = (this.#wanted.get(topic) ?? 1) - 1;
      if (left > 0) this.#wanted.set(topic, left);
      else {
        this.#wanted.delete(topic);
        this.#versions.delete(topic);
        if (topic.startsWith('l:')) this.#lockTopics--;
      }
    };
  }

  async baseline(topic: string): Promise<void> {
    if (this.#closed || !this.#wanted.has(topic) || this.#versions.has(topic)) return;
    this.#baselining.add(topic);
    try {
      const version = (await this.#read([topic])).get(topic) ?? 0n;
      if (this.#wanted.has(topic)) this.#record(topic, version);
    } catch (error) {
      // The first poll that works wakes the topic instead.
      debug('mysql poll failed: %s', (error as Error).message);
    } finally {
      this.#baselining.delete(topic);
    }
  }

  /** Keeps the newest version seen: a read that started before another one finished may be older. */
  #record(topic: string, version: bigint): boolean {
    const known = this.#versions.get(topic);
    if (known !== undefined && version <= known) return false;
    this.#versions.set(topic, version);
    return true;
  }

  #intervalMs(): number {
    // A failing read is not tried again faster than an idle watch polls.
    if (this.#failed) return Math.max(this.#intervals.lockMs, this.#intervals.watchMs);
    const recent = performance.now() - this.#changedAt < this.#intervals.burstForMs;
    if (this.#lockTopics > 0) {
      // A wait that has seen nothing change for a while (a long hold) is polled at the slower of the fast paces.
      return recent || performance.now() - this.#lockSince < this.#intervals.burstForMs ? this.#intervals.lockMs : this.#intervals.burstMs;
    }
    return recent ? this.#intervals.burstMs : this.#intervals.watchMs;
  }

  #schedule(): void {
    if (this.#polling || this.#closed || this.#wanted.size === 0) return;
    const at = this.#lastStart + this.#intervalMs();
    // A pending poll that comes sooner stays; one that a new interest needs sooner is brought forward.
    if (this.#timer && at >= this.#timerAt) return;
    clearTimeout(this.#timer);
    this.#timerAt = at;
    // Keeps the process alive while something waits: nothing else would between two polls.
    this.#timer = setTimeout(
      () => {
        this.#timer = undefined;
        this.#timerAt = Infinity;
        void this.#poll();
      },
      Math.max(0, at - performance.now()),
    );
  }

  async #poll(): Promise<void> {
    if (this.#closed || this.#wanted.size === 0) return;
    this.#polling = true;
    this.#lastStart = performance.now();
    const topics = [...this.#wanted.keys()];
    try {
      const versions = await this.#read(topics);
      if (this.#closed) return;
      if (this.#failed) {
        this.#failed = false;
        this.#handlers.reset();
      }
      for (const topic of topics) {
        if (!this.#wanted.has(topic)) continue;
        const first = !this.#versions.has(topic);
        if (!this.#record(topic, versions.get(topic) ?? 0n)) continue;
        // Read before a baseline ends: before the caller's first look too, which will see whatever this read saw.
        if (first && this.#baselining.has(topic)) continue;
        if (!first) this.#changedAt = performance.now();
        // First seen otherwise: a change may have come between the interest and this read, so wake anyway (at worst
        // a look too many).
        this.#handlers.topic(topic);
      }
    } catch (error) {
      if (!this.#failed) debug('mysql poll failed: %s', (error as Error).message);
      this.#failed = true;
    } finally {
      this.#polling = false;
      this.#schedule();
    }
  }

  close(): Promise<void> {
    this.#closed = true;
    clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#timerAt = Infinity;
    return Promise.resolve();
  }
}
