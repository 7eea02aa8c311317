/**
 * The memory driver's implementation: a client of the in-process MemoryServer whose link can be cut, swallowed or
 * stalled (the faults tests use), with every answer arriving on a later turn of the event loop, as from a network.
 */
import { ConcordError } from '../../src/errors.js';
import type {
  Driver,
  DriverContext,
  DriverGroupEvent,
  LockHolder,
  LockKind,
  LockListing,
  LockMode,
  Revision,
  Unsubscribe,
  WatchSink,
} from '../../src/driver.js';
import type { Capabilities } from '../../src/types.js';
import { features } from './index.js';
import { MemoryServer, type ServerClient } from './server.js';

function toError(error: unknown): Error {
  return error instanceof Error ? error : new Error(String(error));
}

export class MemoryDriver implements Driver, ServerClient {
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
      return this.#server.openSession(ttlMs, this);
    });
  }

  renewSession(sessionId: string): Promise<boolean> {
    return this.#call(() => this.#server.renewSession(sessionId));
  }

  closeSession(sessionId: string): Promise<void> {
    return this.#call(() => {
      this.#server.closeSession(sessionId);
    });
  }

  close(): Promise<void> {
    if (this.#state === 'open') {
      this.#state = 'closed';
      this.#server.detach();
    }
    return Promise.resolve();
  }

  destroy(): void {
    if (this.#state !== 'open') return;
    this.#state = 'destroyed';
    this.#server.detach();
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

  tryLock(kind: LockKind, name: string, sessionId: string, member: string, mode?: LockMode): Promise<bigint | undefined> {
    return this.#call(() => this.#server.tryLock(kind, name, sessionId, member, mode));
  }

  acquireLock(
    kind: LockKind,
    name: string,
    sessionId: string,
    member: string,
    signal: AbortSignal,
    queued: () => void,
    mode?: LockMode,
  ): Promise<bigint> {
    return this.#call(() => this.#server.acquire(kind, name, sessionId, member, signal, queued, this, mode));
  }

  unlock(kind: LockKind, name: string, sessionId: string, token: bigint): Promise<void> {
    return this.#call(() => {
      this.#server.unlock(kind, name, sessionId, token);
    });
  }

  cancelLock(kind: LockKind, name: string, sessionId: string, slot?: number): Promise<void> {
    return this.#call(() => {
      this.#server.cancel(kind, name, sessionId, slot);
    });
  }

  lockHolder(kind: LockKind, name: string): Promise<LockHolder | undefined> {
    return this.#call(() => this.#server.holder(kind, name));
  }

  lockHolders(kind: LockKind, name: string): Promise<LockHolder[]> {
    return this.#call(() => this.#server.holders(kind, name));
  }

  listLocks(kind: LockKind | undefined, prefix: string): Promise<LockListing[]> {
    return this.#call(() => this.#server.listLocks(kind, prefix));
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

/** Opens a memory driver for one connect(). */
export function createDriver(context: DriverContext): Promise<Driver> {
  return Promise.resolve(new MemoryDriver(context, MemoryServer.attach(serverName(context.url), context.namespace)));
}

/** Faults to inject into one memory:// coordinator's link to its in-process server; from `memoryFaults()`. */
