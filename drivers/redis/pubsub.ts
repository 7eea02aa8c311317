/**
 * One subscriber connection per driver, shared by every lock waiter, lock watch and the expiry notifications.
 * Channels are reference-counted; a listener is registered only once its SUBSCRIBE is confirmed, so a caller that
 * awaited `add` cannot miss a message published after that.
 */
import type { Redis as RedisClient } from 'ioredis';
import { connectionError } from '../../src/errors.js';
import type { Unsubscribe } from '../../src/driver.js';

type Listener = (message: string) => void;

interface Channel {
  readonly listeners: Set<Listener>;
  readonly subscribed: Promise<void>;
}

export class Subscriber {
  readonly #client: RedisClient;
  readonly #channels = new Map<string, Channel>();
  readonly #onReconnect: () => void;
  #wasDown = false;

  constructor(client: RedisClient, onReconnect: () => void) {
    this.#client = client;
    this.#onReconnect = onReconnect;
    client.on('message', (channel: string, message: string) => {
      const entry = this.#channels.get(channel);
      if (!entry) return;
      for (const listener of [...entry.listeners]) listener(message);
    });
    client.on('close', () => {
      this.#wasDown = true;
    });
    client.on('ready', () => {
      if (!this.#wasDown) return;
      this.#wasDown = false;
      // Messages published while the link was down are lost: everyone re-checks once the resubscription is sent.
      setImmediate(this.#onReconnect);
    });
  }

  get client(): RedisClient {
    return this.#client;
  }

  async add(channel: string, listener: Listener): Promise<Unsubscribe> {
    let entry = this.#channels.get(channel);
    if (!entry) {
      const subscribed = this.#client.subscribe(channel).then(
        () => undefined,
        (cause: unknown) => {
          if (this.#channels.get(channel) === entry) this.#channels.delete(channel);
          throw connectionError(`cannot subscribe: ${(cause as Error).message}`, cause);
        },
      );
      subscribed.catch(() => undefined);
      entry = { listeners: new Set(), subscribed };
      this.#channels.set(channel, entry);
    }
    const own = entry;
    await own.subscribed;
    // Everyone else left while we waited, and the channel was unsubscribed: subscribe again.
    if (this.#channels.get(channel) !== own) return this.add(channel, listener);
    const wrapped: Listener = (message) => {
      listener(message);
    };
    own.listeners.add(wrapped);
    let done = false;
    return () => {
      if (done) return;
      done = true;
      own.listeners.delete(wrapped);
      if (own.listeners.size === 0 && this.#channels.get(channel) === own) {
        this.#channels.delete(channel);
        if (this.#client.status === 'ready') this.#client.unsubscribe(channel).catch(() => undefined);
      }
    };
  }
}
