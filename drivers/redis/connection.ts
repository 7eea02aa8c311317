/**
 * ioredis connections as the driver needs them: nothing is queued while disconnected and nothing is replayed after a
 * reconnect (a lock command sent late could take a lock nobody waits for any more), commands fail fast with
 * ERR_CONNECTION, and reconnection retries with a short backoff so an outage shorter than the TTL heals in time.
 */
import type { Redis as RedisClient, RedisOptions } from 'ioredis';
import { ConcordError } from '../../src/errors.js';
import { debug } from '../../src/debug.js';

export type RedisConstructor = new (options: RedisOptions) => RedisClient;

export type Role = 'command' | 'subscriber' | 'reader';

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
    // A blocked read has no deadline; other commands get one, so a frozen server cannot hang a caller forever.
    ...(role === 'reader' ? {} : { commandTimeout: Math.max(1000, ttlMs) }),
    connectionName: `concord-${role}`,
    autoResubscribe: role === 'subscriber',
  });
  client.on('error', (error: Error) => {
    debug('redis %s connection: %s', role, error.message);
  });
  return client;
}

/** Opens a lazily created connection; on failure the client is disconnected so no retry timer is left behind. */
export async function open(client: RedisClient): Promise<void> {
  try {
    await client.connect();
  } catch (cause) {
    client.disconnect();
    throw new ConcordError('ERR_CONNECTION', `cannot connect to redis: ${(cause as Error).message}`, { cause });
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
