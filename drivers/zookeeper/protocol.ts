/**
 * The parts of `node-zookeeper-client` the driver uses, typed. The driver speaks to the server through the client's
 * connection manager and jute records directly: the client's own calls hide the reply header (whose zxid is a created
 * node's czxid: the fencing token, with no extra round trip) and misreport which op of a failed multi failed.
 */
import type { EventEmitter } from 'node:events';
import type { Socket } from 'node:net';

/** A jute record: fields by name, serialised by the client. */
export type JuteRecord = Record<string, unknown> & { setChrootPath?(path: string | undefined): void };

export interface JuteModule {
  readonly OP_CODES: Readonly<
    Record<'CREATE' | 'DELETE' | 'EXISTS' | 'GET_DATA' | 'SET_DATA' | 'GET_CHILDREN2' | 'CHECK' | 'MULTI' | 'ERROR', number>
  >;
  readonly protocol: Readonly<Record<string, new () => JuteRecord>>;
  readonly Request: new (header: JuteRecord, payload: unknown) => JuteRequest;
  readonly TransactionRequest: new (ops: readonly TransactionOp[]) => unknown;
}

/** A request as the client queues it: serialised by toBuffer() when it is written. */
export interface JuteRequest {
  readonly header: JuteRecord;
  toBuffer(): Buffer;
}

/** One op of a multi, in the shape the client's TransactionRequest reads. */
export interface TransactionOp {
  readonly type: number;
  readonly path: string;
  readonly data?: Buffer;
  readonly acls?: readonly AclEntry[];
  readonly mode?: number;
  readonly version?: number;
}

export interface AclEntry {
  toRecord(): unknown;
}

export interface Stat {
  readonly czxid: Buffer;
  readonly mzxid: Buffer;
  /** When the node was created: ms since the epoch, by the server's wall clock. */
  readonly ctime: Buffer;
  readonly version: number;
  readonly cversion: number;
  readonly ephemeralOwner: Buffer;
  readonly numChildren: number;
  readonly pzxid: Buffer;
}

export interface ReplyHeader {
  readonly xid: number;
  readonly zxid: Buffer;
  readonly err: number;
}

export interface Reply {
  readonly header: ReplyHeader;
  readonly payload: JuteRecord | null;
}

export interface ZkException {
  getCode(): number;
  readonly message: string;
}

export interface ConnectionManager extends EventEmitter {
  state: number;
  socket: Socket | undefined;
  connectTimeoutHandler: NodeJS.Timeout | null;
  findNextServer(callback: (server: unknown) => void): void;
  connect(): void;
  setState(state: number): void;
  queue(request: unknown, callback: (error: ZkException | null | undefined, reply: Reply) => void): void;
  registerDataWatcher(path: string, watcher: (event: unknown) => void): void;
  registerChildWatcher(path: string, watcher: (event: unknown) => void): void;
  registerExistenceWatcher(path: string, watcher: (event: unknown) => void): void;
}

export interface ZkClient extends EventEmitter {
  readonly connectionManager: ConnectionManager;
  connect(): void;
  close(): void;
  getSessionId(): Buffer;
  getSessionTimeout(): number;
  addAuthInfo(scheme: string, auth: Buffer): void;
}

export interface ZkModule {
  createClient(connectionString: string, options: { sessionTimeout: number; spinDelay: number; retries: number }): ZkClient;
  readonly ACL: { readonly OPEN_ACL_UNSAFE: readonly AclEntry[]; readonly CREATOR_ALL_ACL: readonly AclEntry[] };
}

/** ConnectionManager.STATES */
export const STATES = Object.freeze({
  DISCONNECTED: 0,
  CONNECTING: 1,
  CONNECTED: 2,
  CONNECTED_READ_ONLY: 3,
  CLOSING: -1,
  CLOSED: -2,
  SESSION_EXPIRED: -3,
  AUTHENTICATION_FAILED: -4,
});

/** ZooKeeper's error codes (KeeperException.Code). */
export const CODES = Object.freeze({
  OK: 0,
  ROLLED_BACK: -2,
  CONNECTION_LOSS: -4,
  NO_NODE: -101,
  NO_AUTH: -102,
  BAD_VERSION: -103,
  NODE_EXISTS: -110,
  NOT_EMPTY: -111,
  SESSION_EXPIRED: -112,
  AUTH_FAILED: -115,
});

/**
 * CreateMode. A container (ZooKeeper 3.5.3+) is a persistent node the server deletes once it has had children and
 * has none left (its container manager looks every `znode.container.checkIntervalMs`, a minute by default).
 */
export const MODES = Object.freeze({ PERSISTENT: 0, EPHEMERAL: 1, PERSISTENT_SEQUENTIAL: 2, EPHEMERAL_SEQUENTIAL: 3, CONTAINER: 4 });

/** The op code of createContainer, which the client does not know (a CreateRequest with a Create2Response). */
export const OP_CREATE_CONTAINER = 19;

/** A zxid or session id (8 bytes, big-endian) as a bigint. */
export function long(buffer: Buffer): bigint {
  return buffer.readBigInt64BE(0);
}
