/**
 * The connect-time checks, in one exchange per connection before the driver is handed out: every script cached (later
 * calls send only the SHA1), the eviction and notification settings read, and every permission the driver needs tried
 * (PROBE, EVALSHA, XREAD on the command connection; SUBSCRIBE on the subscriber, passed in). A user that lacks any is
 * refused with one ERR_REFUSED naming all that is missing (ACL DRYRUN would need Redis 7 and the right to run it). A
 * server busy with a script (or loading its data, which ioredis' ready check mostly waits out) is waited for.
 */
import type { Redis as RedisClient } from 'ioredis';
import { sleep } from '../../src/clock.js';
import { debug } from '../../src/debug.js';
import { ConcordError } from '../../src/errors.js';
import { isTransient, toConcordError, withoutCommand } from './errors.js';
import { PROBE, SCRIPTS } from './scripts.js';

/** Which keyspace notifications the server sends. */
export interface Notifications {
  /** Expired keys (E and x): crashed members are reaped at once. */
  readonly expired: boolean;
  /** Keyspace events for deleted keys (K and g): a held lock's key deleted from outside is heard at once. */
  readonly deleted: boolean;
}

export interface ProbeOptions {
  /** The command connection. */
  readonly client: RedisClient;
  /** `{namespace}:` */
  readonly prefix: string;
  /** The ACL user, for the message that refuses it. */
  readonly user: string;
  readonly sentinel: boolean;
  /** ?allowEviction=true: a server that may evict any key is accepted. */
  readonly allowEviction: boolean;
  /** ?keyspaceEvents (default true): turn on the notifications the driver can use when the server lets it. */
  readonly keyspaceEvents: boolean;
  /** The subscriber connection's first SUBSCRIBE: what it failed with, if it did. */
  readonly subscribed: Promise<Error | undefined>;
  readonly signal: AbortSignal;
}

export interface ProbeResult {
  /** Every script of SCRIPTS is now cached by the server behind the command connection. */
  readonly scriptsLoaded: boolean;
  readonly notifications: Notifications;
}

type PipelineReply = [Error | null, unknown] | undefined;

/** Runs the checks; throws ERR_REFUSED for a user missing a permission, ERR_CONNECTION for anything else that failed. */
export async function probeServer(options: ProbeOptions): Promise<ProbeResult> {
  const { client, prefix, signal } = options;
  const scripts = Object.values(SCRIPTS);
  const routing = `${prefix}ss`;
  for (;;) {
    const pipeline = client.pipeline();
    pipeline.call('CONFIG', 'GET', 'maxmemory*');
    pipeline.call('CONFIG', 'GET', 'notify-keyspace-events');
    for (const script of scripts) pipeline.call('SCRIPT', 'LOAD', script.source);
    pipeline.eval(PROBE.source, 1, routing, prefix);
    pipeline.evalsha(PROBE.sha, 1, routing, prefix);
    pipeline.call('XREAD', 'COUNT', '1', 'STREAMS', `${prefix}x:`, '0-0');
    const [replies, subscribed] = await Promise.all([pipeline.exec(), options.subscribed]);
    const results = replies ?? [];
    const errors = results.map(([error]) => error).filter((e): e is Error => e !== null);
    if (errors.some(isTransient) && !signal.aborted) {
      debug('redis is busy (%s): connecting waits', errors.find(isTransient)?.message);
      await sleep(100, signal);
      continue;
    }
    const [config, notify, ...rest] = results;
    const loads = rest.slice(0, scripts.length);
    const [probe, probeSha, xread] = rest.slice(scripts.length);
    refuseMissing(
      [
        ['EVAL', probe?.[0] ?? null],
        ['EVALSHA', probeSha?.[0] ?? null],
        ['XREAD', xread?.[0] ?? null],
        ['SUBSCRIBE', subscribed ?? null],
        ...probeRefusals(probe),
      ],
      prefix,
      options.user,
    );
    // Anything else that failed here is the link or the server, not a permission: a connection error.
    const failed = probe?.[0] ?? probeSha?.[0] ?? xread?.[0] ?? subscribed;
    if (failed) throw toConcordError(failed, {}, options.sentinel);
    checkEviction(config, options.allowEviction);
    return {
      scriptsLoaded: loads.length === scripts.length && loads.every(([error]) => error === null),
      notifications: await enableNotifications(client, notify, options.keyspaceEvents),
    };
  }
}

/** What a NOPERM (or a script's ACL refusal) is about. */
function deniedWhat(text: string): 'keys' | 'channels' | 'command' | undefined {
  if (!/NOPERM|The user executing the script can't/.test(text)) return undefined;
  if (/\bkeys?\b/.test(text)) return 'keys';
  if (/\bchannels?\b/.test(text)) return 'channels';
  return 'command';
}

/** The commands PROBE's run reported refused: `<COMMAND>\t<error>` entries. */
function probeRefusals(probe: PipelineReply): Array<[string, Error]> {
  if (!probe || probe[0] !== null || !Array.isArray(probe[1])) return [];
  return (probe[1] as string[]).map((entry) => {
    const tab = entry.indexOf('\t');
    return [entry.slice(0, tab), new Error(entry.slice(tab + 1))];
  });
}

/** Throws one ERR_REFUSED naming every command, key pattern and channel pattern the server refused this user. */
function refuseMissing(outcomes: Array<[string, Error | null]>, prefix: string, user: string): void {
  const commands = new Set<string>();
  let keys = false;
  let channels = false;
  let first: Error | undefined;
  for (const [command, error] of outcomes) {
    const what = error ? deniedWhat(error.message) : undefined;
    if (!what || !error) continue;
    first ??= error;
    if (what === 'keys') keys = true;
    else if (what === 'channels') channels = true;
    else commands.add(command);
  }
  if (!first) return;
  const pattern = `${prefix}*`;
  const missing: string[] = [];
  const grants: string[] = [];
  if (commands.size > 0) {
    missing.push(`the command${commands.size > 1 ? 's' : ''} ${[...commands].join(', ')}`);
    grants.push(...[...commands].map((c) => `+${c.toLowerCase()}`));
  }
  if (keys) {
    missing.push(`the keys ${pattern}`);
    grants.push(`~${pattern}`);
  }
  if (channels) {
    missing.push(`the channels ${pattern}`);
    grants.push(`&${pattern}`);
  }
  // The server's own words, not a wrapper of ours (refusedError would hand a ConcordError back as it is).
  const cause = first instanceof ConcordError && first.cause instanceof Error ? first.cause : first;
  throw new ConcordError(
    'ERR_REFUSED',
    `redis user "${user}" may not use ${missing.join('; ')}, which concord needs (ACL SETUSER ${user} ${grants.join(' ')})`,
    { cause: withoutCommand(cause) },
  );
}

/**
 * A server that may evict any key under memory pressure could drop a lock, a queue or a session without a word: a
 * silent double grant. Refused (unless ?allowEviction=true) when CONFIG GET says so; unreadable settings pass.
 */
function checkEviction(reply: PipelineReply, allowEviction: boolean): void {
  if (!reply || reply[0] !== null) {
    debug('cannot read the eviction settings (%s): make sure maxmemory-policy is noeviction', reply?.[0]?.message);
    return;
  }
  const flat = reply[1] as string[];
  const settings = new Map<string, string>();
  for (let i = 0; i + 1 < flat.length; i += 2) settings.set(flat[i] ?? '', flat[i + 1] ?? '');
  const policy = settings.get('maxmemory-policy') ?? 'noeviction';
  const maxmemory = Number(settings.get('maxmemory') ?? '0');
  if (policy === 'noeviction' || !(maxmemory > 0)) return;
  debug('redis may evict keys (maxmemory %d, maxmemory-policy %s): locks and sessions may vanish under memory pressure', maxmemory, policy);
  if (policy.startsWith('allkeys-') && !allowEviction) {
    throw new ConcordError(
      'ERR_CONNECTION',
      `redis may evict any key (maxmemory-policy ${policy} with maxmemory ${String(maxmemory)}), which can drop a held lock ` +
        'and grant it twice: set maxmemory-policy noeviction, or add ?allowEviction=true to the url to accept the risk',
    );
  }
}

/**
 * Keyspace notifications for expired keys (crashed members reaped at once) and deleted keys (a held lock's key
 * deleted from outside heard at once): turned on when missing and allowed (unless ?keyspaceEvents=false); never
 * depended on.
 */
async function enableNotifications(client: RedisClient, reply: PipelineReply, keyspaceEvents: boolean): Promise<Notifications> {
  if (!reply || reply[0] !== null) {
    debug('cannot read notify-keyspace-events (%s): no keyspace notifications', reply?.[0]?.message);
    return { expired: false, deleted: false };
  }
  let flags = (reply[1] as string[])[1] ?? '';
  const has = (type: string, event: string): boolean => flags.includes(type) && (flags.includes(event) || flags.includes('A'));
  if (keyspaceEvents && !(has('E', 'x') && has('K', 'g'))) {
    const wanted = ['K', 'E', 'g', 'x'].filter((flag) => !flags.includes(flag)).join('');
    try {
      await client.call('CONFIG', 'SET', 'notify-keyspace-events', `${flags}${wanted}`);
      flags += wanted;
    } catch (error) {
      debug('cannot turn on keyspace notifications: %s', (error as Error).message);
    }
  }
  return { expired: has('E', 'x'), deleted: has('K', 'g') };
}
