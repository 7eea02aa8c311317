/**
 * What concord publishes on `node:diagnostics_channel`, for tracers, metrics and tests. Publishing is skipped
 * entirely while nobody subscribes: each call site checks `hasSubscribers` first, so the uncontended path pays one
 * property read per channel.
 *
 * ```ts
 * import diagnostics_channel from 'node:diagnostics_channel';
 * diagnostics_channel.tracingChannel('concord:lock:acquire').subscribe({
 *   asyncEnd: (context) => console.log(context.name, 'held with token', context.token, 'after', context.waitedMs, 'ms'),
 * });
 * ```
 */
import diagnostics_channel from 'node:diagnostics_channel';
import type { Driver, LockKind } from './driver.js';
import type { SessionState } from './types.js';

/** The context of `concord:lock:acquire` (tracing channel: start, end, asyncStart, asyncEnd, error). */
export interface AcquireContext {
  /** The acquiring coordinator's member id. */
  readonly coordinator: string;
  /** 'lock', 'semaphore' for a permit, or 'leader' for a campaign. */
  readonly kind: LockKind;
  /** The lock's name (the group's, for a campaign). */
  readonly name: string;
  /** A shared hold of a lock, or a semaphore permit. */
  readonly shared: boolean;
  /** Set once held: the fencing token (the term, for leadership). */
  token?: bigint;
  /** Set once it settles: from the call to held, or to the failure. */
  waitedMs?: number;
  /** Set by the channel on failure (ERR_LOCK_TIMEOUT, ERR_ABORTED, ...). */
  error?: unknown;
}

/** The context of `concord:lock:release` (tracing channel). */
export interface ReleaseContext {
  /** The releasing coordinator's member id. */
  readonly coordinator: string;
  /** 'lock', 'semaphore' for a permit, or 'leader' for a resignation. */
  readonly kind: LockKind;
  /** The lock's name (the group's, for leadership). */
  readonly name: string;
  /** A shared hold of a lock, or a semaphore permit. */
  readonly shared: boolean;
  /** The token of the hold that ends. */
  readonly token: bigint;
  /** How long it was held, from acquired to release(). */
  readonly heldMs: number;
  /** Set by the channel on failure. */
  error?: unknown;
}

/** The context of `concord:driver:call` (tracing channel): one backend request. */
export interface DriverCallContext {
  /** The driver's name: 'Redis', 'etcd', 'SQLite'... */
  readonly driver: string;
  /** The driver step: 'tryLock', 'renewSession', 'getMembers'... */
  readonly op: string;
  /** Set once it settles. */
  ms?: number;
  /** Set by the channel on failure: the driver's error. */
  error?: unknown;
}

/** A message of `concord:session`: every change of a coordinator's session state. */
export interface SessionMessage {
  /** The coordinator's member id. */
  readonly member: string;
  /** The session's id. */
  readonly session: string;
  /** The state it leaves. */
  readonly from: SessionState;
  /** The state it enters. */
  readonly to: SessionState;
}

/** A message of `concord:watch:resync`: a group watch re-read the membership (after a reconnect or a lost history). */
export interface ResyncMessage {
  /** The watching coordinator's member id. */
  readonly member: string;
  /** The watched group. */
  readonly group: string;
}

/** A message of `concord:lock:lost`: a held lock or leadership was lost (its signal aborted). */
export interface LostMessage {
  /** The coordinator that held it. */
  readonly member: string;
  /** 'lock', or 'leader' for leadership. */
  readonly kind: LockKind;
  /** The lock's name (the group's, for leadership). */
  readonly name: string;
  /** The token of the hold that was lost. */
  readonly token: bigint;
}

/** The names of concord's channels: tracing channels (acquire, release, driverCall) and plain ones. */
export const CHANNELS: {
  /** Tracing channel: every acquire and campaign ({@link AcquireContext}). */
  readonly acquire: 'concord:lock:acquire';
  /** Tracing channel: every release and resign ({@link ReleaseContext}). */
  readonly release: 'concord:lock:release';
  /** Tracing channel: every backend request ({@link DriverCallContext}). */
  readonly driverCall: 'concord:driver:call';
  /** Plain channel: session state changes ({@link SessionMessage}). */
  readonly session: 'concord:session';
  /** Plain channel: watch resynchronisations ({@link ResyncMessage}). */
  readonly resync: 'concord:watch:resync';
  /** Plain channel: held locks and leaderships lost ({@link LostMessage}). */
  readonly lost: 'concord:lock:lost';
} = Object.freeze({
  acquire: 'concord:lock:acquire',
  release: 'concord:lock:release',
  driverCall: 'concord:driver:call',
  session: 'concord:session',
  resync: 'concord:watch:resync',
  lost: 'concord:lock:lost',
} as const);

export const acquireChannel = diagnostics_channel.tracingChannel<object, AcquireContext>(CHANNELS.acquire);
export const releaseChannel = diagnostics_channel.tracingChannel<object, ReleaseContext>(CHANNELS.release);
export const driverCallChannel = diagnostics_channel.tracingChannel<object, DriverCallContext>(CHANNELS.driverCall);
export const sessionChannel = diagnostics_channel.channel(CHANNELS.session);
export const resyncChannel = diagnostics_channel.channel(CHANNELS.resync);
export const lostChannel = diagnostics_channel.channel(CHANNELS.lost);

/** Runs `fn` traced on `channel`, calling `settle` on the context before asyncEnd or error are published. */
export function traced<T, C extends object>(
  channel: diagnostics_channel.TracingChannel<object, C>,
  context: C,
  fn: () => Promise<T>,
  settle: (context: C, value: T | undefined) => void,
): Promise<T> {
  return channel.tracePromise(async () => {
    try {
      const value = await fn();
      settle(context, value);
      return value;
    } catch (error) {
      settle(context, undefined);
      throw error;
    }
  }, context);
}

/** The Driver steps that talk to the backend (close and destroy excepted), traced as `concord:driver:call`. */
const CALLS = [
  'openSession',
  'renewSession',
  'closeSession',
  'createGroup',
  'deleteGroup',
  'listGroups',
  'joinGroup',
  'leaveGroup',
  'updateMember',
  'getMembers',
  'watchGroup',
  'tryLock',
  'unlock',
  'cancelLock',
  'lockHolder',
  'listLocks',
  'watchLock',
  'acquireLock',
] as const;

/**
 * The driver, with each backend request published on `concord:driver:call` while anyone subscribes. When nobody
 * does, a call costs one extra function call and a property read. Every step is forwarded to the driver itself, so
 * its private state is untouched.
 */
export function traceDriver(driver: Driver, name: string): Driver {
  const methods = driver as unknown as Record<string, ((...args: unknown[]) => Promise<unknown>) | undefined>;
  const traced: Record<string, unknown> = {
    get features() {
      return driver.features;
    },
    get pollIntervalMs() {
      return driver.pollIntervalMs;
    },
    close: () => driver.close(),
    destroy: () => {
      driver.destroy();
    },
  };
  for (const op of CALLS) {
    const method = methods[op];
    if (typeof method !== 'function') continue;
    traced[op] = (...args: unknown[]): Promise<unknown> => {
      if (!driverCallChannel.hasSubscribers) return method.apply(driver, args);
      const started = performance.now();
      const context: DriverCallContext = { driver: name, op };
      return driverCallChannel.tracePromise(async () => {
        try {
          return await method.apply(driver, args);
        } finally {
          context.ms = performance.now() - started;
        }
      }, context);
    };
  }
  return traced as unknown as Driver;
}
