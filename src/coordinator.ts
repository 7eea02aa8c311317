import { EventEmitter } from 'node:events';
import { ConcordError, abortedError, closedError, invalidArgument, isConcordError } from './errors.js';
import { sleep, unlessAborted, withTimeout } from './clock.js';
import { debug } from './debug.js';
import { driverCallChannel, sessionChannel, traceDriver, type SessionMessage } from './diagnostics.js';
import type { Driver, DriverEvents, LockKind, LockWaiter } from './driver.js';
import { GroupHandle, type GroupHost, type Membership } from './group.js';
import { LockHandle, SemaphoreHandle } from './lock/handle.js';
import { LockRegistry } from './lock/registry.js';
import { describe, validateOptionsObject, validateSignal } from './options.js';
import { SessionMachine } from './session.js';
import type {
  AcquireOptions,
  Coordinator,
  CoordinatorEvent,
  Features,
  Group,
  HeldLock,
  Lock,
  LockInfo,
  Waiter,
  LocksOptions,
  Semaphore,
  SemaphoreOptions,
  SessionInfo,
  SessionState,
} from './types.js';
import type { Resyncable } from './watch.js';

export interface CoordinatorConfig {
  readonly member: string;
  readonly url: string;
  readonly sessionTtlMs: number;
  readonly rejoin: boolean;
}

/** Symbol of the test hook that makes a coordinator vanish like a crashed process. */
export const kCrash = Symbol.for('concord.crash');
/** Symbol of the driver instance behind a coordinator, for a driver's own test hooks (its descriptor's `faults`). */
export const kDriver = Symbol.for('concord.driver');
/** How `locks()` orders kinds: locks, then semaphores, then leadership. */
const KIND_ORDER = { lock: 0, semaphore: 1, leader: 2 } as const;

/** Symbol event emitted with (kind, name) once a lock wait is registered with the backend (tests rely on it for order). */
export const kQueued = Symbol.for('concord.queued');

const EVENTS: ReadonlySet<string> = new Set<CoordinatorEvent>(['suspended', 'reconnected', 'lost', 'restored', 'closed']);

export class CoordinatorImpl extends EventEmitter implements Coordinator, GroupHost {
  readonly member: string;
  readonly url: string;
  readonly sessionTtlMs: number;
  readonly joined = new Map<string, Membership>();
  readonly streams = new Set<Resyncable>();
  readonly registry = new LockRegistry();
  readonly #rejoin: boolean;
  #driver: Driver | undefined;
  /** The same driver, publishing each backend request on `concord:driver:call` (used while anyone subscribes). */
  #traced: Driver | undefined;
  /** The session state last published on `concord:session`. */
  #published: SessionState = 'connected';
  #machine: SessionMachine | undefined;
  #closing: Promise<void> | undefined;
  readonly #memberships = new Map<string, Promise<void>>();
  /** Backend requests in flight on behalf of a caller: interrupted when the session is lost or the coordinator closes. */
  readonly #guarded = new Set<(error: ConcordError) => void>();
  /** Groups a closed partitioner left while the backend could not be told: left once it answers again. */
  readonly #leaving = new Set<string>();
  /** Acquisitions waiting for a usable session: re-checked whenever one opens, and on close. */
  readonly #sessionWaiters = new Set<() => void>();

  constructor(config: CoordinatorConfig) {
    super();
    this.member = config.member;
    this.url = config.url;
    this.sessionTtlMs = config.sessionTtlMs;
    this.#rejoin = config.rejoin;
  }

  /** The calls a driver makes into the core. */
  readonly driverEvents: DriverEvents = {
    sessionExpired: (sessionId) => {
      this.#machine?.expired(sessionId);
    },
    lockLost: (kind: LockKind, name: string, token: bigint) => {
      for (const held of this.registry.held) if (held.kind === kind && held.name === name && held.token === token) held.lose();
    },
    linkDown: () => {
      this.#machine?.linkDown();
    },
    linkUp: () => {
      this.#machine?.linkUp();
    },
  };

  /** Second half of construction: the driver exists and the first session opens. */
  async start(driver: Driver, name: string): Promise<void> {
    this.#driver = driver;
    this.#traced = traceDriver(driver, name);
    this.#machine = new SessionMachine(
      () => (this.#traced && driverCallChannel.hasSubscribers ? this.#traced : driver),
      this.sessionTtlMs,
      {
        suspended: () => {
          this.#publishState('suspended');
          this.#announce('suspended');
        },
        reconnected: () => {
          this.#publishState('connected');
          for (const stream of this.streams) stream.resync();
          this.registry.retryReleases().catch(() => undefined);
          this.registry.retryCancels(this).catch(() => undefined);
          void this.#retryLeaves();
          this.#announce('reconnected');
        },
        renewed: () => {
          // Leftovers of abandoned waits that could not be cancelled are retried while the backend answers.
          if (this.registry.uncancelled.size > 0) this.registry.retryCancels(this).catch(() => undefined);
          if (this.registry.unreleased.size > 0) this.registry.retryReleases().catch(() => undefined);
          if (this.#leaving.size > 0) void this.#retryLeaves();
        },
        lost: (sessionId) => {
          this.registry.loseAll(sessionId);
          this.#interrupt(new ConcordError('ERR_SESSION_LOST', 'the session was lost while the request was in flight'));
          if (!this.#rejoin) this.joined.clear();
          this.#publishState('lost');
          this.#announce('lost');
        },
        opened: () => {
          if (this.#published === 'lost') this.#publishState('connected');
          for (const waiter of [...this.#sessionWaiters]) waiter();
        },
        restore: () => this.#restore(),
        restored: () => {
          this.#announce('restored');
        },
      },
    );
    await this.#machine.open();
  }

  /** Publishes a change of session state on `concord:session`. */
  #publishState(to: SessionState): void {
    const from = this.#published;
    this.#published = to;
    if (from === to || !sessionChannel.hasSubscribers) return;
    sessionChannel.publish({ member: this.member, session: this.#machine?.id ?? '', from, to } satisfies SessionMessage);
  }

  /** A user's listener that throws must not stop the session machine: its error surfaces on its own. */
  #announce(event: CoordinatorEvent): void {
    try {
      this.emit(event);
    } catch (error) {
      queueMicrotask(() => {
        throw error;
      });
    }
  }

  /**
   * Runs the membership changes of one group one after another, so a re-join after a lost session never crosses the
   * user's own join, leave or update of that group.
   */
  serialize<T>(group: string, fn: () => Promise<T>): Promise<T> {
    const previous = this.#memberships.get(group) ?? Promise.resolve();
    const run = previous.then(fn);
    const tail = run.then(
      () => undefined,
      () => undefined,
    );
    this.#memberships.set(group, tail);
    void tail.then(() => {
      if (this.#memberships.get(group) === tail) this.#memberships.delete(group);
    });
    return run;
  }

  /**
   * Leaves a group for good, for a closing partitioner: it is no longer re-joined after a lost session, and a leave
   * the backend could not be told of (link down, session lost) is retried until it answers, unless the group is
   * joined again meanwhile. Other failures are thrown.
   */
  relinquish(group: string): Promise<void> {
    this.assertOpen();
    return this.serialize(group, async () => {
      this.joined.delete(group);
      this.#leaving.add(group);
      await this.#leave(group);
    });
  }

  /**
   * Before a join (under serialize(group)): a leave still owed to the backend goes first, or the join would find the
   * old membership. If it fails again, so does the join, and the leave stays owed.
   */
  async joining(group: string): Promise<void> {
    if (!this.#leaving.has(group)) return;
    try {
      await this.guard(this.driver.leaveGroup(group, this.member));
    } catch (error) {
      if (!isConcordError(error, 'ERR_MEMBER_NOT_JOINED') && !isConcordError(error, 'ERR_GROUP_NOT_FOUND')) throw error;
    }
    this.#leaving.delete(group);
  }

  async #leave(group: string): Promise<void> {
    try {
      await this.guard(this.driver.leaveGroup(group, this.member));
    } catch (error) {
      if (isConcordError(error, 'ERR_CONNECTION') || isConcordError(error, 'ERR_SESSION_LOST')) {
        debug('leaving group "%s" failed, to be retried: %s', group, (error as Error).message);
        return;
      }
      this.#leaving.delete(group);
      // Gone already (expired with an old session, or left by someone else), or the coordinator closed: nothing owed.
      if (isConcordError(error, 'ERR_MEMBER_NOT_JOINED') || isConcordError(error, 'ERR_GROUP_NOT_FOUND')) return;
      if (isConcordError(error, 'ERR_CLOSED')) return;
      throw error;
    }
    this.#leaving.delete(group);
  }

  #retryLeaves(): Promise<void> {
    return Promise.all(
      [...this.#leaving].map((group) =>
        this.serialize(group, async () => {
          if (this.#closing || !this.#leaving.has(group)) return;
          await this.#leave(group);
        }).catch(() => undefined),
      ),
    ).then(() => undefined);
  }

  async #restore(): Promise<void> {
    await this.#retryLeaves();
    for (const group of [...this.joined.keys()]) {
      await this.serialize(group, () => this.#rejoinGroup(group)).catch(() => undefined);
    }
    for (const stream of this.streams) stream.resync();
  }

  /** Re-joins one group under the new session; a backend that is not quite back yet is tried again. */
  async #rejoinGroup(group: string): Promise<void> {
    let tookOver = false;
    let delay = Math.min(50, this.sessionTtlMs / 10);
    for (;;) {
      const membership = this.joined.get(group);
      const session = this.session.id;
      // Closing, left meanwhile, lost again, or already joined again under the new session by the user.
      if (this.#closing || !membership || membership.session === session || this.session.state !== 'connected') return;
      try {
        await this.driver.joinGroup(group, this.member, session, membership.capabilities, false);
        membership.session = session;
        return;
      } catch (error) {
        if (isConcordError(error, 'ERR_MEMBER_EXISTS') && !tookOver) {
          // The old session's membership outlived it on the backend: take it over, once.
          tookOver = true;
          await this.driver.leaveGroup(group, this.member).catch(() => undefined);
          continue;
        }
        debug('re-joining group "%s" failed: %s', group, (error as Error).message);
        if (isConcordError(error, 'ERR_GROUP_NOT_FOUND')) {
          this.joined.delete(group);
          return;
        }
        if (!isConcordError(error, 'ERR_CONNECTION')) return;
        await sleep(delay);
        delay = Math.min(delay * 2, this.sessionTtlMs / 3);
      }
    }
  }

  get [kDriver](): Driver | undefined {
    return this.#driver;
  }

  /** The driver; while anyone subscribes to concord:driver:call, a copy that publishes each backend request. */
  get driver(): Driver {
    if (!this.#driver) throw closedError();
    return driverCallChannel.hasSubscribers && this.#traced ? this.#traced : this.#driver;
  }

  get features(): Features {
    return this.driver.features;
  }

  get session(): SessionInfo {
    const machine = this.#machine;
    return {
      id: machine?.id ?? '',
      ttlMs: this.sessionTtlMs,
      state: this.#closing ? 'closed' : (machine?.state ?? 'connected'),
    };
  }

  assertOpen(): void {
    if (this.#closing) throw closedError();
  }

  usableSession(): string {
    this.assertOpen();
    const machine = this.#machine;
    if (!machine) throw closedError();
    machine.check();
    if (machine.state === 'lost') throw new ConcordError('ERR_SESSION_LOST', 'the session is lost and not yet replaced');
    return machine.id;
  }

  guard<T>(promise: Promise<T>): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      // The promise's own reject is the interrupt: no closure of its own per request.
      this.#guarded.add(reject);
      promise.then(
        (value) => {
          this.#guarded.delete(reject);
          resolve(value);
        },
        (error: unknown) => {
          this.#guarded.delete(reject);
          reject(error instanceof ConcordError ? error : new ConcordError('ERR_CONNECTION', String(error), { cause: error }));
        },
      );
    });
  }

  #interrupt(error: ConcordError): void {
    const pending = [...this.#guarded];
    this.#guarded.clear();
    for (const interrupt of pending) interrupt(error);
  }

  nextSession(signal: AbortSignal): Promise<string> {
    return new Promise<string>((resolve, reject) => {
      const check = (): boolean => {
        try {
          const id = this.usableSession();
          done();
          resolve(id);
          return true;
        } catch (error) {
          if (isConcordError(error, 'ERR_SESSION_LOST')) return false;
          done();
          reject(error instanceof Error ? error : closedError());
          return true;
        }
      };
      const onAbort = (): void => {
        done();
        reject(abortedError(signal));
      };
      const done = (): void => {
        this.#sessionWaiters.delete(waiter);
        signal.removeEventListener('abort', onAbort);
      };
      const waiter = (): void => {
        check();
      };
      if (signal.aborted) {
        reject(abortedError(signal));
        return;
      }
      if (check()) return;
      this.#sessionWaiters.add(waiter);
      signal.addEventListener('abort', onAbort, { once: true });
    });
  }

  async sessionRefused(sessionId: string): Promise<boolean> {
    const machine = this.#machine;
    if (!machine) return true;
    if (machine.id === sessionId && machine.state !== 'lost') await machine.probe();
    return machine.id !== sessionId || machine.state === 'lost';
  }

  queued(kind: LockKind, name: string): void {
    this.emit(kQueued, kind, name);
  }

  checkSession(): void {
    this.#machine?.check();
  }

  override on(event: CoordinatorEvent, listener: () => void): this {
    checkListener(event, listener);
    return super.on(event, listener);
  }

  override once(event: CoordinatorEvent, listener: () => void): this {
    checkListener(event, listener);
    return super.once(event, listener);
  }

  override off(event: CoordinatorEvent, listener: () => void): this {
    checkListener(event, listener);
    return super.off(event, listener);
  }

  group(name: string): Group {
    return new GroupHandle(this, name);
  }

  async groups(): Promise<string[]> {
    this.assertOpen();
    return (await this.guard(this.driver.listGroups())).sort();
  }

  lock(name: string): Lock {
    return new LockHandle(this, name);
  }

  semaphore(name: string, options: SemaphoreOptions): Semaphore {
    return new SemaphoreHandle(this, name, options);
  }

  async locks(options?: LocksOptions): Promise<LockInfo[]> {
    validateOptionsObject(options, 'options');
    const signal = validateSignal(options?.signal, 'options.signal');
    const kind = options?.kind;
    if (kind !== undefined && kind !== 'lock' && kind !== 'semaphore' && kind !== 'leader') {
      throw invalidArgument('options.kind', `must be 'lock', 'semaphore' or 'leader', got ${describe(kind)}`);
    }
    const prefix = options?.prefix ?? '';
    if (typeof prefix !== 'string') throw invalidArgument('options.prefix', `must be a string, got ${describe(prefix)}`);
    this.assertOpen();
    if (signal?.aborted) throw abortedError(signal);
    const driver = this.driver;
    if (!driver.listLocks) throw new ConcordError('ERR_NOT_SUPPORTED', 'this driver cannot list its locks');
    const listed = await unlessAborted(this.guard(driver.listLocks(kind, prefix)), signal);
    return listed
      .map((lock) => ({
        name: lock.name,
        kind: lock.kind,
        holders: lock.holders
          .map(({ member, token, shared }) => ({ member, token, shared: shared === true }))
          .sort((a, b) => (a.token < b.token ? -1 : a.token > b.token ? 1 : 0)),
        waiting: lock.waiting,
        ...(lock.limit === undefined ? {} : { limit: lock.limit }),
        ...(lock.oldestWaiter === undefined || lock.waiting === 0 ? {} : { oldestWaiter: waiterOf(lock.oldestWaiter) }),
      }))
      .sort((a, b) => (a.kind === b.kind ? (a.name < b.name ? -1 : a.name > b.name ? 1 : 0) : KIND_ORDER[a.kind] - KIND_ORDER[b.kind]));
  }

  async withLock<T>(name: string, fn: (held: HeldLock) => Promise<T> | T, options?: AcquireOptions): Promise<T> {
    if (typeof fn !== 'function') throw new ConcordError('ERR_INVALID_ARGUMENT', 'fn must be a function');
    const held = await this.lock(name).acquire(options);
    try {
      return await fn(held);
    } finally {
      await held.release();
    }
  }

  close(): Promise<void> {
    this.#closing ??= this.#close();
    return this.#closing;
  }

  async #close(): Promise<void> {
    const machine = this.#machine;
    const driver = this.#driver;
    await Promise.all([...this.streams].map((stream) => stream.close()));
    // Releasing each lock and leaving each group costs a round trip apiece; ending the session frees them all at once.
    this.registry.closeAll(closedError());
    this.#interrupt(closedError());
    for (const waiter of [...this.#sessionWaiters]) waiter();
    // After the machine has stopped, its id is the last session it opened (a replacement under way is wound down).
    if (machine) await withTimeout(machine.stop(), this.sessionTtlMs).catch(() => undefined);
    const sessionId = machine?.id;
    if (driver) {
      // An unreachable backend must not hold close() up: the session then ends by expiry.
      if (sessionId) {
        await withTimeout(driver.closeSession(sessionId), this.sessionTtlMs).catch((error: unknown) => {
          debug('closing session %s failed: %s', sessionId, (error as Error).message);
        });
      }
      await withTimeout(driver.close(), this.sessionTtlMs).catch(() => undefined);
    }
    this.joined.clear();
    this.#publishState('closed');
    this.#announce('closed');
  }

  /** Test hook: stop heartbeats and drop the connection without releasing anything, as a crash would. */
  [kCrash](): void {
    this.#closing ??= Promise.resolve();
    for (const stream of [...this.streams]) void stream.close();
    this.registry.closeAll(closedError());
    this.#interrupt(closedError());
    for (const waiter of [...this.#sessionWaiters]) waiter();
    void this.#machine?.stop();
    this.#driver?.destroy();
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}

/** Events are named by the Coordinator type; a misspelt one would otherwise never fire, silently. */
function checkListener(event: unknown, listener: unknown): void {
  // Symbols are the core's own (tests listen for kQueued).
  if (typeof event !== 'symbol' && !EVENTS.has(event as string)) {
    throw invalidArgument('event', `must be one of ${[...EVENTS].join(', ')}, got ${describe(event)}`);
  }
  if (typeof listener !== 'function') throw invalidArgument('listener', `must be a function, got ${describe(listener)}`);
}

/** A driver's waiter as the API reports it: a time that clocks apart made negative reads as 0. */
function waiterOf({ member, waitedMs }: LockWaiter): Waiter {
  return waitedMs === undefined || !Number.isFinite(waitedMs) ? { member } : { member, waitedMs: Math.max(0, waitedMs) };
}
