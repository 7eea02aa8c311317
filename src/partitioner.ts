/**
 * group.partitioner(): joins the group with a weight and keeps a Placement equal to the group's live membership,
 * fed by the group watch. Because the watch's view always converges to members(), so does the partitioner's: it
 * cannot wedge on a member it never saw (a leave for an unknown member is a no-op, a resync emits the differences).
 */
import { Channel } from './channel.js';
import { ConcordError, isConcordError } from './errors.js';
import { validateCapabilities, validateOptionsObject } from './options.js';
import { HashRing, Rendezvous, ToozHashRing, type Placement } from './placement/index.js';
import { checkWeight } from './placement/placement.js';
import type { Capabilities, Group, GroupEvent, PartitionChange, Partitioner, PartitionerOptions } from './types.js';
import { GroupWatchImpl, type Resyncable, type WatchHost } from './watch.js';

export interface PartitionerHost extends WatchHost {
  readonly member: string;
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
  readonly #subscribers = new Set<Channel<PartitionChange>>();
  #watch: GroupWatchImpl | undefined;
  #closing: Promise<void> | undefined;

  constructor(host: PartitionerHost, handle: Group, placement: Placement) {
    this.#host = host;
    this.#handle = handle;
    this.group = handle.name;
    this.#placement = placement;
  }

  async start(capabilities: Capabilities): Promise<void> {
    try {
      await this.#handle.join({ capabilities, create: true });
    } catch (error) {
      // Already a member (say, through another handle): publish the weight instead.
      if (!isConcordError(error, 'ERR_MEMBER_EXISTS')) throw error;
      await this.#handle.updateCapabilities(capabilities);
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
    for (const subscriber of this.#subscribers) subscriber.push(change);
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

  changes(): AsyncIterable<PartitionChange> {
    this.#assertOpen();
    const channel: Channel<PartitionChange> = new Channel(() => {
      this.#subscribers.delete(channel);
    });
    this.#subscribers.add(channel);
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
    for (const subscriber of this.#subscribers) subscriber.end();
    this.#subscribers.clear();
    await this.#watch?.close();
    try {
      this.#host.assertOpen();
      await this.#handle.leave();
    } catch (error) {
      // Closing after the coordinator closed, or after someone else left for us, is fine.
      if (!isConcordError(error)) throw error;
    }
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}

export async function openPartitioner(host: PartitionerHost, handle: Group, options?: PartitionerOptions): Promise<Partitioner> {
  validateOptionsObject(options, 'options');
  const weight = checkWeight(options?.weight, 'options.weight');
  const extra = options?.capabilities === undefined ? {} : validateCapabilities(options.capabilities, 'options.capabilities');
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
