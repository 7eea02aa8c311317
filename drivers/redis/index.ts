/**
 * redis://, rediss://, redis+sentinel:// — Redis 6+ with ioredis.
 *
 * Everything lives under one key prefix `{namespace}:` (scripts.ts lists the keys). Every change is one Lua script,
 * so each step is atomic; groups log their changes to a stream that watches read with XREAD BLOCK; locks keep a
 * FIFO queue of waiting sessions and hand the lock to the first live waiter inside the releasing script, then
 * publish the grant, so a hand-off costs one pub/sub message and one round trip.
 *
 * Liveness: a session is a key with a PX TTL. Redis tells nobody when it expires, so live coordinators reap expired
 * sessions (their memberships and locks) while renewing, and at once when keyspace notifications for expired keys
 * are on (the driver turns them on when the server lets it; nothing depends on them). Worst-case detection of a
 * crashed member: its TTL plus a third of the shortest TTL among the live coordinators (about 100 ms with
 * notifications). Lock waiters also re-check when the holder's session is due to expire.
 *
 * Held locks: each is watched while held, by a keyspace notification on its key (when the server emits them; the
 * driver turns on `Kg` with `Ex` where CONFIG SET is allowed) and by a check in every renewal, so a lock key deleted
 * or taken over from outside ends the holder's lock (DriverEvents.lockLost) within about a round trip of the deletion,
 * or at the next renewal without notifications. A flush (FLUSHALL, FLUSHDB) sends no keyspace notification, but it
 * invalidates client-side caches: the subscriber connection turns on client tracking for that alone (pubsub.ts) and
 * then checks its sessions, so the holders hear of it within a round trip. A reconnected command connection checks the
 * same (the server may have restarted, or a replica that never saw the latest grants may have been promoted).
 *
 * Refusals: replies retrying will not change (OOM, READONLY from a replica named by a redis:// url, NOPERM, WRONGTYPE)
 * are ERR_REFUSED with the server's message, which ends a waiting acquire; everything else is ERR_CONNECTION. Behind
 * Sentinel, READONLY means the master moved: the connection is made again through the sentinels.
 *
 * Connecting checks, in one exchange per connection, every permission the driver needs (below), by trying each
 * command harmlessly (scripts.ts PROBE; ACL DRYRUN would need Redis 7 and the right to run it), and refuses a user
 * that lacks any with one ERR_REFUSED naming all that is missing.
 *
 * Memory: evicted keys are lost locks, queues and sessions, so the server should run with maxmemory-policy noeviction
 * (then a full server refuses writes, which callers see as ERR_REFUSED). When CONFIG GET shows maxmemory set with
 * an allkeys-* policy, connecting fails with ERR_CONNECTION naming the setting unless the URL says
 * ?allowEviction=true. A volatile-* policy is only logged (debug), but it too may evict session keys (they have a
 * TTL), ending a session early: a holder learns it at its next renewal, after a waiter may have been granted the lock.
 * The settings are read once, at connect; a server whose CONFIG is refused or changed later is not checked.
 *
 * Connections per coordinator: commands, pub/sub, and (once a group is watched) one for blocking stream reads.
 * An ACL user needs the key pattern `{namespace}:*` (or `~*`), the channels `{namespace}:*` (or `&*`), EVAL, EVALSHA,
 * SUBSCRIBE, XREAD and what the scripts call (the categories +@read +@write +@scripting +@pubsub +@stream
 * +@connection +time cover it); optional: +client|id +client|unblock (a new watch joins a blocked read at once instead
 * of within 250 ms), +client|tracking (flushes heard at once), &__keyspace@*, +config|get +config|set (keyspace
 * notifications: faster reaping, deleted lock keys heard at once).
 */
import { randomBytes } from 'node:crypto';
import type { Redis as RedisClient } from 'ioredis';
import { importClient } from '../../src/client.js';
import { sleep, waitForWake } from '../../src/clock.js';
import { debug } from '../../src/debug.js';
import { ConcordError, abortedError, isConcordError, refusedError, type ErrorCode } from '../../src/errors.js';
import type { Driver, DriverContext, GroupSnapshot, LockHolder, LockKind, Revision, Unsubscribe, WatchSink } from '../../src/driver.js';
import type { Capabilities, Features, Member } from '../../src/types.js';
import { createClient, isRefusal, open, quietSentinelConnector, quit, withoutCommand, type RedisConstructor } from './connection.js';
import { redisSettings, type RedisSettings } from './options.js';
import { Subscriber } from './pubsub.js';
import { StreamReader, type StreamWatch } from './reader.js';
import { PROBE, SCRIPTS, type ScriptName } from './scripts.js';

/** What this driver implements (the README capability matrix is generated from it). */
export const features: Features = Object.freeze({
  scope: 'cluster',
  groups: true,
  election: true,
  fencing: true,
  watch: 'push',
  fairLocks: true,
});

/** Expired sessions reaped per renewal at most (the rest on the next ones). */
const REAP_LIMIT = 16;
/** A lock held this long gets its key watched by keyspace notification (see #hold). */
const KEY_WATCH_AFTER_MS = 20;
/** How long a deleted group's change stream is kept, so watchers of a re-created group carry on without a gap. */
const HISTORY_MS = 3_600_000;

interface ErrorContext {
  readonly group?: string;
  readonly member?: string;
}

function message(code: ErrorCode, context: ErrorContext): string {
  const group = `group "${context.group ?? ''}"`;
  switch (code) {
    case 'ERR_GROUP_EXISTS':
      return `${group} already exists`;
    case 'ERR_GROUP_NOT_FOUND':
      return `${group} does not exist`;
    case 'ERR_GROUP_NOT_EMPTY':
      return `${group} still has members`;
    case 'ERR_MEMBER_EXISTS':
      return `member "${context.member ?? ''}" is already in ${group}`;
    case 'ERR_MEMBER_NOT_JOINED':
      return `member "${context.member ?? ''}" has not joined ${group}`;
    case 'ERR_SESSION_LOST':
      return 'the session has expired';
    default:
      return code;
  }
}

/**
 * Script refusals become their ConcordError; a refusal retrying will not fix (OOM, READONLY, NOPERM, WRONGTYPE) is
 * ERR_REFUSED with the server's message; anything else from the server or the link is ERR_CONNECTION.
 */
function toConcordError(error: unknown, context: ErrorContext = {}, sentinel = false): ConcordError {
  if (error instanceof ConcordError) return error;
  const text = error instanceof Error ? error.message : String(error);
  const match = /CONCORD (ERR_[A-Z_]+)/.exec(text);
  if (match?.[1]) {
    const code = match[1] as ErrorCode;
    return new ConcordError(code, message(code, context));
  }
  const cause = error instanceof Error ? withoutCommand(error) : error;
  if (isRefusal(error, sentinel)) return refusedError(`redis refused the request: ${text}`, cause);
  return new ConcordError('ERR_CONNECTION', `redis: ${text}`, { cause });
}

/** What a NOPERM (or a script's ACL refusal) is about. */
function deniedWhat(text: string): 'keys' | 'channels' | 'command' | undefined {
  if (!/NOPERM|The user executing the script can't/.test(text)) return undefined;
  if (/\bkeys?\b/.test(text)) return 'keys';
  if (/\bchannels?\b/.test(text)) return 'channels';
  return 'command';
}

/** A server busy loading its data (or running a long script): connecting waits for it rather than failing. */
function isTransient(error: unknown): boolean {
  return error instanceof Error && /^(LOADING|BUSY)\b/.test(error.message);
}

/** A lock this driver's session holds, as the backend granted it. */
interface Held {
  readonly kind: LockKind;
  readonly name: string;
  readonly sid: string;
  readonly token: string;
  /** When it was granted (performance.now()). */
  readonly since: number;
}

/** The keyspace-notification subscription watching one held lock's key. */
interface KeyWatch {
  stop: Unsubscribe | undefined;
  cancelled: boolean;
}

function lockKey(kind: LockKind, name: string): string {
  return `${kind}:${name}`;
}

function isNoScript(error: unknown): boolean {
  return error instanceof Error && error.message.startsWith('NOSCRIPT');
}

class RedisDriver implements Driver {
  readonly features = features;
  readonly #Redis: RedisConstructor;
  readonly #settings: RedisSettings;
  readonly #context: DriverContext;
  readonly #prefix: string;
  readonly #ttlMs: number;
  readonly #sentinel: boolean;
  readonly #cmd: RedisClient;
  readonly #subscriber: Subscriber;
  /** The server publishes expired-key events (E and x), and keyspace events for deleted keys (K and g). */
  #notify = { expired: false, deleted: false };
  #expiryListening = false;
  #reader: StreamReader | undefined;
  #readerClient: RedisClient | undefined;
  readonly #sessions = new Map<string, number>();
  readonly #lockWatchers = new Set<() => void>();
  /** Locks held by this driver's sessions, by `<kind>:<name>`, and the watches on their keys. */
  readonly #held = new Map<string, Held>();
  readonly #keyWatches = new Map<string, KeyWatch>();
  #keyWatchTimer: NodeJS.Timeout | undefined;
  #checkQueued = false;
  /** Scripts known to be cached by the server behind the current connection. */
  readonly #loaded = new Set<ScriptName>();
  #reapScheduled = false;
  #nonce = 0;
  /** Names this driver's grant channel; the nonce of a queued call is `<id>:<n>`. */
  readonly #id = randomBytes(6).toString('hex');
  /** Queued calls by nonce, told of their grant on the grant channel. */
  readonly #grants = new Map<string, (token: string) => void>();
  #grantChannel: Unsubscribe | undefined;
  #closed = false;

  constructor(Redis: RedisConstructor, settings: RedisSettings, context: DriverContext) {
    this.#Redis = Redis;
    this.#settings = settings;
    this.#context = context;
    this.#prefix = `{${context.namespace}}:`;
    this.#ttlMs = context.sessionTtlMs;
    this.#sentinel = settings.base.sentinels !== undefined;
    this.#cmd = createClient(Redis, settings.base, 'command', context.sessionTtlMs);
    this.#subscriber = new Subscriber(
      createClient(Redis, settings.base, 'subscriber', context.sessionTtlMs),
      {
        reconnected: () => {
          // Messages published while the subscriber was down are lost: every waiter and lock watch checks again, and
          // so do the holders (a deletion of their key may have gone unheard).
          for (const listener of [...this.#lockWatchers]) listener();
          this.#scheduleReap();
          this.#checkSoon();
        },
        flushed: () => {
          void this.#check(true);
        },
      },
      this.#sentinel,
    );
    let wasDown = false;
    this.#cmd.on('close', () => {
      wasDown = true;
      this.#loaded.clear();
    });
    this.#cmd.on('ready', () => {
      if (!wasDown) return;
      wasDown = false;
      // A server restarted without persistence forgot every session, and a promoted replica may lack the latest
      // grants: say so now, not at the next renewal.
      void this.#check(true);
    });
  }

  async start(signal: AbortSignal): Promise<void> {
    try {
      await Promise.all([open(this.#cmd), open(this.#subscriber.client)]);
      await this.#probe(signal);
    } catch (error) {
      this.destroy();
      throw error;
    }
  }

  /**
   * One exchange per connection before the driver is handed out: every script cached (later calls send only the
   * SHA1), the eviction and notification settings read, and every permission the driver needs tried (PROBE, EVALSHA,
   * XREAD here; SUBSCRIBE on the subscriber, which also subscribes this driver's grant channel for good). A user that
   * lacks any is refused with one ERR_REFUSED naming all that is missing. A server busy with a script (or loading its
   * data, which ioredis' ready check mostly waits out) is waited for.
   */
  async #probe(signal: AbortSignal): Promise<void> {
    const scripts = Object.values(SCRIPTS);
    const routing = `${this.#prefix}ss`;
    const subscribing = this.#subscriber
      .start()
      .then(() => this.#listenForGrants())
      .then(
        () => undefined,
        (error: unknown) => error as Error,
      );
    for (;;) {
      const pipeline = this.#cmd.pipeline();
      pipeline.call('CONFIG', 'GET', 'maxmemory*');
      pipeline.call('CONFIG', 'GET', 'notify-keyspace-events');
      for (const script of scripts) pipeline.call('SCRIPT', 'LOAD', script.source);
      pipeline.eval(PROBE.source, 1, routing, this.#prefix);
      pipeline.evalsha(PROBE.sha, 1, routing, this.#prefix);
      pipeline.call('XREAD', 'COUNT', '1', 'STREAMS', `${this.#prefix}x:`, '0-0');
      const [replies, subscribed] = await Promise.all([pipeline.exec(), subscribing]);
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
      if (loads.length === scripts.length && loads.every(([error]) => error === null)) {
        for (const name of Object.keys(SCRIPTS) as ScriptName[]) this.#loaded.add(name);
      }
      this.#refuseMissing([
        ['EVAL', probe?.[0] ?? null],
        ['EVALSHA', probeSha?.[0] ?? null],
        ['XREAD', xread?.[0] ?? null],
        ['SUBSCRIBE', subscribed ?? null],
        ...this.#probeRefusals(probe),
      ]);
      // Anything else that failed here is the link or the server, not a permission: a connection error.
      const failed = probe?.[0] ?? probeSha?.[0] ?? xread?.[0] ?? subscribed;
      if (failed) throw toConcordError(failed, {}, this.#sentinel);
      this.#checkEviction(config);
      await this.#enableNotifications(notify);
      return;
    }
  }

  /** The commands PROBE's run reported refused: `<COMMAND>\t<error>` entries. */
  #probeRefusals(probe: [Error | null, unknown] | undefined): Array<[string, Error]> {
    if (!probe || probe[0] !== null || !Array.isArray(probe[1])) return [];
    return (probe[1] as string[]).map((entry) => {
      const tab = entry.indexOf('\t');
      return [entry.slice(0, tab), new Error(entry.slice(tab + 1))];
    });
  }

  /** Throws one ERR_REFUSED naming every command, key pattern and channel pattern the server refused this user. */
  #refuseMissing(outcomes: Array<[string, Error | null]>): void {
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
    const pattern = `${this.#prefix}*`;
    const user = this.#settings.base.username ?? 'default';
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
  #checkEviction(reply: [Error | null, unknown] | undefined): void {
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
    debug(
      'redis may evict keys (maxmemory %d, maxmemory-policy %s): locks and sessions may vanish under memory pressure',
      maxmemory,
      policy,
    );
    if (policy.startsWith('allkeys-') && !this.#settings.allowEviction) {
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
  async #enableNotifications(reply: [Error | null, unknown] | undefined): Promise<void> {
    if (!reply || reply[0] !== null) {
      debug('cannot read notify-keyspace-events (%s): no keyspace notifications', reply?.[0]?.message);
      return;
    }
    let flags = (reply[1] as string[])[1] ?? '';
    const has = (type: string, event: string): boolean => flags.includes(type) && (flags.includes(event) || flags.includes('A'));
    if (this.#settings.keyspaceEvents && !(has('E', 'x') && has('K', 'g'))) {
      const wanted = ['K', 'E', 'g', 'x'].filter((flag) => !flags.includes(flag)).join('');
      try {
        await this.#cmd.call('CONFIG', 'SET', 'notify-keyspace-events', `${flags}${wanted}`);
        flags += wanted;
      } catch (error) {
        debug('cannot turn on keyspace notifications: %s', (error as Error).message);
      }
    }
    this.#notify = { expired: has('E', 'x'), deleted: has('K', 'g') };
  }

  // ---- plumbing

  async #run(name: ScriptName, args: readonly string[], context?: ErrorContext): Promise<unknown> {
    if (this.#closed) throw new ConcordError('ERR_CONNECTION', 'the redis connection is closed');
    const script = SCRIPTS[name];
    const argv = [this.#prefix, ...args];
    const routing = `${this.#prefix}ss`;
    try {
      // EVAL the first time on each connection: an EVALSHA answered NOSCRIPT and then sent again as EVAL would run
      // after commands sent in between, reordering (say) a release behind the next acquire.
      if (!this.#loaded.has(name)) {
        const reply: unknown = await this.#cmd.eval(script.source, 1, routing, ...argv);
        this.#loaded.add(name);
        return reply;
      }
      try {
        return await this.#cmd.evalsha(script.sha, 1, routing, ...argv);
      } catch (error) {
        if (!isNoScript(error)) throw error;
        this.#loaded.clear();
        return await this.#cmd.eval(script.source, 1, routing, ...argv);
      }
    } catch (error) {
      throw toConcordError(error, context, this.#sentinel);
    }
  }

  /** The subscriber connection, opened with the command connection so a first watch subscribes in one round trip. */
  #sub(): Promise<Subscriber> {
    if (this.#closed) return Promise.reject(new ConcordError('ERR_CONNECTION', 'the redis connection is closed'));
    if (this.#notify.expired && !this.#expiryListening) {
      // Only coordinators that watch or wait listen for expiries: plain members need not all reap on every one.
      this.#expiryListening = true;
      void this.#listenForExpiry(this.#subscriber);
    }
    return Promise.resolve(this.#subscriber);
  }

  /** Expired session keys reaped at once. */
  async #listenForExpiry(subscriber: Subscriber): Promise<void> {
    const sessionKeys = `${this.#prefix}s:`;
    try {
      await subscriber.add(`__keyevent@${this.#settings.db}__:expired`, (key) => {
        if (!key.startsWith(sessionKeys)) return;
        const sid = key.slice(sessionKeys.length);
        if (this.#sessions.has(sid)) this.#expire(sid);
        this.#scheduleReap();
      });
    } catch (error) {
      debug('cannot subscribe to expiry notifications: %s', (error as Error).message);
    }
  }

  /** One reap per burst of expiries; a random delay spreads the reapers of many coordinators. */
  #scheduleReap(): void {
    if (this.#reapScheduled || this.#closed) return;
    this.#reapScheduled = true;
    const timer = setTimeout(() => {
      this.#reapScheduled = false;
      if (this.#closed) return;
      this.#run('reap', [String(REAP_LIMIT * 4)]).catch((error: unknown) => {
        debug('reap failed: %s', (error as Error).message);
      });
    }, Math.random() * 20);
    timer.unref();
  }

  #streamReader(): StreamReader {
    if (!this.#reader) {
      this.#readerClient = createClient(this.#Redis, this.#settings.base, 'reader', this.#ttlMs);
      this.#reader = new StreamReader(this.#readerClient, this.#cmd);
    }
    return this.#reader;
  }

  // ---- held locks: watched while held

  /** The backend granted kind/name to sid: watch its key until it is released. */
  #hold(kind: LockKind, name: string, sid: string, token: string): void {
    const lk = lockKey(kind, name);
    this.#held.set(lk, { kind, name, sid, token, since: performance.now() });
    if (this.#notify.deleted && !this.#keyWatches.has(lk)) this.#armKeyWatches();
  }

  /**
   * Only a lock held a while gets its key watched: a short hold (the common, benchmarked case) costs nothing more, not
   * even a timer of its own or its release's notification, and it ends before an operator could take an interest.
   * One timer for all, while anything is held and not yet watched.
   */
  #armKeyWatches(): void {
    if (this.#keyWatchTimer || this.#closed) return;
    this.#keyWatchTimer = setTimeout(() => {
      this.#keyWatchTimer = undefined;
      const now = performance.now();
      let waiting = false;
      for (const [lk, held] of this.#held) {
        if (this.#keyWatches.has(lk)) continue;
        if (now - held.since < KEY_WATCH_AFTER_MS) waiting = true;
        else this.#watchKey(lk);
      }
      if (waiting) this.#armKeyWatches();
    }, KEY_WATCH_AFTER_MS);
    this.#keyWatchTimer.unref();
  }

  /**
   * Subscribes to the keyspace notifications of a held lock's key, then checks the lock once (a deletion before the
   * subscription was confirmed would go unheard otherwise): the holder hears of a deletion at any time within twice
   * KEY_WATCH_AFTER_MS and a few round trips, and of one after that within a round trip.
   */
  #watchKey(lk: string): void {
    if (!this.#notify.deleted || this.#closed) return;
    const watch: KeyWatch = { stop: undefined, cancelled: false };
    this.#keyWatches.set(lk, watch);
    this.#subscriber
      .add(`__keyspace@${this.#settings.db}__:${this.#prefix}l:${lk}`, (event) => {
        // Our own grants write the hash (hset); anything else done to a held lock's key is looked at.
        if (!event.startsWith('h') && this.#held.has(lk)) this.#checkSoon();
      })
      .then(
        (stop) => {
          if (watch.cancelled) {
            stop();
            return;
          }
          watch.stop = stop;
          this.#checkSoon();
        },
        (error: unknown) => {
          if (this.#keyWatches.get(lk) === watch) this.#keyWatches.delete(lk);
          debug('cannot watch the key of %s: %s', lk, (error as Error).message);
          // An ACL without the __keyspace@ channels refuses every one: stop asking (renewals still check).
          if (isConcordError(error, 'ERR_REFUSED')) this.#notify = { ...this.#notify, deleted: false };
        },
      );
  }

  /** kind/name is no longer held by this driver (released, given back, or lost). */
  #unhold(lk: string): void {
    this.#held.delete(lk);
    const watch = this.#keyWatches.get(lk);
    if (!watch) return;
    this.#keyWatches.delete(lk);
    watch.cancelled = true;
    watch.stop?.();
  }

  /** Forgets a session that ended (closed, expired, or replaced): its locks went with it. */
  #forget(sid: string): void {
    this.#sessions.delete(sid);
    for (const [lk, held] of [...this.#held]) if (held.sid === sid) this.#unhold(lk);
  }

  #expire(sid: string): void {
    this.#forget(sid);
    this.#context.events.sessionExpired(sid);
  }

  /** `<kind>:<name>`, token for every lock sid holds, as the scripts take them. */
  #heldBy(sid: string): string[] {
    const pairs: string[] = [];
    for (const [lk, held] of this.#held) if (held.sid === sid) pairs.push(lk, held.token);
    return pairs;
  }

  /** The backend says sid no longer holds these locks (of `pairs`, as sent): each one still held as sent is lost. */
  #lost(sid: string, pairs: readonly string[], lost: readonly string[]): void {
    for (const lk of lost) {
      const at = pairs.indexOf(lk);
      const token = at >= 0 && at % 2 === 0 ? pairs[at + 1] : undefined;
      const held = this.#held.get(lk);
      // Released, or acquired again since the check was sent: not this loss.
      if (!held || held.sid !== sid || held.token !== token) continue;
      this.#unhold(lk);
      debug('%s %s was taken from session %s outside concord', held.kind, held.name, sid);
      this.#context.events.lockLost(held.kind, held.name, BigInt(held.token));
    }
  }

  /** One check for a burst of notifications. */
  #checkSoon(): void {
    if (this.#checkQueued || this.#closed) return;
    this.#checkQueued = true;
    queueMicrotask(() => {
      this.#checkQueued = false;
      void this.#check(false);
    });
  }

  /** Asks the backend whether the held locks (and, when `sessions`, every session) still exist. */
  async #check(sessions: boolean): Promise<void> {
    if (this.#closed) return;
    const sids = new Set<string>(sessions ? this.#sessions.keys() : []);
    for (const held of this.#held.values()) sids.add(held.sid);
    await Promise.all(
      [...sids].map(async (sid) => {
        const pairs = this.#heldBy(sid);
        let reply: unknown;
        try {
          reply = await this.#run('check', [sid, ...pairs]);
        } catch (error) {
          debug('checking session %s failed: %s', sid, (error as Error).message);
          return;
        }
        const [alive, ...lost] = reply as [number, ...string[]];
        if (alive !== 1) {
          if (this.#sessions.has(sid)) this.#expire(sid);
          else this.#forget(sid);
          return;
        }
        this.#lost(sid, pairs, lost);
      }),
    );
  }

  // ---- sessions

  async openSession(ttlMs: number): Promise<string> {
    const sid = randomBytes(12).toString('hex');
    await this.#run('openSession', [sid, this.#context.member, String(Math.ceil(ttlMs))]);
    this.#sessions.set(sid, Math.ceil(ttlMs));
    return sid;
  }

  /** Renews, and checks on the way that the session still holds every lock it was granted. */
  async renewSession(sessionId: string): Promise<boolean> {
    const ttl = this.#sessions.get(sessionId) ?? Math.ceil(this.#ttlMs);
    const pairs = this.#heldBy(sessionId);
    const reply = await this.#run('renewSession', [sessionId, String(ttl), String(REAP_LIMIT), ...pairs]);
    if (!Array.isArray(reply)) {
      this.#forget(sessionId);
      return false;
    }
    this.#lost(sessionId, pairs, (reply as unknown[]).slice(1) as string[]);
    return true;
  }

  async closeSession(sessionId: string): Promise<void> {
    this.#forget(sessionId);
    await this.#run('closeSession', [sessionId]);
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    clearTimeout(this.#keyWatchTimer);
    this.#readerClient?.disconnect();
    await this.#reader?.stop();
    this.#subscriber.dispose();
    await Promise.all([quit(this.#cmd), quit(this.#subscriber.client)]);
  }

  destroy(): void {
    if (this.#closed) return;
    this.#closed = true;
    clearTimeout(this.#keyWatchTimer);
    this.#readerClient?.disconnect();
    void this.#reader?.stop();
    this.#cmd.disconnect();
    this.#subscriber.dispose();
    this.#subscriber.client.disconnect();
  }

  // ---- groups

  async createGroup(group: string): Promise<void> {
    await this.#run('createGroup', [group], { group });
  }

  async deleteGroup(group: string): Promise<void> {
    await this.#run('deleteGroup', [group, String(HISTORY_MS)], { group });
  }

  async listGroups(): Promise<string[]> {
    return ((await this.#run('listGroups', [])) as string[]).sort();
  }

  async joinGroup(group: string, member: string, sessionId: string, capabilities: Capabilities, create: boolean): Promise<void> {
    await this.#run('joinGroup', [group, member, sessionId, JSON.stringify(capabilities), create ? '1' : '0'], { group, member });
  }

  async leaveGroup(group: string, member: string): Promise<void> {
    await this.#run('leaveGroup', [group, member], { group, member });
  }

  async updateMember(group: string, member: string, capabilities: Capabilities): Promise<void> {
    await this.#run('updateMember', [group, member, JSON.stringify(capabilities)], { group, member });
  }

  async getMembers(group: string): Promise<GroupSnapshot> {
    const [exists, flat, id, seq] = (await this.#run('getMembers', [group], { group })) as [number, string[], string, string];
    const members: Member[] = [];
    for (let i = 0; i + 1 < flat.length; i += 2) {
      const value = flat[i + 1] ?? '';
      members.push({ id: flat[i] ?? '', capabilities: JSON.parse(value.slice(value.indexOf(' ') + 1)) as Capabilities });
    }
    members.sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
    return { exists: exists === 1, members, revision: `${id} ${seq}` };
  }

  watchGroup(group: string, fromRevision: Revision, sink: WatchSink): Promise<Unsubscribe> {
    if (this.#closed) return Promise.reject(new ConcordError('ERR_CONNECTION', 'the redis connection is closed'));
    const [id = '0-0', seq = '0'] = String(fromRevision).split(' ');
    const reader = this.#streamReader();
    // Crashed members are noticed sooner by a watcher that hears about expiries.
    this.#sub().catch(() => undefined);
    const watch: StreamWatch = { key: `${this.#prefix}x:${group}`, group, sink, id, seq: Number(seq), active: true };
    reader.add(watch);
    return Promise.resolve(() => {
      reader.remove(watch);
    });
  }

  // ---- locks

  async tryLock(kind: LockKind, name: string, sessionId: string, member: string): Promise<bigint | undefined> {
    const nonce = String(++this.#nonce);
    const [held, value] = (await this.#run('acquire', [lockKey(kind, name), sessionId, member, 'try', '0', nonce])) as [
      number,
      number | string,
    ];
    if (held !== 1) return undefined;
    this.#hold(kind, name, sessionId, String(value));
    return BigInt(value);
  }

  /**
   * The fair wait. One attempt first; when it queues us, listen on this driver's grant channel (subscribed once) and
   * wait for the grant addressed to this call's nonce, which the releasing script publishes, with the token, after
   * handing us the lock. Expiry publishes nothing, so we also re-check when the holder's session is due to expire,
   * and at least every ttl/3 (which keeps our queue entry fresh, and catches a release we were not told of).
   */
  async acquireLock(
    kind: LockKind,
    name: string,
    sessionId: string,
    member: string,
    signal: AbortSignal,
    queued: () => void,
  ): Promise<bigint> {
    if (signal.aborted) throw abortedError(signal);
    const lk = lockKey(kind, name);
    const nonce = `${this.#id}:${String(++this.#nonce)}`;
    let granted: string | undefined;
    let wake = (): void => undefined;
    this.#grants.set(nonce, (token) => {
      granted = token;
      wake();
    });
    const wakeAll = (): void => {
      wake();
    };
    this.#lockWatchers.add(wakeAll);
    try {
      let listening = this.#grantChannel !== undefined;
      const refreshMs = this.#ttlMs / 3;
      for (;;) {
        if (signal.aborted) throw abortedError(signal);
        const woken = new Promise<void>((resolve) => {
          wake = resolve;
        });
        const [held, value] = (await this.#run('acquire', [lk, sessionId, member, 'wait', String(Math.ceil(this.#ttlMs)), nonce])) as [
          number,
          number | string,
        ];
        if (held === 1) return this.#granted(kind, name, sessionId, String(value));
        if (granted !== undefined) return this.#granted(kind, name, sessionId, granted);
        if (!listening) {
          // Queued before we listened: subscribe, then look again, so a grant in between is not missed.
          await this.#listenForGrants();
          listening = true;
          continue;
        }
        queued();
        const holderMs = Number(value);
        const recheckMs = holderMs >= 0 ? Math.min(holderMs + 2, refreshMs) : refreshMs;
        await waitForWake(woken, recheckMs, signal);
        if (granted !== undefined) return this.#granted(kind, name, sessionId, granted);
      }
    } catch (error) {
      if (signal.aborted) {
        // The last attempt may have queued us (or granted us the lock) even if its reply never came: undo what this
        // wait (its nonce) left. Whatever this misses, the core's cancelLock ends afterwards.
        await this.#run('abandon', [lk, sessionId, nonce]).catch((cancelError: unknown) => {
          debug('leaving the queue of %s failed: %s', lk, (cancelError as Error).message);
        });
        throw abortedError(signal);
      }
      throw toConcordError(error, {}, this.#sentinel);
    } finally {
      this.#lockWatchers.delete(wakeAll);
      this.#grants.delete(nonce);
    }
  }

  #granted(kind: LockKind, name: string, sid: string, token: string): bigint {
    this.#hold(kind, name, sid, token);
    return BigInt(token);
  }

  /**
   * This driver's grant channel, subscribed on the first wait and kept: a grant reaches only the waiter it is for
   * (not every coordinator listening on the lock), with the token, so taking the lock costs it no round trip.
   */
  async #listenForGrants(): Promise<void> {
    if (this.#grantChannel) return;
    const unsubscribe = await (
      await this.#sub()
    ).add(`${this.#prefix}w:${this.#id}`, (text) => {
      const space = text.indexOf(' ');
      this.#grants.get(text.slice(0, space))?.(text.slice(space + 1));
    });
    if (this.#grantChannel) unsubscribe();
    else this.#grantChannel = unsubscribe;
  }

  /**
   * Ends the session's queue entry and gives back a lock granted to it meanwhile (handed on as a release does). Keyed
   * by session: the core calls it only when this session holds no lock of that name and nothing else acquires it.
   * Failures reject with ERR_CONNECTION and are retried by the core, never here (a late replay could free a lock the
   * session acquired again since).
   */
  async cancelLock(kind: LockKind, name: string, sessionId: string): Promise<void> {
    const lk = lockKey(kind, name);
    if (this.#held.get(lk)?.sid === sessionId) this.#unhold(lk);
    await this.#run('cancel', [lk, sessionId]);
  }

  async unlock(kind: LockKind, name: string, sessionId: string, token: bigint): Promise<void> {
    const lk = lockKey(kind, name);
    const value = token.toString();
    // Before the release is sent: the deletion it causes is ours, not news.
    const held = this.#held.get(lk);
    if (held?.sid === sessionId && held.token === value) this.#unhold(lk);
    await this.#run('unlock', [lk, sessionId, value]);
  }

  async lockHolder(kind: LockKind, name: string): Promise<LockHolder | undefined> {
    const reply = (await this.#run('holder', [lockKey(kind, name)])) as string[];
    const [member, token] = reply;
    return member === undefined || token === undefined ? undefined : { member, token: BigInt(token) };
  }

  /**
   * Resolves at once: the subscription is made in the background (retried while the link is down), and the listener
   * is called once it is confirmed, so a caller that reads right away and again on each call misses nothing.
   */
  watchLock(kind: LockKind, name: string, listener: () => void): Promise<Unsubscribe> {
    if (this.#closed) return Promise.reject(new ConcordError('ERR_CONNECTION', 'the redis connection is closed'));
    const channel = `${this.#prefix}c:${lockKey(kind, name)}`;
    let stopped = false;
    let unsubscribe: Unsubscribe | undefined;
    const notify = (): void => {
      if (!stopped) listener();
    };
    this.#lockWatchers.add(notify);
    void (async () => {
      let delayMs = 10;
      while (!stopped && !this.#closed) {
        try {
          const subscriber = await this.#sub();
          const done = await subscriber.add(channel, notify);
          if (stopped) done();
          else {
            unsubscribe = done;
            notify();
          }
          return;
        } catch (error) {
          debug('watching %s failed: %s', channel, (error as Error).message);
          await sleep(delayMs);
          delayMs = Math.min(delayMs * 2, this.#ttlMs / 3);
        }
      }
    })();
    return Promise.resolve(() => {
      stopped = true;
      this.#lockWatchers.delete(notify);
      unsubscribe?.();
    });
  }
}

/**
 * Connects, or gives up when `context.signal` aborts (the caller's abort, or connectTimeoutMs running out): then every
 * connection is dropped at once, with its retries, and nothing is left to keep the process alive.
 */
export async function createDriver(context: DriverContext): Promise<Driver> {
  let settings = redisSettings(context.url, context.rawUrl, context.params, context.sessionTtlMs, context.connectTimeoutMs);
  const module = await importClient<{ Redis: RedisConstructor; SentinelConnector: unknown }>('ioredis', context.url.protocol.slice(0, -1));
  if (settings.base.sentinels)
    settings = { ...settings, base: { ...settings.base, Connector: quietSentinelConnector(module.SentinelConnector) } };
  const { signal } = context;
  if (signal.aborted) throw abortedError(signal, 'connecting');
  const driver = new RedisDriver(module.Redis, settings, context);
  const onAbort = (): void => {
    driver.destroy();
  };
  signal.addEventListener('abort', onAbort, { once: true });
  try {
    await driver.start(signal);
  } catch (error) {
    if (signal.aborted) throw abortedError(signal, 'connecting');
    throw error;
  } finally {
    signal.removeEventListener('abort', onAbort);
  }
  return driver;
}
