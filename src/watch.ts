/**
 * A group's membership as a pushed event stream: a snapshot, then the backend's changes from the snapshot's revision.
 * The stream keeps its own view of the group; every event is applied to that view, so a duplicate or a missed event
 * can never make it throw, and a resynchronisation (after a reconnect or a lost history) emits exactly the
 * differences between the view and a fresh snapshot. The consumer's view therefore always converges to members().
 */
import { Channel } from './channel.js';
import { sleep } from './clock.js';
import { debug } from './debug.js';
import { ConcordError, isConcordError } from './errors.js';
import type { Driver, DriverGroupEvent, GroupSnapshot, Unsubscribe } from './driver.js';
import type { Capabilities, GroupEvent, GroupWatch } from './types.js';
import { resyncChannel, type ResyncMessage } from './diagnostics.js';

export interface WatchHost {
  readonly driver: Driver;
  readonly member: string;
  readonly sessionTtlMs: number;
  assertOpen(): void;
  /** Open streams, resynchronised on reconnect and ended on close. */
  readonly streams: Set<Resyncable>;
}

export interface Resyncable {
  resync(): void;
  close(): Promise<void>;
}

/** initial: the first snapshot, as `initial` joins; silent: the first snapshot, unannounced; diff: a resync. */
type SyncMode = 'initial' | 'silent' | 'diff';

export class GroupWatchImpl implements GroupWatch, Resyncable {
  readonly #host: WatchHost;
  readonly #group: string;
  readonly #channel: Channel<GroupEvent>;
  readonly #view = new Map<string, { capabilities: Capabilities; json: string }>();
  readonly #stop = new AbortController();
  readonly #signal: AbortSignal | undefined;
  #generation = 0;
  #unsubscribe: Unsubscribe | undefined;
  #syncing: Promise<void> | undefined;
  #again = false;
  readonly #listener: ((event: GroupEvent) => void) | undefined;
  #ready: { resolve: () => void; reject: (error: unknown) => void } | undefined;
  /** Settles once the first snapshot has been delivered (or the watch failed first). */
  readonly ready: Promise<void>;

  /** With `listener`, events go to it synchronously instead of to the iterator (for the core's own consumers). */
  constructor(host: WatchHost, group: string, initial: boolean, signal: AbortSignal | undefined, listener?: (event: GroupEvent) => void) {
    this.#host = host;
    this.#group = group;
    this.#signal = signal;
    this.#listener = listener;
    this.ready = new Promise<void>((resolve, reject) => {
      this.#ready = { resolve, reject };
    });
    this.ready.catch(() => undefined);
    this.#channel = new Channel(() => void this.close());
    try {
      host.assertOpen();
    } catch (error) {
      this.#end(error);
      return;
    }
    host.streams.add(this);
    signal?.addEventListener('abort', this.#onAbort, { once: true });
    if (signal?.aborted) {
      void this.close();
      return;
    }
    this.#run(initial ? 'initial' : 'silent');
  }

  /** One sync at a time; a resync asked for meanwhile runs right after. */
  #run(mode: SyncMode): void {
    this.#syncing = this.#sync(mode).finally(() => {
      this.#syncing = undefined;
      if (this.#again) {
        this.#again = false;
        this.resync();
      }
    });
  }

  readonly #onAbort = (): void => {
    void this.close();
  };

  /** Take a snapshot, emit its difference from the view, and subscribe from its revision. Retries until it works. */
  async #sync(mode: SyncMode): Promise<void> {
    let delay = 10;
    while (!this.#stop.signal.aborted) {
      const generation = ++this.#generation;
      this.#unsubscribe?.();
      this.#unsubscribe = undefined;
      try {
        const snapshot = await this.#host.driver.getMembers(this.#group);
        if (generation !== this.#generation || this.#stop.signal.aborted) return;
        this.#apply(snapshot, mode);
        mode = 'diff';
        this.#ready?.resolve();
        this.#ready = undefined;
        const unsubscribe = await this.#host.driver.watchGroup(this.#group, snapshot.revision, {
          event: (event) => {
            if (generation === this.#generation) this.#event(event);
          },
          resync: () => {
            if (generation === this.#generation) this.resync();
          },
        });
        if (generation !== this.#generation || this.#stop.signal.aborted) {
          unsubscribe();
          return;
        }
        this.#unsubscribe = unsubscribe;
        return;
      } catch (error) {
        if (this.#stop.signal.aborted) return;
        try {
          this.#host.assertOpen();
        } catch (closed) {
          this.#end(closed);
          return;
        }
        if (!isConcordError(error, 'ERR_CONNECTION')) {
          this.#end(error);
          return;
        }
        debug('watch of group "%s" failed to sync: %s', this.#group, (error as Error).message);
        await sleep(delay, this.#stop.signal).catch(() => undefined);
        delay = Math.min(delay * 2, this.#host.sessionTtlMs / 3);
      }
    }
  }

  /** Emit what differs between the view and a snapshot ('silent': only take it in). */
  #apply(snapshot: GroupSnapshot, mode: SyncMode): void {
    const seen = new Set<string>();
    for (const member of snapshot.members) {
      seen.add(member.id);
      if (mode === 'silent') this.#view.set(member.id, { capabilities: member.capabilities, json: JSON.stringify(member.capabilities) });
      else this.#put(member.id, member.capabilities, mode === 'initial');
    }
    for (const id of [...this.#view.keys()]) {
      if (!seen.has(id)) this.#remove(id);
    }
  }

  #event(event: DriverGroupEvent): void {
    if (event.type === 'leave') this.#remove(event.member);
    else this.#put(event.member, event.capabilities, false);
  }

  #put(member: string, capabilities: Capabilities, initial: boolean): void {
    const json = JSON.stringify(capabilities);
    const known = this.#view.get(member);
    if (known?.json === json) return;
    this.#view.set(member, { capabilities, json });
    const group = this.#group;
    this.#emit(known ? { type: 'update', group, member, capabilities } : { type: 'join', group, member, capabilities, initial });
  }

  #remove(member: string): void {
    if (this.#view.delete(member)) this.#emit({ type: 'leave', group: this.#group, member });
  }

  #emit(event: GroupEvent): void {
    if (this.#listener) this.#listener(event);
    else this.#channel.push(event);
  }

  resync(): void {
    if (this.#stop.signal.aborted) return;
    if (resyncChannel.hasSubscribers) resyncChannel.publish({ member: this.#host.member, group: this.#group } satisfies ResyncMessage);
    if (this.#syncing) {
      this.#again = true;
      return;
    }
    this.#run('diff');
  }

  #end(error?: unknown): void {
    this.#stop.abort();
    this.#generation++;
    this.#unsubscribe?.();
    this.#unsubscribe = undefined;
    this.#host.streams.delete(this);
    this.#signal?.removeEventListener('abort', this.#onAbort);
    this.#channel.end(error);
    this.#ready?.reject(error ?? new ConcordError('ERR_CLOSED', 'the watch was closed'));
    this.#ready = undefined;
  }

  /** Ends the stream now; a read still in flight is discarded when it lands, never waited for. */
  close(): Promise<void> {
    if (!this.#stop.signal.aborted) this.#end();
    return Promise.resolve();
  }

  [Symbol.asyncIterator](): AsyncIterator<GroupEvent> {
    return this.#channel;
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}
