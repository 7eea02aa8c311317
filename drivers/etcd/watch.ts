/**
 * Every watch of one driver on one gRPC Watch stream. Watchers carry their own ids (etcd 3.4+ accepts client-chosen
 * ids), so creating one needs no ordering. A watcher remembers the revision after the last event it saw; when the
 * stream breaks, the hub opens a new one and re-creates every watcher from that revision, so nothing is missed or
 * repeated. When etcd has compacted that revision away (or cancels the watch for another reason), a watcher that asks
 * for it (`reopen`) is created again from the present and then told to start over with `reset`; any other is dropped
 * and told at once (its owner subscribes again from a fresh snapshot).
 */
import type { IDuplexStream, IEvent, IWatchRequest, IWatchResponse } from 'etcd3';
import { ConcordError } from '../../src/errors.js';
import { debug } from '../../src/debug.js';

export interface WatchSpec {
  readonly key: Buffer;
  /** Watch [key, rangeEnd); a single key without it. */
  readonly rangeEnd?: Buffer;
  /** First revision to report; omitted: changes after the watch is created. */
  readonly startRevision?: bigint;
  /** Only deletions. */
  readonly deletesOnly?: boolean;
  /** Events carry the key as it was before (a deleted key's create revision). */
  readonly prevKv?: boolean;
  /** Resolve at once instead of when etcd confirms; needs startRevision, so nothing between is missed. */
  readonly eager?: boolean;
  /** Events of one revision batch, in revision order. */
  events(events: IEvent[]): void;
  /** Continuity is lost (compaction, or etcd cancelled the watch): re-read and start again. */
  reset(): void;
  /**
   * Cancelled by etcd (a compacted start revision, also on resuming after a restart): keep the watch, created again
   * from the present, and call `reset` once etcd has confirmed it, so a re-read then misses nothing. Without it the
   * watch is dropped and `reset` called at once.
   */
  readonly reopen?: boolean;
  /** etcd created the watch when its revision was this (every change after it is reported). */
  created?(revision: bigint): void;
}

interface Entry {
  /** Changes when the watch is created again after a cancel: etcd may still hold the old id on that stream. */
  id: number;
  readonly spec: WatchSpec;
  /** The revision to resume from; undefined until the watch is created without a start revision. */
  next: bigint | undefined;
  created: boolean;
  /** A create request is outstanding on the current stream. */
  pending: boolean;
  /** Created again after etcd cancelled it: `reset` is due once etcd confirms. */
  reopened: boolean;
  settle: ((error?: Error) => void) | undefined;
  /** Running while etcd has not confirmed the creation: a stream that stays silent that long is dead. */
  timer: NodeJS.Timeout | undefined;
  /** Re-creation after a cancel that was not for compaction (backed off: etcd refused it, and may again). */
  retry: NodeJS.Timeout | undefined;
  retryMs: number;
}

type Stream = IDuplexStream<IWatchRequest, IWatchResponse>;

const MIN_BACKOFF_MS = 50;
const MAX_BACKOFF_MS = 1000;

export class WatchHub {
  readonly #open: () => Promise<Stream>;
  readonly #createTimeoutMs: number;
  readonly #entries = new Map<number, Entry>();
  /** Ids removed before etcd confirmed them on the current stream: cancelled when the confirmation arrives. */
  readonly #uncreated = new Set<number>();
  #stream: Stream | undefined;
  #opening = false;
  #closed = false;
  #nextId = 1;
  #backoffMs = MIN_BACKOFF_MS;
  #timer: NodeJS.Timeout | undefined;

  constructor(open: () => Promise<Stream>, createTimeoutMs: number) {
    this.#open = open;
    this.#createTimeoutMs = createTimeoutMs;
  }

  /** Resolves with an unsubscribe function once etcd has created the watch; ERR_CONNECTION if it could not. */
  watch(spec: WatchSpec): Promise<() => void> {
    if (this.#closed) return Promise.reject(new ConcordError('ERR_CONNECTION', 'the etcd connection is closed'));
    const entry: Entry = {
      id: this.#nextId++,
      spec,
      next: spec.startRevision,
      created: false,
      pending: false,
      reopened: false,
      settle: undefined,
      timer: undefined,
      retry: undefined,
      retryMs: MIN_BACKOFF_MS,
    };
    const unsubscribe = (): void => {
      this.#remove(entry);
    };
    const created = new Promise<() => void>((resolve, reject) => {
      entry.settle = (error) => {
        entry.settle = undefined;
        if (error) reject(error);
        else resolve(unsubscribe);
      };
    });
    this.#entries.set(entry.id, entry);
    if (this.#stream) this.#create(this.#stream, entry);
    else this.#connect();
    if (spec.eager && spec.startRevision !== undefined) {
      // Kept across failures like a created watch: it is (re)created from its revision whenever a stream is up.
      entry.settle = undefined;
      created.catch(() => undefined);
      return Promise.resolve(unsubscribe);
    }
    return created;
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    clearTimeout(this.#timer);
    const stream = this.#stream;
    this.#stream = undefined;
    for (const entry of this.#entries.values()) {
      clearTimeout(entry.timer);
      clearTimeout(entry.retry);
      entry.settle?.(new ConcordError('ERR_CONNECTION', 'the etcd connection is closed'));
    }
    this.#entries.clear();
    this.#uncreated.clear();
    stream?.cancel();
  }

  #remove(entry: Entry): void {
    if (this.#entries.get(entry.id) !== entry) return;
    this.#entries.delete(entry.id);
    clearTimeout(entry.timer);
    clearTimeout(entry.retry);
    if (!this.#stream) return;
    // etcd only cancels a watch it has created: one still being created is cancelled once it confirms it.
    if (entry.created) this.#stream.write({ cancel_request: { watch_id: entry.id } });
    else if (entry.pending) this.#uncreated.add(entry.id);
  }

  #create(stream: Stream, entry: Entry): void {
    const { spec } = entry;
    stream.write({
      create_request: {
        key: spec.key,
        range_end: spec.rangeEnd,
        start_revision: entry.next === undefined ? undefined : entry.next.toString(),
        filters: spec.deletesOnly ? ['Noput'] : undefined,
        prev_kv: spec.prevKv,
        watch_id: entry.id,
      },
    });
    entry.pending = true;
    // A connection can die without closing (a partition): etcd answers a creation at once, so silence means that.
    clearTimeout(entry.timer);
    entry.timer = setTimeout(() => {
      entry.timer = undefined;
      if (!entry.created && this.#stream === stream) this.#broken(stream, new Error('etcd did not confirm a watch in time'));
    }, this.#createTimeoutMs);
    entry.timer.unref();
  }

  #connect(): void {
    if (this.#opening || this.#stream || this.#closed) return;
    this.#opening = true;
    this.#open().then(
      (stream) => {
        this.#opening = false;
        if (this.#closed) {
          stream.on('error', () => undefined);
          stream.cancel();
          return;
        }
        this.#stream = stream;
        stream.on('data', (response: IWatchResponse) => {
          if (this.#stream === stream) this.#response(response);
        });
        stream.on('error', (error: Error) => {
          this.#broken(stream, error);
        });
        stream.on('end', () => {
          this.#broken(stream, new Error('the watch stream ended'));
        });
        for (const entry of this.#entries.values()) this.#create(stream, entry);
      },
      (error: unknown) => {
        this.#opening = false;
        this.#broken(undefined, error);
      },
    );
  }

  #broken(stream: Stream | undefined, error: unknown): void {
    if (stream !== undefined && stream !== this.#stream) return;
    this.#stream = undefined;
    // Watchers of the old stream end with it.
    this.#uncreated.clear();
    if (this.#closed) return;
    debug('etcd watch stream broke: %s', error instanceof Error ? error.message : String(error));
    stream?.cancel();
    for (const entry of [...this.#entries.values()]) {
      entry.created = false;
      entry.pending = false;
      clearTimeout(entry.timer);
      entry.timer = undefined;
      // Re-created with every other watcher on the next stream.
      clearTimeout(entry.retry);
      entry.retry = undefined;
      if (entry.settle) {
        // Still awaited by its caller, who hears of the failure and decides whether to try again.
        this.#entries.delete(entry.id);
        entry.settle(new ConcordError('ERR_CONNECTION', 'the etcd watch could not be created', { cause: error }));
      }
    }
    if (this.#entries.size === 0) return;
    // Watchers that were running resume where they left off on a new stream.
    clearTimeout(this.#timer);
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      this.#connect();
    }, this.#backoffMs);
    this.#backoffMs = Math.min(this.#backoffMs * 2, MAX_BACKOFF_MS);
  }

  #response(response: IWatchResponse): void {
    const entry = this.#entries.get(Number(response.watch_id));
    if (response.created) {
      this.#backoffMs = MIN_BACKOFF_MS;
      if (this.#uncreated.delete(Number(response.watch_id))) {
        if (!response.canceled) this.#stream?.write({ cancel_request: { watch_id: Number(response.watch_id) } });
        return;
      }
      if (!entry) return;
      entry.pending = false;
      if (response.canceled) {
        this.#cancelled(entry, response);
        return;
      }
      entry.created = true;
      entry.retryMs = MIN_BACKOFF_MS;
      clearTimeout(entry.timer);
      entry.timer = undefined;
      entry.next ??= BigInt(response.header.revision) + 1n;
      entry.spec.created?.(BigInt(response.header.revision));
      entry.settle?.();
      if (entry.reopened) {
        entry.reopened = false;
        entry.spec.reset();
      }
    }
    if (!entry) return; // cancelled by us; late responses are dropped
    if (response.events.length > 0) {
      const last = response.events[response.events.length - 1];
      if (last) entry.next = BigInt(last.kv.mod_revision) + 1n;
      entry.spec.events(response.events);
    }
    if (response.canceled && !response.created) this.#cancelled(entry, response);
  }

  #cancelled(entry: Entry, response: IWatchResponse): void {
    this.#entries.delete(entry.id);
    clearTimeout(entry.timer);
    entry.timer = undefined;
    entry.created = false;
    entry.pending = false;
    const compacted = response.compact_revision !== '0' && response.compact_revision !== '';
    const why = compacted ? `compacted at revision ${response.compact_revision}` : response.cancel_reason;
    debug('etcd watch %d cancelled: %s', entry.id, why);
    if (entry.settle) {
      entry.settle(new ConcordError('ERR_CONNECTION', `etcd refused the watch: ${why}`));
      return;
    }
    if (!entry.spec.reopen) {
      entry.spec.reset();
      return;
    }
    // Kept, under a new id (etcd may still hold the old one: release it), from the present: what happened since its
    // revision is unknown, so `reset` follows once it is back.
    this.#stream?.write({ cancel_request: { watch_id: entry.id } });
    entry.id = this.#nextId++;
    entry.next = undefined;
    entry.reopened = true;
    this.#entries.set(entry.id, entry);
    const delay = compacted ? 0 : entry.retryMs;
    if (!compacted) entry.retryMs = Math.min(entry.retryMs * 2, MAX_BACKOFF_MS);
    const again = (): void => {
      entry.retry = undefined;
      const stream = this.#stream;
      if (stream && this.#entries.get(entry.id) === entry && !entry.created && !entry.pending) this.#create(stream, entry);
    };
    if (delay === 0) {
      again();
      return;
    }
    entry.retry = setTimeout(again, delay);
    entry.retry.unref();
  }
}
