/**
 * ioredis connections as the driver needs them: nothing is queued while disconnected and nothing is replayed after a
 * reconnect (a lock command sent late could take a lock nobody waits for any more), commands fail fast with
 * ERR_CONNECTION, and reconnection retries with a short backoff so an outage shorter than the TTL heals in time.
 */
import type { Redis as RedisClient, RedisOptions } from 'ioredis';
import type { Respondable } from 'ioredis/built/types.js';
import { ConcordError } from '../../src/errors.js';
import { debug } from '../../src/debug.js';

export type RedisConstructor = new (options: RedisOptions) => RedisClient;

export type Role = 'command' | 'subscriber' | 'reader';

/**
 * The last error each client reported: a refused login (WRONGPASS, NOAUTH) reaches a caller only as "Connection is
 * closed", so the failure names what the server said. Server replies never echo the password.
 */
const lastErrors = new WeakMap<RedisClient, Error>();

export function createClient(Redis: RedisConstructor, base: RedisOptions, role: Role, ttlMs: number): RedisClient {
  const backoffCapMs = Math.max(20, Math.min(ttlMs / 10, 500));
  const client = new Redis({
    ...base,
    lazyConnect: true,
    enableOfflineQueue: false,
    autoResendUnfulfilledCommands: false,
    // In-flight commands fail when the connection drops; the core decides what a failure means.
    maxRetriesPerRequest: 0,
    retryStrategy: (times: number) => Math.min(5 * 2 ** Math.min(times, 10), backoffCapMs),
    reconnectOnError: () => false,
    // A blocked read has no deadline; the command connection has a watchdog (below) instead of a timer per command
    // (those timers were a tenth of an uncontended acquire and release); the subscriber's rare commands get one each.
    ...(role === 'subscriber' ? { commandTimeout: deadlineMs(ttlMs) } : {}),
    connectionName: `concord-${role}`,
    autoResubscribe: role === 'subscriber',
  });
  client.on('error', (error: Error) => {
    lastErrors.set(client, error);
    debug('redis %s connection: %s', role, error.message);
  });
  if (role === 'command') watch(client, deadlineMs(ttlMs));
  return client;
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

/** Opens a lazily created connection; on failure the client is disconnected so no retry timer is left behind. */
export async function open(client: RedisClient): Promise<void> {
  try {
    await client.connect();
  } catch (error) {
    client.disconnect();
    const reported = lastErrors.get(client) ?? (error instanceof Error ? error : new Error(String(error)));
    throw new ConcordError('ERR_CONNECTION', `cannot connect to redis: ${reported.message}`, { cause: withoutCommand(reported) });
  }
}

/** A server's reply error carries the command's arguments, which for AUTH is the password: keep only what it said. */
function withoutCommand(error: Error): Error {
  if (!('command' in error)) return error;
  const copy = new Error(error.message);
  copy.name = error.name;
  return copy;
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
