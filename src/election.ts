/**
 * Leader election on the lock machinery: leading a group is holding its lock in the 'leader' key space, and the term
 * is that lock's fencing token, so terms strictly increase with every change of leader.
 */
import { Channel } from './channel.js';
import { sleep } from './clock.js';
import { debug } from './debug.js';
import { isConcordError } from './errors.js';
import { acquire } from './lock/handle.js';
import type { HeldLockImpl } from './lock/held.js';
import type { LockHost } from './lock/host.js';
import type { Unsubscribe } from './driver.js';
import type { AcquireOptions, LeaderChange, Leadership } from './types.js';
import type { Resyncable, WatchHost } from './watch.js';

class LeadershipImpl implements Leadership {
  readonly #held: HeldLockImpl;

  constructor(held: HeldLockImpl) {
    this.#held = held;
  }

  get group(): string {
    return this.#held.name;
  }

  get term(): bigint {
    return this.#held.token;
  }

  get signal(): AbortSignal {
    return this.#held.signal;
  }

  get valid(): boolean {
    return this.#held.valid;
  }

  assertValid(): void {
    this.#held.assertValid();
  }

  resign(): Promise<void> {
    return this.#held.release();
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.resign();
  }
}

export async function campaign(host: LockHost, group: string, options?: AcquireOptions): Promise<Leadership> {
  return new LeadershipImpl(await acquire(host, 'leader', group, options));
}

/**
 * Campaigns, runs `fn` while leading, resigns, and campaigns again, until `signal` aborts or the coordinator closes.
 * Like Curator's LeaderSelector with auto-requeue: a lost session or lost leadership is not the end of it.
 */
export async function lead(
  host: LockHost,
  group: string,
  fn: (leadership: Leadership) => Promise<void> | void,
  signal: AbortSignal | undefined,
): Promise<void> {
  while (!signal?.aborted) {
    let leadership: Leadership;
    try {
      leadership = await campaign(host, group, signal ? { signal } : undefined);
    } catch (error) {
      if (signal?.aborted || isConcordError(error, 'ERR_CLOSED')) return;
      // Queued in a session that was lost: contend again in its replacement.
      if (isConcordError(error, 'ERR_SESSION_LOST')) continue;
      throw error;
    }
    const stop = (): void => void leadership.resign();
    signal?.addEventListener('abort', stop, { once: true });
    try {
      await fn(leadership);
    } catch (error) {
      // An error because leadership ended under fn is expected; one while it still led is the caller's to see.
      if (leadership.valid) throw error;
      debug('leading "%s" ended: %s', group, (error as Error).message);
    } finally {
      signal?.removeEventListener('abort', stop);
      await leadership.resign();
    }
  }
}

export async function leader(host: LockHost, group: string): Promise<string | undefined> {
  host.assertOpen();
  return (await host.guard(host.driver.lockHolder('leader', group)))?.member;
}

/**
 * Yields the current leader, then every change seen, in order. It re-reads the holder on each notification and after
 * reconnects, so hand-offs quicker than one read may be reported as one change (the terms show the gap).
 */
export class LeaderWatch implements AsyncIterable<LeaderChange>, Resyncable {
  readonly #host: LockHost & WatchHost;
  readonly #group: string;
  readonly #channel: Channel<LeaderChange>;
  readonly #stop = new AbortController();
  readonly #signal: AbortSignal | undefined;
  #last: { member: string | undefined; token: bigint | undefined } | undefined;
  #unsubscribe: Unsubscribe | undefined;
  #reading: Promise<void> | undefined;
  #dirty = false;
  #subscribing = false;
  #retry: NodeJS.Timeout | undefined;

  constructor(host: LockHost & WatchHost, group: string, signal: AbortSignal | undefined) {
    this.#host = host;
    this.#group = group;
    this.#signal = signal;
    this.#channel = new Channel(() => void this.close());
    host.streams.add(this);
    signal?.addEventListener('abort', this.#onAbort, { once: true });
    if (signal?.aborted) {
      void this.close();
      return;
    }
    this.resync();
  }

  readonly #onAbort = (): void => {
    void this.close();
  };

  /** Subscribes to changes of the leader; until that works, re-reads at ttl/3 so the view still moves. */
  async #subscribe(): Promise<void> {
    this.#subscribing = true;
    try {
      const unsubscribe = await this.#host.driver.watchLock('leader', this.#group, () => {
        this.resync();
      });
      if (this.#stop.signal.aborted) {
        unsubscribe();
        return;
      }
      this.#unsubscribe = unsubscribe;
      // A change between the first read and the subscription taking effect would otherwise go unseen.
      this.resync();
    } catch (error) {
      if (!isConcordError(error, 'ERR_CONNECTION')) {
        this.#end(error);
        return;
      }
      clearTimeout(this.#retry);
      this.#retry = setTimeout(() => {
        this.resync();
      }, this.#host.sessionTtlMs / 3);
      this.#retry.unref();
    } finally {
      this.#subscribing = false;
    }
  }

  /** Reads the holder again; reads never overlap and one more runs if a notification came in during a read. */
  resync(): void {
    if (this.#stop.signal.aborted) return;
    if (!this.#unsubscribe && !this.#subscribing) void this.#subscribe();
    if (this.#reading) {
      this.#dirty = true;
      return;
    }
    this.#reading = this.#read().finally(() => {
      this.#reading = undefined;
      if (this.#dirty) {
        this.#dirty = false;
        this.resync();
      }
    });
  }

  async #read(): Promise<void> {
    let delay = 10;
    while (!this.#stop.signal.aborted) {
      try {
        const holder = await this.#host.driver.lockHolder('leader', this.#group);
        if (this.#stop.signal.aborted) return;
        const member = holder?.member;
        const token = holder?.token;
        if (this.#last === undefined || this.#last.member !== member || this.#last.token !== token) {
          this.#last = { member, token };
          this.#channel.push(token === undefined ? { leader: member } : { leader: member, term: token });
        }
        return;
      } catch (error) {
        if (!isConcordError(error, 'ERR_CONNECTION')) {
          this.#end(error);
          return;
        }
        debug('leader watch of "%s": %s', this.#group, (error as Error).message);
        await sleep(delay, this.#stop.signal).catch(() => undefined);
        delay = Math.min(delay * 2, this.#host.sessionTtlMs / 3);
      }
    }
  }

  #end(error?: unknown): void {
    this.#stop.abort();
    clearTimeout(this.#retry);
    this.#unsubscribe?.();
    this.#unsubscribe = undefined;
    this.#host.streams.delete(this);
    this.#signal?.removeEventListener('abort', this.#onAbort);
    this.#channel.end(error);
  }

  /** Ends the stream now; a read still in flight is discarded when it lands. */
  close(): Promise<void> {
    if (!this.#stop.signal.aborted) this.#end();
    return Promise.resolve();
  }

  [Symbol.asyncIterator](): AsyncIterator<LeaderChange> {
    return this.#channel;
  }
}
