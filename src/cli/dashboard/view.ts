/**
 * What the dashboard shows, kept current: each group's members through its watch, each leadership through
 * watchLeader(), and the locks re-read with coordinator.locks(), which has no watch of its own: at once after any
 * pushed change, and every `refreshMs` besides (new groups and lock hand-offs between pushes show up within that
 * period). Changes become entries of an event log; listeners hear of each batch of changes once.
 */
import { isConcordError } from '../../errors.js';
import type { Capabilities, Coordinator, CoordinatorEvent, LockInfo } from '../../types.js';

export interface MemberView {
  readonly id: string;
  readonly capabilities: Capabilities;
  /** The weight a partitioner counts: `capabilities.weight` when it is a number > 0, else 1. */
  readonly weight: number;
  /** Its share of a partitioned key space (rendezvous, the default: exactly weight / total weight). */
  readonly share: number;
}

export interface GroupView {
  readonly name: string;
  readonly members: readonly MemberView[];
  readonly leader: { readonly member: string; readonly term: string } | undefined;
}

export interface LockView {
  readonly name: string;
  readonly kind: 'lock' | 'semaphore' | 'leader';
  readonly holders: readonly { readonly member: string; readonly token: string; readonly shared: boolean }[];
  readonly waiting: number;
  /** The first contender in line, and how long it has waited when the backend says. */
  readonly oldestWaiter?: { readonly member: string; readonly waitedMs?: number };
  readonly limit?: number;
}

export interface State {
  /** The backend's URL, without a password. */
  readonly url: string;
  readonly watch: 'push' | 'poll';
  readonly session: string;
  readonly refreshMs: number;
  readonly groups: readonly GroupView[];
  readonly locks: readonly LockView[];
  /** The last error met while reading, until a read succeeds. */
  readonly problem: string | undefined;
  /** False when the driver cannot list its locks (a driver of your own without that step). */
  readonly locksListed: boolean;
}

export type EntryType = 'join' | 'leave' | 'update' | 'leader' | 'acquire' | 'handoff' | 'release' | 'session';

export interface Entry {
  /** ms since the epoch. */
  readonly time: number;
  readonly type: EntryType;
  readonly text: string;
}

/** A member's weight as a partitioner reads it (src/partitioner.ts): anything unusable counts as 1. */
export function weightOf(capabilities: Capabilities): number {
  const weight = capabilities.weight;
  return typeof weight === 'number' && Number.isFinite(weight) && weight > 0 ? weight : 1;
}

/** Each member's share under weighted rendezvous placement, which gives member i exactly w_i / sum(w) of the keys. */
export function shares(members: ReadonlyMap<string, Capabilities>): MemberView[] {
  const ids = [...members.keys()].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  const weights = ids.map((id) => weightOf(members.get(id) ?? {}));
  const total = weights.reduce((sum, weight) => sum + weight, 0);
  return ids.map((id, i) => ({ id, capabilities: members.get(id) ?? {}, weight: weights[i] ?? 1, share: (weights[i] ?? 1) / total }));
}

const LOG_LIMIT = 500;

interface Tracked {
  readonly members: Map<string, Capabilities>;
  leader: { member: string; term: string } | undefined;
  readonly stop: AbortController;
  /** Found after the first read: its first members and leader are news. */
  readonly news: boolean;
}

function holderText(holder: { member: string; token: string } | undefined): string {
  return holder ? `${holder.member} #${holder.token}` : 'nobody';
}

function message(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

export class LiveView {
  readonly #coordinator: Coordinator;
  readonly #refreshMs: number;
  readonly #signal: AbortSignal;
  readonly #tracked = new Map<string, Tracked>();
  #locks: LockView[] = [];
  #locksListed = true;
  #problem: string | undefined;
  readonly #log: Entry[] = [];
  #pending: Entry[] = [];
  #announce: NodeJS.Immediate | undefined;
  #last = '';
  readonly #listeners = new Set<(state: State, entries: readonly Entry[]) => void>();
  #wake: (() => void) | undefined;
  #again = false;
  /** The first read is done: from then on a new group's first members and leader are news for the log. */
  #started = false;
  readonly #loop: Promise<void>;
  readonly #sessionEvents: readonly CoordinatorEvent[] = ['suspended', 'reconnected', 'lost', 'restored'];
  readonly #onSession = new Map<CoordinatorEvent, () => void>();

  /** Starts following; the first read is done once `ready` resolves. Stops when `signal` aborts. */
  constructor(coordinator: Coordinator, refreshMs: number, signal: AbortSignal) {
    this.#coordinator = coordinator;
    this.#refreshMs = refreshMs;
    this.#signal = signal;
    for (const event of this.#sessionEvents) {
      const listener = (): void => {
        this.#add('session', `session ${event}`);
        this.#changed();
      };
      this.#onSession.set(event, listener);
      coordinator.on(event, listener);
    }
    this.#loop = this.#run();
  }

  /** Resolves when the loop has ended (after `signal` aborted) and every watch is stopped. */
  get done(): Promise<void> {
    return this.#loop;
  }

  get state(): State {
    const groups: GroupView[] = [...this.#tracked]
      .filter(([, tracked]) => tracked.members.size > 0 || tracked.leader !== undefined)
      .map(([name, tracked]) => ({ name, members: shares(tracked.members), leader: tracked.leader }))
      .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    return {
      url: this.#coordinator.url,
      watch: this.#coordinator.features.watch,
      session: this.#coordinator.session.state,
      refreshMs: this.#refreshMs,
      groups,
      locks: this.#locks,
      problem: this.#problem,
      locksListed: this.#locksListed,
    };
  }

  /** The event log so far, oldest first. */
  get log(): readonly Entry[] {
    return this.#log;
  }

  /** Calls `listener` after each batch of changes with the new state and the new log entries; returns an unsubscribe. */
  subscribe(listener: (state: State, entries: readonly Entry[]) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  async #run(): Promise<void> {
    while (!this.#signal.aborted) {
      this.#again = false;
      await this.#refresh();
      if (this.#again || this.#signal.aborted) continue;
      await new Promise<void>((resolve) => {
        const wake = (): void => {
          clearTimeout(timer);
          this.#signal.removeEventListener('abort', wake);
          this.#wake = undefined;
          resolve();
        };
        const timer = setTimeout(wake, this.#refreshMs);
        this.#signal.addEventListener('abort', wake, { once: true });
        this.#wake = wake;
      });
    }
    for (const [event, listener] of this.#onSession) this.#coordinator.off(event, listener);
    for (const tracked of this.#tracked.values()) tracked.stop.abort();
    clearImmediate(this.#announce);
  }

  /** Re-reads the groups and locks now (or right after the read under way). */
  #refreshSoon(): void {
    this.#again = true;
    this.#wake?.();
  }

  async #refresh(): Promise<void> {
    try {
      const [groups, locks] = await Promise.all([this.#coordinator.groups(), this.#readLocks()]);
      const names = new Set([...groups, ...locks.filter((lock) => lock.kind === 'leader').map((lock) => lock.name)]);
      for (const name of names) if (!this.#tracked.has(name)) this.#track(name);
      for (const [name, tracked] of this.#tracked) {
        if (names.has(name) || tracked.members.size > 0) continue;
        tracked.stop.abort();
        this.#tracked.delete(name);
      }
      this.#setLocks(locks);
      this.#problem = undefined;
      this.#started = true;
    } catch (error) {
      if (this.#signal.aborted || isConcordError(error, 'ERR_CLOSED')) return;
      this.#problem = message(error);
    }
    this.#changed();
  }

  async #readLocks(): Promise<LockInfo[]> {
    if (!this.#locksListed) return [];
    try {
      return await this.#coordinator.locks({ signal: this.#signal });
    } catch (error) {
      if (!isConcordError(error, 'ERR_NOT_SUPPORTED')) throw error;
      this.#locksListed = false;
      return [];
    }
  }

  #setLocks(listed: readonly LockInfo[]): void {
    const locks = listed.map((lock) => ({
      name: lock.name,
      kind: lock.kind,
      holders: lock.holders.map((holder) => ({ member: holder.member, token: String(holder.token), shared: holder.shared })),
      waiting: lock.waiting,
      ...(lock.oldestWaiter === undefined ? {} : { oldestWaiter: lock.oldestWaiter }),
      ...(lock.limit === undefined ? {} : { limit: lock.limit }),
    }));
    // Leader changes come from watchLeader; the log reports who took and who let go of named locks and semaphore
    // permits between two reads, one holder told from another by its token.
    const before = new Map(this.#locks.filter((lock) => lock.kind !== 'leader').map((lock) => [`${lock.kind}:${lock.name}`, lock]));
    this.#locks = locks;
    // What the first read finds held is the starting point, not news.
    if (!this.#started) return;
    for (const lock of locks) {
      if (lock.kind === 'leader') continue;
      const key = `${lock.kind}:${lock.name}`;
      this.#logHolders(lock, before.get(key)?.holders ?? []);
      before.delete(key);
    }
    for (const was of before.values()) this.#logHolders({ ...was, holders: [] }, was.holders);
  }

  /** Log entries for the holders of `lock` that came or went since the last read (`was`). */
  #logHolders(lock: LockView, was: LockView['holders']): void {
    const tokens = (holders: LockView['holders']): Set<string> => new Set(holders.map((holder) => holder.token));
    const [wasTokens, nowTokens] = [tokens(was), tokens(lock.holders)];
    const gone = was.filter((holder) => !nowTokens.has(holder.token));
    const came = lock.holders.filter((holder) => !wasTokens.has(holder.token));
    const what = lock.kind === 'semaphore' ? `${lock.name} (semaphore)` : lock.name;
    const [from] = gone;
    const [to] = came;
    // One exclusive holder replaced by another is a hand-off, as before shared holds existed.
    if (from && to && gone.length === 1 && came.length === 1 && !from.shared && !to.shared) {
      this.#add('handoff', `${what}: ${holderText(from)} → ${holderText(to)}`);
      return;
    }
    for (const holder of gone) this.#add('release', `${what}: released by ${holderText(holder)}`);
    for (const holder of came) this.#add('acquire', `${what}: ${holderText(holder)} holds it${holder.shared ? ' shared' : ''}`);
  }

  #track(name: string): void {
    const tracked: Tracked = { members: new Map(), leader: undefined, stop: new AbortController(), news: this.#started };
    this.#tracked.set(name, tracked);
    const signal = AbortSignal.any([this.#signal, tracked.stop.signal]);
    const group = this.#coordinator.group(name);
    const ended = (error: unknown): void => {
      // A watch that failed is started again by the next read, which finds the group still there.
      if (signal.aborted || isConcordError(error, 'ERR_CLOSED')) return;
      this.#problem = `watching ${name}: ${message(error)}`;
      tracked.stop.abort();
      if (this.#tracked.get(name) === tracked) this.#tracked.delete(name);
      this.#changed();
    };
    void (async () => {
      for await (const event of group.watch({ signal })) {
        if (event.type === 'leave') {
          tracked.members.delete(event.member);
          this.#add('leave', `${name}: ${event.member} left`);
        } else {
          tracked.members.set(event.member, event.capabilities);
          if (event.type === 'update') this.#add('update', `${name}: ${event.member} updated ${JSON.stringify(event.capabilities)}`);
          else if (!event.initial || tracked.news)
            this.#add('join', `${name}: ${event.member} joined ${JSON.stringify(event.capabilities)}`);
        }
        this.#changed();
        this.#refreshSoon();
      }
    })().catch(ended);
    void (async () => {
      let first = true;
      for await (const change of group.watchLeader({ signal })) {
        const leader = change.leader === undefined ? undefined : { member: change.leader, term: String(change.term ?? '') };
        if (!first || (leader && tracked.news))
          this.#add('leader', leader ? `${name}: ${leader.member} leads, term ${leader.term}` : `${name}: no leader`);
        first = false;
        tracked.leader = leader;
        this.#changed();
        this.#refreshSoon();
      }
    })().catch(ended);
  }

  #add(type: EntryType, text: string): void {
    const entry = { time: Date.now(), type, text };
    this.#log.push(entry);
    if (this.#log.length > LOG_LIMIT) this.#log.splice(0, this.#log.length - LOG_LIMIT);
    this.#pending.push(entry);
  }

  /** Tells the listeners once per turn of the event loop, and only when something they can see changed. */
  #changed(): void {
    this.#announce ??= setImmediate(() => {
      this.#announce = undefined;
      const state = this.state;
      const entries = this.#pending;
      this.#pending = [];
      const json = JSON.stringify(state);
      if (json === this.#last && entries.length === 0) return;
      this.#last = json;
      for (const listener of this.#listeners) listener(state, entries);
    });
  }
}
