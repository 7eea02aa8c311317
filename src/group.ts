import { ConcordError, isConcordError } from './errors.js';
import { groupNotFound } from './kit/messages.js';
import { campaign, lead, leader, LeaderWatch } from './election.js';
import type { LockHost } from './lock/host.js';
import { describe, validateCapabilities, validateName, validateOptionsObject, validateSignal } from './options.js';
import { openPartitioner, type PartitionerHost } from './partitioner.js';
import type {
  AcquireOptions,
  Capabilities,
  Group,
  GroupWatch,
  JoinOptions,
  LeadOptions,
  LeaderChange,
  Leadership,
  Member,
  Partitioner,
  PartitionerOptions,
  WatchOptions,
} from './types.js';
import { GroupWatchImpl, type WatchHost } from './watch.js';

/** A group this coordinator has joined: what to re-join with after a lost session, and under which session it is. */
export interface Membership {
  capabilities: Capabilities;
  session: string;
}

export interface GroupHost extends LockHost, WatchHost, PartitionerHost {
  readonly joined: Map<string, Membership>;
  serialize<T>(group: string, fn: () => Promise<T>): Promise<T>;
  /** Before a join: sends a leave still owed to the backend for this group. */
  joining(group: string): Promise<void>;
}

export class GroupHandle implements Group {
  readonly name: string;
  readonly #host: GroupHost;

  constructor(host: GroupHost, name: string) {
    this.name = validateName(name, 'name');
    this.#host = host;
  }

  async create(): Promise<void> {
    this.#host.assertOpen();
    await this.#host.guard(this.#host.driver.createGroup(this.name));
  }

  async delete(): Promise<void> {
    this.#host.assertOpen();
    await this.#host.guard(this.#host.driver.deleteGroup(this.name));
  }

  /** A request made in `session` that the backend refused because it no longer knows it: have the machine check. */
  #refused(error: unknown, session: string): void {
    if (isConcordError(error, 'ERR_SESSION_LOST')) void this.#host.sessionRefused(session);
  }

  async join(options?: JoinOptions): Promise<void> {
    validateOptionsObject(options, 'options');
    const capabilities = options?.capabilities === undefined ? {} : validateCapabilities(options.capabilities, 'options.capabilities');
    const create = options?.create ?? false;
    if (typeof create !== 'boolean') throw new ConcordError('ERR_INVALID_ARGUMENT', 'options.create must be a boolean');
    const host = this.#host;
    host.usableSession();
    await host.serialize(this.name, async () => {
      await host.joining(this.name);
      const session = host.usableSession();
      // Recorded before the request: should the session be lost while it is in flight, the restore re-joins.
      const before = host.joined.get(this.name);
      host.joined.set(this.name, { capabilities, session });
      try {
        await host.guard(host.driver.joinGroup(this.name, host.member, session, capabilities, create));
      } catch (error) {
        if (before) host.joined.set(this.name, before);
        else host.joined.delete(this.name);
        this.#refused(error, session);
        throw error;
      }
    });
  }

  async leave(): Promise<void> {
    const host = this.#host;
    host.assertOpen();
    await host.serialize(this.name, async () => {
      try {
        await host.guard(host.driver.leaveGroup(this.name, host.member));
        host.joined.delete(this.name);
      } catch (error) {
        if (isConcordError(error, 'ERR_MEMBER_NOT_JOINED') || isConcordError(error, 'ERR_GROUP_NOT_FOUND')) host.joined.delete(this.name);
        throw error;
      }
    });
  }

  async members(): Promise<Member[]> {
    this.#host.assertOpen();
    const snapshot = await this.#host.guard(this.#host.driver.getMembers(this.name));
    if (!snapshot.exists) throw groupNotFound(this.name);
    return snapshot.members;
  }

  async updateCapabilities(capabilities: Capabilities): Promise<void> {
    const copy = validateCapabilities(capabilities, 'capabilities');
    const host = this.#host;
    host.usableSession();
    await host.serialize(this.name, async () => {
      const session = host.usableSession();
      try {
        await host.guard(host.driver.updateMember(this.name, host.member, copy));
      } catch (error) {
        this.#refused(error, session);
        throw error;
      }
      const membership = host.joined.get(this.name);
      if (membership) membership.capabilities = copy;
    });
  }

  watch(options?: WatchOptions): GroupWatch {
    validateOptionsObject(options, 'options');
    const signal = validateSignal(options?.signal, 'options.signal');
    const initial = options?.initial ?? true;
    if (typeof initial !== 'boolean') throw new ConcordError('ERR_INVALID_ARGUMENT', 'options.initial must be a boolean');
    this.#host.assertOpen();
    return new GroupWatchImpl(this.#host, this.name, initial, signal);
  }

  leader(): Promise<string | undefined> {
    return leader(this.#host, this.name);
  }

  campaign(options?: AcquireOptions): Promise<Leadership> {
    return campaign(this.#host, this.name, options);
  }

  async lead(fn: (leadership: Leadership) => Promise<void> | void, options?: LeadOptions): Promise<void> {
    if (typeof fn !== 'function') throw new ConcordError('ERR_INVALID_ARGUMENT', `fn must be a function, got ${describe(fn)}`);
    validateOptionsObject(options, 'options');
    const signal = validateSignal(options?.signal, 'options.signal');
    this.#host.assertOpen();
    await lead(this.#host, this.name, fn, signal);
  }

  watchLeader(options?: { signal?: AbortSignal }): AsyncIterable<LeaderChange> {
    validateOptionsObject(options, 'options');
    const signal = validateSignal(options?.signal, 'options.signal');
    this.#host.assertOpen();
    return new LeaderWatch(this.#host, this.name, signal);
  }

  partitioner(options?: PartitionerOptions): Promise<Partitioner> {
    return openPartitioner(this.#host, this, options);
  }
}
