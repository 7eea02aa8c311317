/**
 * memory://NAME — coordinators of one process connected to the same NAME share state. Every feature, pushed changes,
 * fair locks. `memoryFaults()` lets tests cut a coordinator's link or expire its session, so the core's suspended,
 * lost and restored paths run without a real backend.
 *
 * @module concord/drivers/memory
 */
import { ConcordError } from '../../src/errors.js';
import type { Driver, DriverContext, DriverGroupEvent, LockKind, Revision, Unsubscribe, WatchSink } from '../../src/driver.js';
import type { Capabilities, Coordinator, Features } from '../../src/types.js';
import { MemoryServer, type ServerClient } from './server.js';

/** What the memory driver offers: everything, within one process. */
export const features: Features = Object.freeze({
  scope: 'process',
  groups: true,
  election: true,
  fencing: true,
  watch: 'push',
  fairLocks: true,
});

function toError(error: unknown): Error {
  return error instanceof Error ? error : new Error(String(error));
}

/** Session id -> the driver that opened it, so tests can reach a coordinator's link. */
const bySession = new Map<string, MemoryDriver>();

class MemoryDriver implements Driver, ServerClient {
  readonly features = features;
  readonly #server: MemoryServer;
  readonly #context: DriverContext;
  #link: 'up' | 'down' | 'blackhole' = 'up';
  /** Until when (performance.now()) the server answers nothing, as a stalled server would; then it catches up. */
  #stalledUntil = 0;
  #state: 'open' | 'closed' | 'destroyed' = 'open';
  readonly #sinks = new Set<WatchSink>();
  readonly #lockListeners = new Set<() => void>();

  constructor(context: DriverContext, server: MemoryServer) {
    this.#context = context;
    this.#server = server;
  }

  get reachable(): boolean {
    return this.#link === 'up' && this.#state === 'open';
  }

  sessionExpired(sessionId: string): void {
    this.#context.events.sessionExpired(sessionId);
  }

  /**
   * Every request goes through here: a down link fails like a dropped connection would, and the answer arrives on a
   * later turn of the event loop, as from a network, so timers (heartbeats, expiries) run even in a tight loop.
   */
  #call<T>(fn: () => T): Promise<Awaited<T>> {
    return new Promise<Awaited<T>>((resolve, reject) => {
      const answer = (): void => {
        const stalledMs = this.#stalledUntil - performance.now();
        if (stalledMs > 0) {
          setTimeout(answer, stalledMs);
          return;
        }
        if (this.#state !== 'open') reject(new ConcordError('ERR_CONNECTION', 'the connection is closed'));
        else if (this.#link === 'down') reject(new ConcordError('ERR_CONNECTION', 'the memory link is down'));
        else if (this.#link === 'blackhole')
          return; // a partition that swallows requests: no answer, ever
        else {
          try {
            Promise.resolve(fn()).then(resolve, reject);
          } catch (error) {
            reject(toError(error));
          }
        }
      };
      setImmediate(answer);
    });
  }

  stall(ms: number): void {
    this.#stalledUntil = performance.now() + ms;
  }

  // ---- faults (tests)

  setLink(link: 'up' | 'down' | 'blackhole'): void {
    if (this.#link === link) return;
    this.#link = link;
    const up = link === 'up';
    // Pushes were dropped while the link was down: every watch resynchronises and every waiter re-checks.
    if (up) {
      for (const sink of this.#sinks) sink.resync();
      for (const listener of this.#lockListeners) listener();
    }
  }

  get server(): MemoryServer {
    return this.#server;
  }

  // ---- sessions

  openSession(ttlMs: number): Promise<string> {
    return this.#call(() => {
      const id = this.#server.openSession(ttlMs, this);
      bySession.set(id, this);
      return id;
    });
  }

  renewSession(sessionId: string): Promise<boolean> {
    return this.#call(() => this.#server.renewSession(sessionId));
  }

  closeSession(sessionId: string): Promise<void> {
    return this.#call(() => {
      bySession.delete(sessionId);
      this.#server.closeSession(sessionId);
    });
  }

  close(): Promise<void> {
    this.#forget();
    if (this.#state === 'open') {
      this.#state = 'closed';
      this.#server.detach();
    }
    return Promise.resolve();
  }

  destroy(): void {
    this.#forget();
    if (this.#state !== 'open') return;
    this.#state = 'destroyed';
    this.#server.detach();
  }

  #forget(): void {
    for (const [id, driver] of bySession) if (driver === this) bySession.delete(id);
  }

  // ---- groups

  createGroup(group: string): Promise<void> {
    return this.#call(() => {
      this.#server.createGroup(group);
    });
  }

  deleteGroup(group: string): Promise<void> {
    return this.#call(() => {
      this.#server.deleteGroup(group);
    });
  }

  listGroups(): Promise<string[]> {
    return this.#call(() => this.#server.listGroups());
  }

  joinGroup(group: string, member: string, sessionId: string, capabilities: Capabilities, create: boolean): Promise<void> {
    return this.#call(() => {
      this.#server.join(group, member, sessionId, capabilities, create);
    });
  }

  leaveGroup(group: string, member: string): Promise<void> {
    return this.#call(() => {
      this.#server.leave(group, member);
    });
  }

  updateMember(group: string, member: string, capabilities: Capabilities): Promise<void> {
    return this.#call(() => {
      this.#server.update(group, member, capabilities);
    });
  }

  getMembers(group: string): Promise<{ exists: boolean; members: Array<{ id: string; capabilities: Capabilities }>; revision: bigint }> {
    return this.#call(() => this.#server.snapshot(group));
  }

  watchGroup(group: string, fromRevision: Revision, sink: WatchSink): Promise<Unsubscribe> {
    return this.#call(() => {
      const own: WatchSink = {
        event: (event: DriverGroupEvent) => {
          sink.event(event);
        },
        resync: () => {
          sink.resync();
        },
      };
      this.#sinks.add(own);
      const stop = this.#server.watch(group, BigInt(fromRevision), this, own);
      return () => {
        this.#sinks.delete(own);
        stop();
      };
    });
  }

  // ---- locks

  tryLock(kind: LockKind, name: string, sessionId: string, member: string): Promise<bigint | undefined> {
    return this.#call(() => this.#server.tryLock(kind, name, sessionId, member));
  }

  acquireLock(kind: LockKind, name: string, sessionId: string, member: string, signal: AbortSignal, queued: () => void): Promise<bigint> {
    return this.#call(() => this.#server.acquire(kind, name, sessionId, member, signal, queued, this));
  }

  unlock(kind: LockKind, name: string, sessionId: string, token: bigint): Promise<void> {
    return this.#call(() => {
      this.#server.unlock(kind, name, sessionId, token);
    });
  }

  cancelLock(kind: LockKind, name: string, sessionId: string): Promise<void> {
    return this.#call(() => {
      this.#server.cancel(kind, name, sessionId);
    });
  }

  lockHolder(kind: LockKind, name: string): Promise<{ member: string; token: bigint } | undefined> {
    return this.#call(() => this.#server.holder(kind, name));
  }

  watchLock(kind: LockKind, name: string, listener: () => void): Promise<Unsubscribe> {
    return this.#call(() => {
      this.#lockListeners.add(listener);
      const stop = this.#server.watchLock(kind, name, this, listener);
      return () => {
        this.#lockListeners.delete(listener);
        stop();
      };
    });
  }
}

/** memory://NAME: the name is everything between the scheme and the query. */
function serverName(url: URL): string {
  const name = decodeURIComponent(url.host + url.pathname).replace(/\/+$/, '');
  return name === '' ? 'default' : name;
}

/** The memory driver for `memory://NAME`; `connect()` calls it. */
export function createDriver(context: DriverContext): Promise<Driver> {
  return Promise.resolve(new MemoryDriver(context, MemoryServer.attach(serverName(context.url), context.namespace)));
}

/** Faults to inject into one memory:// coordinator's link to its in-process server; from `memoryFaults()`. */
export interface MemoryFaults {
  /** Cut the coordinator's link: its requests fail and nothing is pushed to it, while its session ages on the server. */
  disconnect(): void;
  /** Swallow the coordinator's requests: nothing it sends is answered, as in a partition that drops packets. */
  blackhole(): void;
  /** Restore the link; watches resynchronise and waiters re-check. */
  reconnect(): void;
  /** Expire the session on the server now, as a TTL running out would; the client is told first if its link is up. */
  expire(): void;
  /** End the session on the server without telling anyone, as a restart that lost its data would. */
  forget(): void;
  /** Answer nothing the coordinator sends for `ms`, then everything, as a server stalled that long would. */
  stall(ms: number): void;
}

/** Fault controls for a coordinator connected with memory://. For tests. */
export function memoryFaults(coordinator: Coordinator): MemoryFaults {
  const driver = bySession.get(coordinator.session.id);
  if (!driver) throw new ConcordError('ERR_INVALID_ARGUMENT', 'coordinator has no live memory session');
  return {
    disconnect: () => {
      driver.setLink('down');
    },
    blackhole: () => {
      driver.setLink('blackhole');
    },
    reconnect: () => {
      driver.setLink('up');
    },
    // The session id is read at call time: after a lost session the coordinator runs a new one on the same driver.
    expire: () => {
      driver.server.expireSession(coordinator.session.id);
    },
    forget: () => {
      driver.server.closeSession(coordinator.session.id);
    },
    stall: (ms) => {
      driver.stall(ms);
    },
  };
}
