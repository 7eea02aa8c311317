/**
 * One ZooKeeper session: a `node-zookeeper-client` client, promise requests on it, and its fate (connected,
 * disconnected, expired, closed) told to the driver.
 *
 * Requests made while the link is down fail at once with ERR_CONNECTION instead of queueing until it is back: the
 * core decides what to retry and when. A closed connection never reconnects and leaves no socket or timer behind.
 */
import { EventEmitter } from 'node:events';
import { ConcordError } from '../../src/errors.js';
import { debug } from '../../src/debug.js';
import {
  CODES,
  MODES,
  OP_CREATE_CONTAINER,
  STATES,
  long,
  type AclEntry,
  type JuteModule,
  type JuteRecord,
  type Reply,
  type Stat,
  type TransactionOp,
  type ZkClient,
  type ZkException,
  type ZkModule,
} from './protocol.js';

/** A request the server refused: its ZooKeeper error code, for the caller to read. */
export class ZkError extends Error {
  constructor(
    readonly code: number,
    message: string,
  ) {
    super(message);
    this.name = 'ZkError';
  }
}

export function isCode(error: unknown, code: number): boolean {
  return error instanceof ZkError && error.code === code;
}

/** What a failed request becomes: ZkError for a refusal the caller handles, ConcordError for the rest. */
function failure(exception: ZkException, what: string): Error {
  const code = exception.getCode();
  switch (code) {
    case CODES.CONNECTION_LOSS:
      return new ConcordError('ERR_CONNECTION', `the ZooKeeper connection was lost during ${what}`);
    case CODES.SESSION_EXPIRED:
      return new ConcordError('ERR_SESSION_LOST', 'the ZooKeeper session has expired');
    case CODES.NO_AUTH:
    case CODES.AUTH_FAILED:
      return new ConcordError('ERR_REFUSED', `ZooKeeper refused ${what}: ${exception.message}`);
    default:
      return new ZkError(code, `ZooKeeper ${what}: ${exception.message}`);
  }
}

interface SendOptions {
  readonly settled?: (code: number) => void;
  readonly sentAs?: number;
}

export interface Libraries {
  readonly zk: ZkModule;
  readonly jute: JuteModule;
}

export interface ConnectionOptions {
  readonly connectionString: string;
  readonly hostCount: number;
  readonly ttlMs: number;
  readonly digest: Buffer | undefined;
}

/**
 * Events: 'connected' (the link is up, first time or again: re-arm watches, re-check waits), 'disconnected',
 * 'expired' (the server says the session is gone), 'closed'.
 */
export class Connection extends EventEmitter {
  readonly #client: ZkClient;
  readonly #jute: JuteModule;
  readonly acl: readonly AclEntry[];
  #closed = false;
  #expired = false;
  #id = '';
  #links = 0;

  private constructor(libraries: Libraries, options: ConnectionOptions) {
    super();
    this.#jute = libraries.jute;
    this.acl = options.digest ? libraries.zk.ACL.CREATOR_ALL_ACL : libraries.zk.ACL.OPEN_ACL_UNSAFE;
    // After trying every server the client waits up to spinDelay before the next round: short, so a member that
    // comes back is found well within a session timeout.
    this.#client = libraries.zk.createClient(options.connectionString, {
      sessionTimeout: options.ttlMs,
      spinDelay: Math.min(200, options.ttlMs / 10),
      retries: 0,
    });
    const manager = this.#client.connectionManager;
    // A closed connection must never dial again, also from a retry the client had already scheduled.
    const findNextServer = manager.findNextServer.bind(manager);
    manager.findNextServer = (callback) => {
      findNextServer((server) => {
        if (!this.#closed) callback(server);
      });
    };
    if (options.digest) this.#client.addAuthInfo('digest', options.digest);
    manager.on('state', (state: number) => {
      this.#onState(state);
    });
  }

  /** Connects (a new session) and resolves once it is usable; rejects on abort, expiry or a refused login. */
  static async open(libraries: Libraries, options: ConnectionOptions, signal: AbortSignal): Promise<Connection> {
    const connection = new Connection(libraries, options);
    try {
      await connection.#connect(signal);
    } catch (error) {
      connection.destroy();
      throw error;
    }
    return connection;
  }

  #connect(signal: AbortSignal): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const done = (): void => {
        this.off('connected', onConnected);
        this.off('expired', onFailed);
        this.off('closed', onFailed);
        signal.removeEventListener('abort', onAbort);
      };
      const onConnected = (): void => {
        done();
        resolve();
      };
      const onFailed = (): void => {
        done();
        reject(
          this.#client.connectionManager.state === STATES.AUTHENTICATION_FAILED
            ? new ConcordError('ERR_REFUSED', 'ZooKeeper refused the user name and password')
            : new ConcordError('ERR_CONNECTION', 'the ZooKeeper session ended while connecting'),
        );
      };
      const onAbort = (): void => {
        done();
        reject(signal.reason instanceof Error ? signal.reason : new ConcordError('ERR_ABORTED', 'connecting was aborted'));
      };
      if (signal.aborted) {
        onAbort();
        return;
      }
      this.on('connected', onConnected);
      this.on('expired', onFailed);
      this.on('closed', onFailed);
      signal.addEventListener('abort', onAbort, { once: true });
      this.#client.connect();
    });
  }

  #onState(state: number): void {
    switch (state) {
      case STATES.CONNECTED:
        this.#id = long(this.#client.getSessionId()).toString(16).padStart(16, '0');
        this.#links++;
        debug('zookeeper session %s connected', this.#id);
        this.emit('connected');
        break;
      case STATES.DISCONNECTED:
        if (!this.#closed) debug('zookeeper session %s disconnected', this.#id);
        this.emit('disconnected');
        break;
      case STATES.SESSION_EXPIRED:
        this.#expired = true;
        debug('zookeeper session %s expired', this.#id);
        this.emit('expired');
        break;
      case STATES.AUTHENTICATION_FAILED:
        this.emit('closed');
        break;
      case STATES.CLOSED:
        this.emit('closed');
        break;
      default:
        break;
    }
  }

  /** The session id, 16 hex digits: node names of this session's lock contenders start with it. */
  get id(): string {
    return this.#id;
  }

  /** Counts the times the link came up: a watch set on an earlier link may have missed events while it was down. */
  get links(): number {
    return this.#links;
  }

  /** The session timeout the server granted, ms. */
  get timeoutMs(): number {
    return this.#client.getSessionTimeout();
  }

  get connected(): boolean {
    return !this.#closed && this.#client.connectionManager.state === STATES.CONNECTED;
  }

  get expired(): boolean {
    return this.#expired;
  }

  get closed(): boolean {
    return this.#closed;
  }

  // ---- requests

  /**
   * Sends one request. `settled` runs inside the client's reply callback, before any other packet of the same read
   * is handled: a watch must be registered there, or a notification that arrived with the reply would find nobody.
   * `sentAs` is an op code the client does not know, sent on the wire in place of `type`, whose reply the client
   * then reads as `type`'s.
   */
  #send(type: number, payload: unknown, what: string, options: SendOptions = {}): Promise<Reply> {
    if (this.#expired) return Promise.reject(new ConcordError('ERR_SESSION_LOST', 'the ZooKeeper session has expired'));
    if (!this.connected) return Promise.reject(new ConcordError('ERR_CONNECTION', 'the ZooKeeper connection is down'));
    const { settled, sentAs } = options;
    const header = this.#record('RequestHeader', { type });
    const request = new this.#jute.Request(header, payload);
    if (sentAs !== undefined) {
      // The client picks the reply's record by the header's type when the reply comes, and frames replies by their
      // length, so a longer reply (createContainer's carries a stat after the path) is read as far as needed.
      const serialize = request.toBuffer.bind(request);
      request.toBuffer = () => {
        header.type = sentAs;
        try {
          return serialize();
        } finally {
          header.type = type;
        }
      };
    }
    return new Promise<Reply>((resolve, reject) => {
      this.#client.connectionManager.queue(request, (error, reply) => {
        settled?.(error ? error.getCode() : CODES.OK);
        if (error) reject(failure(error, what));
        else resolve(reply);
      });
    });
  }

  #record(name: string, fields: Record<string, unknown>): JuteRecord {
    const Record = this.#jute.protocol[name];
    if (!Record) throw new Error(`node-zookeeper-client has no jute record ${name}`);
    return Object.assign(new Record(), fields);
  }

  /**
   * Creates a node; resolves with its path and its czxid (the reply's zxid: the transaction that created it). A
   * container (MODES.CONTAINER, ZooKeeper 3.5.3+) is created with its own op, as the Java client does.
   */
  async create(path: string, data: Buffer, mode: number): Promise<{ path: string; czxid: bigint }> {
    const payload = this.#record('CreateRequest', { path, data, acl: this.acl.map((a) => a.toRecord()), flags: mode });
    const options = mode === MODES.CONTAINER ? { sentAs: OP_CREATE_CONTAINER } : {};
    const reply = await this.#send(this.#jute.OP_CODES.CREATE, payload, `create ${path}`, options);
    return { path: reply.payload?.path as string, czxid: long(reply.header.zxid) };
  }

  async delete(path: string, version = -1): Promise<void> {
    await this.#send(this.#jute.OP_CODES.DELETE, this.#record('DeleteRequest', { path, version }), `delete ${path}`);
  }

  /** The node's stat, or undefined; with `watcher`, told once when the node is created, changed or deleted. */
  async exists(path: string, watcher?: (event: unknown) => void): Promise<Stat | undefined> {
    const payload = this.#record('ExistsRequest', { path, watch: watcher !== undefined });
    try {
      const manager = this.#client.connectionManager;
      const reply = await this.#send(this.#jute.OP_CODES.EXISTS, payload, `exists ${path}`, {
        settled: (code) => {
          if (watcher && code === CODES.OK) manager.registerDataWatcher(path, watcher);
          else if (watcher && code === CODES.NO_NODE) manager.registerExistenceWatcher(path, watcher);
        },
      });
      return reply.payload?.stat as Stat;
    } catch (error) {
      if (!isCode(error, CODES.NO_NODE)) throw error;
      return undefined;
    }
  }

  async getData(path: string, watcher?: (event: unknown) => void): Promise<{ data: Buffer; stat: Stat }> {
    const payload = this.#record('GetDataRequest', { path, watch: watcher !== undefined });
    const manager = this.#client.connectionManager;
    const reply = await this.#send(this.#jute.OP_CODES.GET_DATA, payload, `get ${path}`, {
      settled: (code) => {
        if (watcher && code === CODES.OK) manager.registerDataWatcher(path, watcher);
      },
    });
    return { data: (reply.payload?.data as Buffer | undefined) ?? Buffer.alloc(0), stat: reply.payload?.stat as Stat };
  }

  /** The children's names and the node's stat; with `watcher`, told once when a child is created or deleted. */
  async getChildren(path: string, watcher?: (event: unknown) => void): Promise<{ children: string[]; stat: Stat }> {
    const payload = this.#record('GetChildren2Request', { path, watch: watcher !== undefined });
    const manager = this.#client.connectionManager;
    const reply = await this.#send(this.#jute.OP_CODES.GET_CHILDREN2, payload, `list ${path}`, {
      settled: (code) => {
        if (watcher && code === CODES.OK) manager.registerChildWatcher(path, watcher);
      },
    });
    return { children: reply.payload?.children as string[], stat: reply.payload?.stat as Stat };
  }

  /**
   * Runs ops atomically. A refusal rejects with the ZkError of the op that failed, with `index` set to it (the
   * server reports every other op as rolled back).
   */
  async multi(ops: readonly TransactionOp[]): Promise<Array<{ path?: string }>> {
    const payload = new this.#jute.TransactionRequest(ops.map((op) => ({ acls: this.acl, data: undefined, ...op })));
    const reply = await this.#send(this.#jute.OP_CODES.MULTI, payload, 'multi');
    const results = (reply.payload?.results ?? []) as Array<{ type: number; err?: number; path?: string }>;
    const index = results.findIndex((r) => r.type === this.#jute.OP_CODES.ERROR && r.err !== CODES.OK && r.err !== CODES.ROLLED_BACK);
    if (index >= 0) {
      const code = results[index]?.err ?? 0;
      if (code === CODES.NO_AUTH)
        throw new ConcordError('ERR_REFUSED', `ZooKeeper refused a multi: not authorised on ${ops[index]?.path ?? ''}`);
      throw Object.assign(new ZkError(code, `ZooKeeper multi failed at op ${index} (${ops[index]?.path ?? ''}): code ${code}`), { index });
    }
    return results;
  }

  // ---- ending

  /** Ends the session on the server (its ephemeral nodes go at once), then the connection. */
  async close(timeoutMs: number): Promise<void> {
    if (this.#closed) return;
    if (!this.connected) {
      this.destroy();
      return;
    }
    const manager = this.#client.connectionManager;
    await new Promise<void>((resolve) => {
      const timer = setTimeout(finish, timeoutMs);
      function finish(): void {
        clearTimeout(timer);
        manager.off('state', onState);
        resolve();
      }
      const onState = (state: number): void => {
        if (state === STATES.CLOSED || state === STATES.DISCONNECTED) finish();
      };
      manager.on('state', onState);
      this.#client.close();
    });
    this.destroy();
  }

  /** Drops the connection without telling the server: the session lives on there until it expires. */
  destroy(): void {
    if (this.#closed) return;
    this.#closed = true;
    const manager = this.#client.connectionManager;
    manager.connect = () => undefined;
    if (manager.connectTimeoutHandler) clearTimeout(manager.connectTimeoutHandler);
    manager.setState(STATES.CLOSING);
    manager.socket?.destroy();
    this.emit('closed');
  }
}
