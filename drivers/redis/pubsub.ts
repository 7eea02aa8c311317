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
  /** Pending unsubscription of a channel nobody listens to any more. */
  idle: NodeJS.Timeout | undefined;
}

/** A channel stays subscribed this long after its last listener left: the next wait on a busy lock saves a round trip. */
const LINGER_MS = 5000;

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

  /** True when the channel is subscribed or being subscribed: `add` then costs no round trip. */
  has(channel: string): boolean {
    return this.#channels.has(channel);
  }

  /** Stops the linger timers (the connection is being closed). */
  dispose(): void {
    for (const entry of this.#channels.values()) clearTimeout(entry.idle);
    this.#channels.clear();
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
      entry = { listeners: new Set(), subscribed, idle: undefined };
      this.#channels.set(channel, entry);
    }
    const own = entry;
    clearTimeout(own.idle);
    own.idle = undefined;
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
        clearTimeout(own.idle);
        own.idle = setTimeout(() => {
          if (own.listeners.size > 0 || this.#channels.get(channel) !== own) return;
          this.#channels.delete(channel);
          if (this.#client.status === 'ready') this.#client.unsubscribe(channel).catch(() => undefined);
        }, LINGER_MS);
        own.idle.unref();
      }
    };
  }
}
