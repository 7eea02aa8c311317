/**
 * The LISTEN connection: one dedicated client per coordinator, on the namespace's channel. NOTIFY is sent inside the
 * writing transaction, so a wake-up arrives only once what it announces is committed. When the connection drops, it
 * is made again (with back-off) and the driver told to look at everything (wake-ups may have been missed); while it is
 * down, or where a pooler in transaction mode refuses LISTEN, the driver is woken every fallbackMs instead.
 * Renewals run on this connection too (see PostgresBackend.heartbeat), so a connection that silently stopped
 * answering is found by the next renewal and replaced. Its drop and its return are the link's (WakeHandlers.linkDown,
 * linkUp): the session is `suspended` at once, and renewed as soon as the connection is back.
 */
import type { Client, ClientConfig, Notification } from 'pg';
import { debug } from '../../src/debug.js';
import type { WakeHandlers, WakeSource } from '../sql/backend.js';

export type ClientConstructor = new (config: ClientConfig) => Client;

/** Drops a client's socket at once (end() waits for a server that may never answer). */
export function dropClient(client: Client): void {
  const stream = (client as unknown as { connection?: { stream?: { destroy(): void } } }).connection?.stream;
  stream?.destroy();
  client.end().catch(() => undefined);
}

export class Listener implements WakeSource {
  readonly #Client: ClientConstructor;
  readonly #config: ClientConfig;
  readonly #channel: string;
  readonly #handlers: WakeHandlers;
  readonly #fallbackMs: number;
  #client: Client | undefined;
  /** The client once LISTEN went through on it. */
  #ready: Client | undefined;
  #closed = false;
  #retryMs = 20;
  #retry: NodeJS.Timeout | undefined;
  #fallback: NodeJS.Timeout | undefined;

  constructor(Client: ClientConstructor, config: ClientConfig, channel: string, handlers: WakeHandlers, fallbackMs: number) {
    this.#Client = Client;
    this.#config = config;
    this.#channel = channel;
    this.#handlers = handlers;
    this.#fallbackMs = fallbackMs;
  }

  /** The connection renewals can use, when LISTEN is in place on it. */
  get client(): Client | undefined {
    return this.#ready;
  }

  /** Connects and listens; a failure leaves it retrying in the background (the first error is thrown). */
  async start(): Promise<void> {
    await this.#connect();
  }

  want(): () => void {
    // Every topic of the namespace arrives on its channel anyway.
    return () => undefined;
  }

  async #connect(): Promise<void> {
    const client = new this.#Client(this.#config);
    this.#client = client;
    client.on('error', (error) => {
      debug('postgres LISTEN connection failed: %s', error.message);
      this.#lost(client);
    });
    client.on('end', () => {
      this.#lost(client);
    });
    client.on('notification', (message: Notification) => {
      if (message.channel === this.#channel && message.payload !== undefined) this.#handlers.topic(message.payload);
    });
    try {
      await client.connect();
      await client.query(`LISTEN "${this.#channel}"`);
    } catch (error) {
      this.#lost(client);
      throw error;
    }
    if (this.#closed || this.#client !== client) {
      dropClient(client);
      return;
    }
    this.#ready = client;
    this.#retryMs = 20;
    clearInterval(this.#fallback);
    this.#fallback = undefined;
  }

  /** Recycles the connection (a renewal on it timed out): the next one is made at once. */
  recycle(): void {
    if (this.#client) this.#lost(this.#client);
  }

  #lost(client: Client): void {
    if (this.#client !== client) return;
    const wasUp = this.#ready === client;
    this.#client = undefined;
    this.#ready = undefined;
    dropClient(client);
    if (this.#closed) return;
    if (wasUp) this.#handlers.linkDown?.();
    this.#fallback ??= setInterval(() => {
      this.#handlers.reset();
    }, this.#fallbackMs);
    this.#fallback.unref();
    this.#schedule();
  }

  #schedule(): void {
    if (this.#retry || this.#closed) return;
    this.#retry = setTimeout(() => {
      this.#retry = undefined;
      this.#connect().then(
        () => {
          if (!this.#ready) return;
          this.#handlers.linkUp?.();
          // Anything may have happened while we were not listening.
          this.#handlers.reset();
        },
        (error: unknown) => {
          debug('postgres LISTEN reconnect failed: %s', (error as Error).message);
          this.#retryMs = Math.min(this.#retryMs * 2, this.#fallbackMs);
          this.#schedule();
        },
      );
    }, this.#retryMs);
    this.#retry.unref();
  }

  close(): Promise<void> {
    this.#closed = true;
    clearTimeout(this.#retry);
    clearInterval(this.#fallback);
    const client = this.#client;
    this.#client = undefined;
    this.#ready = undefined;
    if (!client) return Promise.resolve();
    return client.end().catch(() => undefined);
  }

  destroy(): void {
    this.#closed = true;
    clearTimeout(this.#retry);
    clearInterval(this.#fallback);
    const client = this.#client;
    this.#client = undefined;
    this.#ready = undefined;
    if (client) dropClient(client);
  }
}
