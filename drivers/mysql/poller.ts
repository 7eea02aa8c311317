/**
 * MySQL has no notifications: every change the driver announces bumps a row of `concord_notes` (ns, topic) inside the
 * writing transaction, and each coordinator reads the rows of the topics it cares about, in one query, only while it
 * cares about any: every LOCK_POLL_MS while an acquire waits (a hand-off costs at most that), every WATCH_POLL_MS while
 * only group watches are open (an idle coordinator with watches costs 1000 / WATCH_POLL_MS queries a second, plus its
 * renewals). A failed read is followed by a `reset` once one works again (wake-ups may have been missed). A waiter
 * reads its topic's version before its first look (baseline), so that the first poll does not send it to look again
 * for nothing: a look in flight when its caller gives up keeps its queue place until it commits.
 */
import { debug } from '../../src/debug.js';
import type { WakeHandlers, WakeSource } from '../sql/backend.js';

export const LOCK_POLL_MS = 10;
export const WATCH_POLL_MS = 55;

export type ReadVersions = (topics: readonly string[]) => Promise<Map<string, bigint>>;

export class Poller implements WakeSource {
  readonly #read: ReadVersions;
  readonly #handlers: WakeHandlers;
  /** Topic -> how many want it. */
  readonly #wanted = new Map<string, number>();
  /** The version last seen per topic; a topic seen for the first time wakes its listeners. */
  readonly #versions = new Map<string, bigint>();
  /** Topics whose baseline read is under way. */
  readonly #baselining = new Set<string>();
  #timer: NodeJS.Timeout | undefined;
  #polling = false;
  #failed = false;
  #closed = false;

  constructor(read: ReadVersions, handlers: WakeHandlers) {
    this.#read = read;
    this.#handlers = handlers;
  }

  want(topic: string): () => void {
    this.#wanted.set(topic, (this.#wanted.get(topic) ?? 0) + 1);
    this.#schedule();
    let ended = false;
    return () => {
      if (ended) return;
      ended = true;
      const count = (this.#wanted.get(topic) ?? 1) - 1;
      if (count > 0) this.#wanted.set(topic, count);
      else {
        this.#wanted.delete(topic);
        this.#versions.delete(topic);
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
    for (const topic of this.#wanted.keys()) if (topic.startsWith('l:')) return LOCK_POLL_MS;
    return WATCH_POLL_MS;
  }

  #schedule(): void {
    if (this.#timer || this.#polling || this.#closed || this.#wanted.size === 0) return;
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      void this.#poll();
    }, this.#intervalMs());
    // Keeps the process alive while something waits: nothing else would between two polls.
  }

  async #poll(): Promise<void> {
    if (this.#closed || this.#wanted.size === 0) return;
    this.#polling = true;
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
    return Promise.resolve();
  }
}
