/**
 * The ZooKeeper driver: one ZooKeeper session per concord session, each on its own client connection. The session's
 * own events drive the core: Disconnected is `suspended` at once (linkDown), SyncConnected renews at once (linkUp:
 * `reconnected` as soon as the server confirms the session), Expired is `lost` at once. Requests made while the link
 * is down fail with ERR_CONNECTION.
 */
import { EventEmitter } from 'node:events';
import { importClient } from '../../src/client.js';
import { ConcordError } from '../../src/errors.js';
import { debug } from '../../src/debug.js';
import type {
  Driver,
  DriverContext,
  GroupSnapshot,
  LockHolder,
  LockKind,
  LockListing,
  LockMode,
  Revision,
  Unsubscribe,
  WatchSink,
} from '../../src/driver.js';
import { connectionClosed, sessionGone } from '../../src/kit/index.js';
import type { Capabilities } from '../../src/types.js';
import { zookeeperConfig, type ZooKeeperConfig } from './config.js';
import { Connection, type Libraries } from './connection.js';
import { ensure, GroupStore } from './groups.js';
import { features } from './index.js';
import { LockStore } from './locks.js';
import { Paths } from './paths.js';
import type { JuteModule, ZkModule } from './protocol.js';
import { LogWatch } from './watch.js';

export class ZooKeeperDriver implements Driver {
  readonly features = features;
  readonly #context: DriverContext;
  readonly #config: ZooKeeperConfig;
  readonly #libraries: Libraries;
  readonly #paths: Paths;
  readonly #groups: GroupStore;
  readonly #locks: LockStore;
  /** Open sessions by id; the newest is the one requests without a session go through. */
  readonly #connections = new Map<string, Connection>();
  /** Every session this driver opened: a membership one of them left behind is ours to replace. */
  readonly #sessions = new Set<string>();
  #current: Connection | undefined;
  /** 'link': the current connection changed or came back; readers re-arm their watches. */
  readonly #link = new EventEmitter();
  #closed = false;

  constructor(context: DriverContext, config: ZooKeeperConfig, libraries: Libraries) {
    this.#context = context;
    this.#config = config;
    this.#libraries = libraries;
    this.#paths = new Paths(config.chroot, context.namespace);
    this.#groups = new GroupStore(this.#paths);
    this.#locks = new LockStore(this.#paths, context.events);
    this.#link.setMaxListeners(0);
  }

  // ---- the order of snapshot reads and later writes

  /**
   * Snapshots (members, lock holder) in flight. A write this driver is asked for meanwhile waits for them: a
   * snapshot takes several round trips, and one taken before a change in program order must not already contain it
   * (a watch started, then an update, must report the update as an event).
   */
  readonly #snapshots = new Set<Promise<unknown>>();

  #snapshot<T>(read: Promise<T>): Promise<T> {
    const settled = read.then(
      () => undefined,
      () => undefined,
    );
    this.#snapshots.add(settled);
    void settled.then(() => this.#snapshots.delete(settled));
    return read;
  }

  async #afterSnapshots(): Promise<void> {
    if (this.#snapshots.size > 0) await Promise.all([...this.#snapshots]);
  }

  // ---- sessions

  async openSession(ttlMs: number): Promise<string> {
    if (this.#closed) throw connectionClosed('ZooKeeper');
    const connection = await Connection.open(
      this.#libraries,
      { connectionString: this.#config.connectionString, hostCount: this.#config.hostCount, ttlMs, digest: this.#config.digest },
      this.#context.signal.aborted ? AbortSignal.timeout(this.#context.connectTimeoutMs) : this.#context.signal,
    );
    const granted = connection.timeoutMs;
    if (granted !== ttlMs) {
      await connection.close(ttlMs);
      // The server clamps the timeout to its minSessionTimeout..maxSessionTimeout (2..20 x tickTime by default).
      const bound = granted > ttlMs ? `at least ${granted} ms` : `at most ${granted} ms`;
      throw new ConcordError(
        'ERR_INVALID_ARGUMENT',
        `sessionTtlMs must be ${bound} on this ZooKeeper ensemble (its minSessionTimeout..maxSessionTimeout range, 2 to 20 x tickTime unless configured), got ${ttlMs}`,
      );
    }
    try {
      await ensure(connection, this.#paths.root);
      // An existing namespace made by another user: refused now (ERR_REFUSED), not at first use.
      await connection.getChildren(this.#paths.root);
    } catch (error) {
      await connection.close(ttlMs);
      throw error;
    }
    const id = connection.id;
    connection.on('expired', () => {
      this.#context.events.sessionExpired(id);
    });
    // The client's link state drives the session's: Disconnected is `suspended` at once, SyncConnected renews at once.
    connection.on('disconnected', () => {
      if (this.#current === connection && !connection.closed) this.#context.events.linkDown?.();
    });
    connection.on('connected', () => {
      if (this.#current !== connection) return;
      this.#context.events.linkUp?.();
      this.#link.emit('link');
    });
    this.#connections.set(id, connection);
    this.#sessions.add(id);
    this.#current = connection;
    this.#link.emit('link');
    debug('zookeeper session %s opened (timeout %d ms)', id, granted);
    return id;
  }

  async renewSession(sessionId: string): Promise<boolean> {
    const connection = this.#connections.get(sessionId);
    if (!connection || connection.expired) return false;
    // Any request resets the session's timer on the server; this one is as cheap as they come.
    await connection.exists(this.#paths.root);
    return true;
  }

  async closeSession(sessionId: string): Promise<void> {
    const connection = this.#connections.get(sessionId);
    if (!connection) return;
    this.#connections.delete(sessionId);
    if (this.#current === connection) this.#current = undefined;
    this.#locks.forget(sessionId);
    await connection.close(Math.min(connection.timeoutMs, 2000));
  }

  async close(): Promise<void> {
    this.#closed = true;
    this.#link.emit('closed');
    const open = [...this.#connections.values()];
    this.#connections.clear();
    this.#current = undefined;
    await Promise.all(open.map((c) => c.close(Math.min(c.timeoutMs, 2000))));
  }

  destroy(): void {
    this.#closed = true;
    this.#link.emit('closed');
    for (const connection of this.#connections.values()) connection.destroy();
    this.#connections.clear();
    this.#current = undefined;
  }

  /**
   * The connection for requests that need no particular session. Between a lost session and its replacement there
   * is none: such a request waits for the replacement, as long as opening one may take.
   */
  async #any(): Promise<Connection> {
    if (this.#closed) throw connectionClosed('ZooKeeper');
    if (this.#current) return this.#current;
    await new Promise<void>((resolve, reject) => {
      const done = (): void => {
        clearTimeout(timer);
        this.#link.off('link', onLink);
        this.#link.off('closed', onLink);
      };
      const onLink = (): void => {
        done();
        resolve();
      };
      const timer = setTimeout(() => {
        done();
        reject(new ConcordError('ERR_CONNECTION', 'no ZooKeeper session is open'));
      }, this.#context.connectTimeoutMs);
      this.#link.on('link', onLink);
      this.#link.on('closed', onLink);
    });
    return this.#any();
  }

  #assertOpen(): void {
    if (this.#closed) throw connectionClosed('ZooKeeper');
  }

  #session(sessionId: string): Connection {
    if (this.#closed) throw connectionClosed('ZooKeeper');
    const connection = this.#connections.get(sessionId);
    if (!connection || connection.expired) throw sessionGone();
    return connection;
  }

  // ---- groups

  async createGroup(group: string): Promise<void> {
    await this.#afterSnapshots();
    await this.#groups.create(await this.#any(), group);
  }

  async deleteGroup(group: string): Promise<void> {
    await this.#afterSnapshots();
    await this.#groups.delete(await this.#any(), group);
  }

  async listGroups(): Promise<string[]> {
    return this.#groups.list(await this.#any());
  }

  async joinGroup(group: string, member: string, sessionId: string, capabilities: Capabilities, create: boolean): Promise<void> {
    await this.#afterSnapshots();
    const connection = this.#session(sessionId);
    const past = new Set([...this.#sessions].filter((s) => s !== sessionId));
    await this.#groups.join(connection, group, member, capabilities, create, past);
  }

  async leaveGroup(group: string, member: string): Promise<void> {
    await this.#afterSnapshots();
    await this.#groups.leave(await this.#any(), group, member);
  }

  async updateMember(group: string, member: string, capabilities: Capabilities): Promise<void> {
    await this.#afterSnapshots();
    await this.#groups.update(await this.#any(), group, member, capabilities);
  }

  async getMembers(group: string): Promise<GroupSnapshot> {
    return this.#snapshot(this.#any().then((connection) => this.#groups.snapshot(connection, group)));
  }

  watchGroup(group: string, fromRevision: Revision, sink: WatchSink): Promise<Unsubscribe> {
    this.#assertOpen();
    const revision = String(fromRevision);
    const watch = new LogWatch({
      path: this.#paths.group(group),
      group,
      revision,
      members: this.#groups.claim(revision),
      sink,
      connection: () => this.#current,
    });
    this.#link.on('link', watch.read);
    watch.read();
    return Promise.resolve(() => {
      watch.stop();
      this.#link.off('link', watch.read);
    });
  }

  // ---- locks

  async tryLock(kind: LockKind, name: string, sessionId: string, member: string, mode?: LockMode): Promise<bigint | undefined> {
    await this.#afterSnapshots();
    return this.#locks.tryLock(this.#session(sessionId), kind, name, member, mode);
  }

  async acquireLock(
    kind: LockKind,
    name: string,
    sessionId: string,
    member: string,
    signal: AbortSignal,
    queued: () => void,
    mode?: LockMode,
  ): Promise<bigint> {
    await this.#afterSnapshots();
    return this.#locks.acquireLock(this.#session(sessionId), kind, name, member, signal, queued, mode);
  }

  async unlock(kind: LockKind, name: string, sessionId: string, token: bigint, slot?: number): Promise<void> {
    await this.#afterSnapshots();
    await this.#locks.unlock(this.#connections.get(sessionId), kind, name, sessionId, token, slot);
  }

  async cancelLock(kind: LockKind, name: string, sessionId: string, slot?: number): Promise<void> {
    await this.#locks.cancelLock(this.#connections.get(sessionId), kind, name, slot);
  }

  async lockHolder(kind: LockKind, name: string): Promise<LockHolder | undefined> {
    return this.#snapshot(this.#any().then((connection) => this.#locks.holder(connection, kind, name)));
  }

  async lockHolders(kind: LockKind, name: string): Promise<LockHolder[]> {
    return this.#snapshot(this.#any().then((connection) => this.#locks.holders(connection, kind, name)));
  }

  async listLocks(kind: LockKind | undefined, prefix: string): Promise<LockListing[]> {
    return this.#locks.list(await this.#any(), kind === undefined ? ['lock', 'leader', 'semaphore'] : [kind], prefix);
  }

  watchLock(kind: LockKind, name: string, listener: () => void): Promise<Unsubscribe> {
    this.#assertOpen();
    let stopped = false;
    const fire = (): void => {
      if (stopped) return;
      listener();
      arm();
    };
    const arm = (): void => {
      const connection = this.#current;
      if (stopped || !connection?.connected) return;
      this.#locks.watch(connection, kind, name, fire).catch((error: unknown) => {
        debug('zookeeper: watching %s "%s" failed: %s', kind, name, (error as Error).message);
      });
    };
    this.#link.on('link', fire);
    arm();
    return Promise.resolve(() => {
      stopped = true;
      this.#link.off('link', fire);
    });
  }
}

/** Opens a ZooKeeper driver for one connect(). */
export async function createDriver(context: DriverContext): Promise<Driver> {
  const config = zookeeperConfig(context);
  const module = await importClient<{ default: ZkModule }>('node-zookeeper-client', 'zookeeper');
  const jute = await importClient<{ default: JuteModule }>('node-zookeeper-client/lib/jute/index.js', 'zookeeper');
  return new ZooKeeperDriver(context, config, { zk: module.default, jute: jute.default });
}
