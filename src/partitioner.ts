/**
 * group.partitioner(): joins the group with a weight and keeps a Placement equal to the group's live membership,
 * fed by the group watch. Because the watch's view always converges to members(), so does the partitioner's: it
 * cannot wedge on a member it never saw (a leave for an unknown member is a no-op, a resync emits the differences).
 */
import { Channel } from './channel.js';
import { ConcordError, isConcordError } from './errors.js';
import { describe, validateCapabilities, validateOptionsObject, validateSignal } from './options.js';
import { HashRing, Rendezvous, ToozHashRing, type Placement } from './placement/index.js';
import { checkWeight } from './placement/placement.js';
import type { Capabilities, Group, GroupEvent, PartitionChange, Partitioner, PartitionerOptions } from './types.js';
import { GroupWatchImpl, type Resyncable, type WatchHost } from './watch.js';

export interface PartitionerHost extends WatchHost {
  readonly member: string;
  /** Groups this coordinator has joined, with the capabilities it joined with. */
  readonly joined: ReadonlyMap<string, { readonly capabilities: Capabilities }>;
  /** Leaves the group for good: retried while the backend cannot be told, never re-joined after a lost session. */
  relinquish(group: string): Promise<void>;
}

const ALGORITHMS = {
  rendezvous: () => new Rendezvous(),
  ring: () => new HashRing(),
  tooz: () => new ToozHashRing(),
} as const;

/** A member's weight as published in its capabilities; anything unusable counts as 1. */
function weightOf(capabilities: Capabilities): number {
  const weight = capabilities.weight;
  return typeof weight === 'number' && Number.isFinite(weight) && weight > 0 ? weight : 1;
}

class PartitionerImpl implements Partitioner, Resyncable {
  readonly group: string;
  readonly #host: PartitionerHost;
  readonly #handle: Group;
  readonly #placement: Placement;
  /** Each changes() stream, with what ends its ties (subscription, abort listener). */
  readonly #subscribers = new Map<Channel<PartitionChange>, () => void>();
  #watch: GroupWatchImpl | undefined;
  #closing: Promise<void> | undefined;
  /** The partitioner joined the group itself (rather than publishing its weight on the user's own membership). */
  #joinedGroup = false;

  constructor(host: PartitionerHost, handle: Group, placement: Placement) {
    this.#host = host;
    this.#handle = handle;
    this.group = handle.name;
    this.#placement = placement;
  }

  /** Joins with `capabilities`, or, when this member is in the group already, adds them to its own. */
  async start(capabilities: Capabilities): Promise<void> {
    const mine = this.#host.joined.get(this.group);
    if (mine) {
      await this.#handle.updateCapabilities({ ...mine.capabilities, ...capabilities });
    } else {
      try {
        await this.#handle.join({ capabilities, create: true });
        this.#joinedGroup = true;
      } catch (error) {
        // Joined under this member id by another coordinator: publish the weight on that membership.
        if (!isConcordError(error, 'ERR_MEMBER_EXISTS')) throw error;
        const current = (await this.#handle.members()).find((m) => m.id === this.#host.member);
        await this.#handle.updateCapabilities({ ...current?.capabilities, ...capabilities });
      }
    }
    this.#host.assertOpen();
    this.#watch = new GroupWatchImpl(this.#host, this.group, true, undefined, (event) => {
      this.#apply(event);
    });
    this.#host.streams.add(this);
    await this.#watch.ready;
  }

  #apply(event: GroupEvent): void {
    const before = this.#placement.has(event.member);
    if (event.type === 'leave') this.#placement.remove(event.member);
    else this.#placement.add(event.member, weightOf(event.capabilities));
    const joined = event.type !== 'leave' && !before ? [event.member] : [];
    const left = event.type === 'leave' && before ? [event.member] : [];
    if (event.type === 'leave' && !before) return;
    const change: PartitionChange = { members: this.#placement.nodes, joined, left };
    for (const subscriber of this.#subscribers.keys()) subscriber.push(change);
  }

  #assertOpen(): void {
    if (this.#closing) throw new ConcordError('ERR_CLOSED', 'the partitioner is closed');
  }

  members(): string[] {
    this.#assertOpen();
    return this.#placement.nodes;
  }

  owners(key: string | Uint8Array, options?: { replicas?: number; ignore?: Iterable<string> }): string[] {
    this.#assertOpen();
    return this.#placement.getNodes(key, options);
  }

  isMine(key: string | Uint8Array, options?: { replicas?: number }): boolean {
    return this.owners(key, options).includes(this.#host.member);
  }

  changes(options?: { initial?: boolean; signal?: AbortSignal }): AsyncIterable<PartitionChange> {
    validateOptionsObject(options, 'options');
    const initial = options?.initial ?? true;
    if (typeof initial !== 'boolean') throw new ConcordError('ERR_INVALID_ARGUMENT', 'options.initial must be a boolean');
    const signal = validateSignal(options?.signal, 'options.signal');
    this.#assertOpen();
    const onAbort = (): void => {
      channel.end();
      forget();
    };
    const forget = (): void => {
      this.#subscribers.delete(channel);
      signal?.removeEventListener('abort', onAbort);
    };
    const channel: Channel<PartitionChange> = new Channel(forget);
    if (signal?.aborted) {
      channel.end();
      return channel;
    }
    // The current view first, so a consumer never misses what happened before it started iterating.
    if (initial) channel.push({ members: this.#placement.nodes, joined: this.#placement.nodes, left: [] });
    this.#subscribers.set(channel, forget);
    signal?.addEventListener('abort', onAbort, { once: true });
    return channel;
  }

  /** The watch resynchronises itself. */
  resync(): void {
    return;
  }

  close(): Promise<void> {
    this.#closing ??= this.#close();
    return this.#closing;
  }

  async #close(): Promise<void> {
    this.#host.streams.delete(this);
    for (const [subscriber, forget] of this.#subscribers) {
      subscriber.end();
      forget();
    }
    await this.#watch?.close();
    // A membership the user made stays theirs (with the weight published on it).
    if (!this.#joinedGroup) return;
    try {
      await this.#host.relinquish(this.group);
    } catch (error) {
      // Closing after the coordinator closed is fine: its session's end takes the membership with it.
      if (!isConcordError(error, 'ERR_CLOSED')) throw error;
    }
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}

/** `options.weight`, or a weight given in `options.capabilities`; both may be given only when they agree. */
function weightOption(weight: unknown, published: unknown): number {
  if (published === undefined) return checkWeight(weight, 'options.weight');
  const fromCapabilities = checkWeight(published, 'options.capabilities.weight');
  if (weight !== undefined && checkWeight(weight, 'options.weight') !== fromCapabilities) {
    throw new ConcordError(
      'ERR_INVALID_ARGUMENT',
      `options.weight (${describe(weight)}) and options.capabilities.weight (${describe(published)}) disagree; give one of them`,
    );
  }
  return fromCapabilities;
}

export async function openPartitioner(host: PartitionerHost, handle: Group, options?: PartitionerOptions): Promise<Partitioner> {
  validateOptionsObject(options, 'options');
  const extra = options?.capabilities === undefined ? {} : validateCapabilities(options.capabilities, 'options.capabilities');
  const weight = weightOption(options?.weight, extra.weight);
  const algorithm = options?.algorithm ?? 'rendezvous';
  if (!Object.hasOwn(ALGORITHMS, algorithm)) {
    throw new ConcordError(
      'ERR_INVALID_ARGUMENT',
      `options.algorithm must be one of ${Object.keys(ALGORITHMS).join(', ')}, got ${JSON.stringify(algorithm)}`,
    );
  }
  host.assertOpen();
  const partitioner = new PartitionerImpl(host, handle, ALGORITHMS[algorithm]());
  try {
    await partitioner.start({ ...extra, weight });
  } catch (error) {
    await partitioner.close().catch(() => undefined);
    throw error;
  }
  return partitioner;
}
