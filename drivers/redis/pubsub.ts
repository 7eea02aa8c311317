/**
 * One subscriber connection per driver, shared by every lock waiter, lock watch, held lock's key watch and the expiry
 * notifications. Channels are reference-counted; a listener is registered only once its SUBSCRIBE is confirmed, so a
 * caller that awaited `add` cannot miss a message published after that.
 *
 * The connection also hears of database flushes: FLUSHALL and FLUSHDB send no keyspace notification, but they do
 * invalidate every client-side cache, so the connection turns on client tracking (OPTIN: no key is ever tracked)
 * redirected to itself, and the server's invalidation with no key names is the flush. Tracking must be on before the
 * first SUBSCRIBE (a subscribed RESP2 connection takes no other command), so this class resubscribes itself after a
 * reconnect instead of leaving it to ioredis.
 */
import type { Redis as RedisClient } from 'ioredis';
import { connectionError, refusedError } from '../../src/errors.js';
import { debug } from '../../src/debug.js';
import type { Unsubscribe } from '../../src/driver.js';
import { isRefusal } from './errors.js';

type Listener = (message: string) => void;

interface Channel {
  readonly listeners: Set<Listener>;
  readonly subscribed: Promise<void>;
  /** Pending unsubscription of a channel nobody listens to any more. */
  idle: NodeJS.Timeout | undefined;
}

export interface SubscriberHooks {
  /** The link came back and every channel is subscribed again: messages published meanwhile were lost. */
  reconnected(): void;
  /** A database was flushed (maybe another one than ours): keys may be gone without a notification of their own. */
  flushed(): void;
}

/** A channel stays subscribed this long after its last listener left: the next wait on a busy lock saves a round trip. */
const LINGER_MS = 5000;
/** Where the server sends cache invalidations; a flush is one with no key names. */
const INVALIDATE = '__redis__:invalidate';

export class Subscriber {
  readonly #client: RedisClient;
  readonly #channels = new Map<string, Channel>();
  readonly #hooks: SubscriberHooks;
  readonly #sentinel: boolean;
  #wasDown = false;
  /** Connected, with every channel subscribed again after the last drop: messages are being heard. */
  #up = true;
  /** Settles once the current connection is ready for SUBSCRIBE (flush notifications asked for first). */
  #prepared: Promise<void> = Promise.resolve();

  constructor(client: RedisClient, hooks: SubscriberHooks, sentinel: boolean) {
    this.#client = client;
    this.#hooks = hooks;
    this.#sentinel = sentinel;
    client.on('message', (channel: string, message: string | null) => {
      if (channel === INVALIDATE) {
        if (!message) hooks.flushed();
        return;
      }
      const entry = this.#channels.get(channel);
      if (!entry) return;
      for (const listener of [...entry.listeners]) listener(message ?? '');
    });
    client.on('close', () => {
      this.#wasDown = true;
      this.#up = false;
    });
    client.on('ready', () => {
      if (!this.#wasDown) return;
      this.#wasDown = false;
      this.#prepared = this.#prepare();
      void this.#resubscribe(this.#prepared);
    });
  }

  get client(): RedisClient {
    return this.#client;
  }

  /** Asks for flush notifications on the freshly opened connection (before anything is subscribed). */
  start(): Promise<void> {
    this.#prepared = this.#prepare();
    return this.#prepared;
  }

  /** False from a drop until every channel is subscribed again: messages sent meanwhile went unheard. */
  get up(): boolean {
    return this.#up;
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

  /** Client tracking redirected to this very connection: flushes arrive here. Optional (an ACL may refuse CLIENT). */
  async #prepare(): Promise<void> {
    try {
      const id = await this.#client.call('CLIENT', 'ID');
      await this.#client.call('CLIENT', 'TRACKING', 'ON', 'REDIRECT', String(id), 'OPTIN');
    } catch (error) {
      debug('no flush notifications (%s): a flush is noticed at the next renewal', (error as Error).message);
    }
  }

  async #resubscribe(prepared: Promise<void>): Promise<void> {
    await prepared;
    const channels = [...this.#channels.keys()];
    try {
      if (channels.length > 0) await this.#client.subscribe(...channels);
    } catch (error) {
      // Down again (the next 'ready' tries again), or refused: the listeners hear nothing more; waits re-check anyway.
      debug('resubscribing %d channels failed: %s', channels.length, (error as Error).message);
      return;
    }
    this.#up = true;
    this.#hooks.reconnected();
  }

  async add(channel: string, listener: Listener): Promise<Unsubscribe> {
    let entry = this.#channels.get(channel);
    if (!entry) {
      const subscribed = this.#prepared
        .then(() => this.#client.subscribe(channel))
        .then(
          () => undefined,
          (cause: unknown) => {
            if (this.#channels.get(channel) === entry) this.#channels.delete(channel);
            const text = `cannot subscribe to ${channel}: ${(cause as Error).message}`;
            throw isRefusal(cause, this.#sentinel) ? refusedError(text, cause) : connectionError(text, cause);
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
