/**
 * ioredis connections as the driver needs them: nothing is queued while disconnected and nothing is replayed after a
 * reconnect (a lock command sent late could take a lock nobody waits for any more), commands fail fast with
 * ERR_CONNECTION, and reconnection retries with a short backoff so an outage shorter than the TTL heals in time.
 *
 * ioredis writes to the console on its own in a few cases (INFO refused to its ready check, a password the server
 * does not need): the replies to its INFO and AUTH are read here first, so nothing but concord's own errors reaches
 * the user's terminal. (Its ready check stays on: without it ioredis may declare a connection ready that closed while
 * it was being set up, and then never reconnect.)
 */
import type { Redis as RedisClient, RedisOptions } from 'ioredis';
import type { Respondable } from 'ioredis/built/types.js';
import { ConcordError } from '../../src/errors.js';
import { debug } from '../../src/debug.js';
import { isAuthFailure, withoutCommand } from './errors.js';

export type RedisConstructor = new (options: RedisOptions) => RedisClient;

type ConnectorConstructor = NonNullable<RedisOptions['Connector']>;

/**
 * ioredis' SentinelConnector, with lookups that let go of their sentinel at once: each would otherwise keep a 2 s
 * timer (its disconnectTimeout) after asking, and so keep a process alive that long after connect() gave up.
 */
export function quietSentinelConnector(Base: unknown): ConnectorConstructor {
  // connectToSentinel is private in ioredis' typings, but it is the one place its lookup clients are made.
  const Connector = Base as new (options: unknown) => { connectToSentinel(endpoint: unknown, options?: object): unknown };
  class QuietSentinelConnector extends Connector {
    override connectToSentinel(endpoint: unknown, options?: object): unknown {
      return super.connectToSentinel(endpoint, { disconnectTimeout: 0, ...options });
    }
  }
  return QuietSentinelConnector as unknown as ConnectorConstructor;
}

export type Role = 'command' | 'subscriber' | 'reader';

/**
 * The last error each client reported: a refused login (WRONGPASS, NOAUTH) reaches a caller only as "Connection is
 * closed", so the failure names what the server said. Server replies never echo the password.
 */
const lastErrors = new WeakMap<RedisClient, Error>();

export function createClient(Redis: RedisConstructor, base: RedisOptions, role: Role, ttlMs: number): RedisClient {
  const backoffCapMs = Math.max(20, Math.min(ttlMs / 10, 500));
  const sentinel = base.sentinels !== undefined;
  const client = new Redis({
    ...base,
    lazyConnect: true,
    enableOfflineQueue: false,
    autoResendUnfulfilledCommands: false,
    // In-flight commands fail when the connection drops; the core decides what a failure means.
    maxRetriesPerRequest: 0,
    retryStrategy: (times: number) => Math.min(5 * 2 ** Math.min(times, 10), backoffCapMs),
    // Behind Sentinel, READONLY means the master moved (a failover): connect again, through the sentinels. A cluster's
    // connector brings its own (for MOVED too).
    reconnectOnError: base.reconnectOnError ?? ((error: Error) => sentinel && error.message.startsWith('READONLY')),
    // CLIENT SETINFO: unknown before Redis 7.2, and one more exchange before a connection is usable.
    disableClientInfo: true,
    // A dropped connection is closed at once: the default waits 2 s for a peer that may never answer, and keeps the
    // process alive meanwhile.
    disconnectTimeout: 0,
    // A blocked read has no deadline; the command connection has a watchdog (below) instead of a timer per command
    // (those timers were a tenth of an uncontended acquire and release); the subscriber's rare commands get one each.
    ...(role === 'subscriber' ? { commandTimeout: deadlineMs(ttlMs) } : {}),
    connectionName: `concord-${role}`,
    // The subscriber resubscribes itself (pubsub.ts), after turning on flush notifications for the new connection.
    autoResubscribe: false,
  });
  quiet(client);
  client.on('error', (error: Error) => {
    lastErrors.set(client, error);
    debug('redis %s connection: %s', role, error.message);
  });
  if (role === 'command') watch(client, deadlineMs(ttlMs));
  return client;
}

/** AUTH replies ioredis would answer with a console warning (its connection goes on either way). */
const NEEDLESS_PASSWORD = /no password is set|without any password configured/;

/**
 * Replaces a command method of this one client by one that passes its reply through `filter` first, keeping the
 * callback form ioredis itself uses.
 */
function intercept(client: RedisClient, method: 'auth' | 'info', filter: (reply: Promise<unknown>) => Promise<unknown>): void {
  const original = (client[method] as (...args: unknown[]) => Promise<unknown>).bind(client);
  const replacement = (...args: unknown[]): Promise<unknown> => {
    const callback =
      typeof args[args.length - 1] === 'function' ? (args.pop() as (error: Error | null, reply?: unknown) => void) : undefined;
    const reply = filter(original(...args));
    if (callback) {
      reply.then(
        (value) => {
          callback(null, value);
        },
        (error: unknown) => {
          callback(error as Error);
        },
      );
    }
    return reply;
  };
  Object.defineProperty(client, method, { value: replacement, configurable: true, writable: true });
}

/**
 * ioredis sends AUTH and INFO (its ready check) itself on every (re)connection, and warns on the console when the
 * server needs no password, takes no user name (Redis 5 and older), or refuses INFO to the user. A needless password
 * is noted in the debug log and the connection goes on, as it would anyway; INFO refused reads as an empty INFO,
 * which ioredis then treats as ready, as it would anyway; a user name Redis 5 cannot take fails with a message of
 * ours (concord needs Redis 6).
 */
export function quiet(client: RedisClient): void {
  intercept(client, 'auth', (reply) =>
    reply.catch((error: unknown) => {
      const text = error instanceof Error ? error.message : String(error);
      if (NEEDLESS_PASSWORD.test(text)) {
        debug('redis needs no password, but one was given: %s', text);
        return 'OK';
      }
      if (text.includes("wrong number of arguments for 'auth'")) {
        throw new Error('the server takes no user name in AUTH: concord needs Redis 6 or later');
      }
      throw error;
    }),
  );
  intercept(client, 'info', (reply) =>
    reply.catch((error: unknown) => {
      if (!(error instanceof Error && error.message.includes('NOPERM'))) throw error;
      debug('INFO refused (%s): the connection is taken as ready', error.message);
      return '';
    }),
  );
}

function deadlineMs(ttlMs: number): number {
  return Math.max(1000, ttlMs);
}

/**
 * A frozen server cannot hang a caller forever: a command still unanswered after `deadlineMs` (up to half as much
 * again) fails with a timeout, as ioredis' commandTimeout would do, but with one timer per connection instead of one
 * per command. Its reply, should it ever come, is then ignored.
 */
function watch(client: RedisClient, deadlineMs: number): void {
  // How many checks in a row have seen each command in flight.
  let seen = new Map<Respondable, number>();
  const timer = setInterval(() => {
    const queue = client.commandQueue;
    if (queue.length === 0 && seen.size === 0) return;
    const next = new Map<Respondable, number>();
    for (let i = 0; i < queue.length; i++) {
      const command = queue.peekAt(i)?.command;
      if (!command) continue;
      const count = (seen.get(command) ?? 0) + 1;
      if (count >= 3) command.reject(new Error('Command timed out'));
      else next.set(command, count);
    }
    seen = next;
  }, deadlineMs / 2);
  timer.unref();
  client.once('end', () => {
    clearInterval(timer);
  });
}

/**
 * Opens a lazily created connection; on failure the client is disconnected so no retry timer is left behind. Refused
 * credentials are ERR_REFUSED (retrying will not change them); anything else is ERR_CONNECTION.
 */
export async function open(client: RedisClient): Promise<void> {
  try {
    await client.connect();
  } catch (error) {
    client.disconnect();
    const reported = lastErrors.get(client) ?? (error instanceof Error ? error : new Error(String(error)));
    const cause = withoutCommand(reported);
    if (isAuthFailure(reported)) {
      // The user name, never the password: the server's reply does not echo it, and the command is dropped (cause).
      const user = client.options.username ?? 'default';
      throw new ConcordError('ERR_REFUSED', `cannot connect to redis: it refused the credentials of user "${user}" (${reported.message})`, {
        cause,
      });
    }
    throw new ConcordError('ERR_CONNECTION', `cannot connect to redis: ${reported.message}`, { cause });
  }
}

/** Resolves once the client is ready, or false after ms. */
export function whenReady(client: RedisClient, ms: number): Promise<boolean> {
  if (client.status === 'ready') return Promise.resolve(true);
  return new Promise<boolean>((resolve) => {
    const done = (ok: boolean): void => {
      clearTimeout(timer);
      client.off('ready', onReady);
      client.off('end', onEnd);
      resolve(ok);
    };
    const onReady = (): void => {
      done(true);
    };
    const onEnd = (): void => {
      done(false);
    };
    const timer = setTimeout(() => {
      done(false);
    }, ms);
    timer.unref();
    client.once('ready', onReady);
    client.once('end', onEnd);
  });
}

/** Quits politely, or drops the connection when it is not up or does not answer soon. */
export async function quit(client: RedisClient): Promise<void> {
  if (client.status !== 'ready') {
    client.disconnect();
    return;
  }
  let timer: NodeJS.Timeout | undefined;
  try {
    await Promise.race([
      client.quit(),
      new Promise<void>((resolve) => {
        timer = setTimeout(resolve, 1000);
      }),
    ]);
  } catch {
    // the connection went away meanwhile: nothing to quit
  } finally {
    clearTimeout(timer);
    client.disconnect();
  }
}
