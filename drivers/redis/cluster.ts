/**
 * redis+cluster://: every key of a namespace carries its hash tag `{namespace}`, so a namespace lives in one slot,
 * served by one master at a time (many namespaces spread over the masters). Each connection of the driver goes
 * straight to that master, found with CLUSTER SLOTS through any node of the url that answers, and follows it: a MOVED
 * reply or a lost connection makes it look again. A node of the url that serves the slot itself is reached by the
 * address the url gives (which works from here, whatever address the node announces: NAT, proxies). So the subscriber hears the keyspace notifications of the node that holds
 * the keys (they are not sent across a cluster), flushes are noticed, and blocking reads can be woken, as on a single
 * server; lock grants are PUBLISHed, which a cluster delivers on every node.
 *
 * The driver never sends ASKING. While the namespace's slot is being moved (CLUSTER SETSLOT ... MIGRATING, MIGRATE,
 * SETSLOT ... NODE) a script could see some of its keys on one node and the rest on the other, and Redis does not roll
 * back a script that fails half-way: so each script also names, as KEYS[2], a key that never exists, and the source
 * node answers ASK for the whole script before running any of it; the target answers MOVED to a client that does not
 * say ASKING. The namespace is unavailable (ERR_CONNECTION, retried like any outage) until the move is done, and
 * never half-updated or read half-moved.
 */
import { connect as netConnect } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import type { Redis as RedisClient, RedisOptions } from 'ioredis';
import type { NetStream } from 'ioredis/built/types.js';
import { debug } from '../../src/debug.js';
import { quiet, type RedisConstructor } from './connection.js';

export interface NodeAddress {
  readonly host: string;
  readonly port: number;
}

type ConnectorConstructor = NonNullable<RedisOptions['Connector']>;

const key = (address: NodeAddress): string => `${address.host}:${String(address.port)}`;

/**
 * Finds the master serving the namespace's slot; shared by the connections of one driver, so those connecting at the
 * same time ask once.
 */
export class SlotLocator {
  readonly #Redis: RedisConstructor;
  readonly #base: RedisOptions;
  readonly #routingKey: string;
  /** The url's nodes. */
  readonly #known: readonly NodeAddress[];
  /** Where a MOVED reply said the slot went: asked first next time. */
  #hint: NodeAddress | undefined;
  #slot: number | undefined;
  #last: NodeAddress | undefined;
  #pending: Promise<NodeAddress> | undefined;
  /** The master each connection (by its role) was last sent to. */
  readonly connectedTo = new Map<string, string>();

  constructor(Redis: RedisConstructor, base: RedisOptions, seeds: readonly NodeAddress[], routingKey: string) {
    this.#Redis = Redis;
    this.#base = base;
    this.#known = [...seeds];
    this.#routingKey = routingKey;
  }

  /** Notes where a `MOVED <slot> <host>:<port>` reply points. */
  moved(text: string): void {
    const match = /^MOVED \d+ (.*):(\d+)/.exec(text);
    if (match?.[1] !== undefined) this.#hint = { host: match[1] || '127.0.0.1', port: Number(match[2]) };
  }

  /**
   * The master of the slot; when no node can say, the last master found (or the url's first node), so the connection
   * fails or succeeds as a connection, and ioredis' reconnection (with its backoff) asks again: a connector that
   * rejected would end the client for good.
   */
  locate(): Promise<NodeAddress> {
    this.#pending ??= this.#locate()
      .then(
        (master) => {
          this.#last = master;
          return master;
        },
        (error: unknown) => {
          debug('redis cluster: %s', (error as Error).message);
          return this.#last ?? this.#known[0] ?? { host: '127.0.0.1', port: 6379 };
        },
      )
      .finally(() => {
        this.#pending = undefined;
      });
    return this.#pending;
  }

  async #locate(): Promise<NodeAddress> {
    const candidates = [...(this.#hint ? [this.#hint] : []), ...this.#known];
    this.#hint = undefined;
    const tried = new Set<string>();
    const failures: string[] = [];
    for (const candidate of candidates) {
      if (tried.has(key(candidate))) continue;
      tried.add(key(candidate));
      try {
        return await this.#ask(candidate);
      } catch (error) {
        failures.push(`${key(candidate)}: ${(error as Error).message}`);
      }
    }
    throw new Error(`no node of the cluster could name the master of the namespace's slot (${failures.join('; ')})`);
  }

  /** Asks one node which master serves the slot. */
  async #ask(node: NodeAddress): Promise<NodeAddress> {
    const timeoutMs = this.#base.connectTimeout ?? 1000;
    const client: RedisClient = new this.#Redis({
      ...(this.#base.username === undefined ? {} : { username: this.#base.username }),
      ...(this.#base.password === undefined ? {} : { password: this.#base.password }),
      ...(this.#base.tls === undefined ? {} : { tls: this.#base.tls }),
      host: node.host,
      port: node.port,
      connectTimeout: timeoutMs,
      commandTimeout: timeoutMs,
      lazyConnect: true,
      enableOfflineQueue: false,
      enableReadyCheck: false,
      maxRetriesPerRequest: 0,
      retryStrategy: () => null,
      disconnectTimeout: 0,
      disableClientInfo: true,
      connectionName: 'concord-locate',
    });
    quiet(client);
    let lastError: Error | undefined;
    client.on('error', (error: Error) => {
      lastError = error;
    });
    try {
      try {
        await client.connect();
      } catch (error) {
        throw lastError ?? error;
      }
      this.#slot ??= Number(await client.call('CLUSTER', 'KEYSLOT', this.#routingKey));
      const [own, ranges] = (await Promise.all([client.call('CLUSTER', 'MYID'), client.call('CLUSTER', 'SLOTS')])) as [
        string,
        Array<[number, number, ...Array<[string, number, string]>]>,
      ];
      let master: NodeAddress | undefined;
      for (const [from, to, first] of ranges) {
        if (!first || this.#slot < from || this.#slot > to) continue;
        // The node asked serves it: by the address that reached it. An empty host is the node that answered, too.
        master = first[2] === own ? node : { host: first[0] || node.host, port: first[1] };
      }
      if (!master) throw new Error(`slot ${String(this.#slot)} is served by no master (CLUSTERDOWN)`);
      debug('redis cluster: slot %d is served by %s', this.#slot, key(master));
      return master;
    } finally {
      client.disconnect();
    }
  }
}

/**
 * An ioredis connector that connects to the master the locator names, over TLS when the options ask for it. ioredis
 * calls connect() for the first connection and for every reconnection.
 */
export function slotConnector(locator: SlotLocator): ConnectorConstructor {
  class SlotConnector {
    connecting = false;
    firstError: Error | undefined;
    #stream: NetStream | undefined;
    readonly #options: RedisOptions;

    constructor(options: RedisOptions) {
      this.#options = options;
    }

    check(): boolean {
      return true;
    }

    async connect(): Promise<NetStream> {
      this.connecting = true;
      const address = await locator.locate();
      if (!this.connecting) throw new Error('Connection is closed.');
      locator.connectedTo.set(this.#options.connectionName ?? '', key(address));
      const stream = this.#options.tls
        ? tlsConnect({ ...this.#options.tls, host: address.host, port: address.port })
        : netConnect({ host: address.host, port: address.port });
      stream.once('error', (error: Error) => {
        this.firstError = error;
      });
      this.#stream = stream;
      return stream;
    }

    disconnect(): void {
      this.connecting = false;
      const stream = this.#stream;
      if (!stream) return;
      const timer = setTimeout(() => stream.destroy(), this.#options.disconnectTimeout ?? 0);
      stream.on('close', () => {
        clearTimeout(timer);
      });
      stream.end();
    }
  }
  return SlotConnector as unknown as ConnectorConstructor;
}
