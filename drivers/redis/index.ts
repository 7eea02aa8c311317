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
 * Memory: evicted keys are lost locks, queues and sessions, so the server should run with maxmemory-policy noeviction
 * (then a full server refuses writes, which callers see as ERR_CONNECTION). When CONFIG GET shows maxmemory set with
 * an allkeys-* policy, connecting fails with ERR_CONNECTION naming the setting unless the URL says
 * ?allowEviction=true. A volatile-* policy is only logged (debug), but it too may evict session keys (they have a
 * TTL), ending a session early: a holder learns it at its next renewal, after a waiter may have been granted the lock.
 * The settings are read once, at connect; a server whose CONFIG is refused or changed later is not checked.
 *
 * Connections per coordinator: commands, pub/sub, and (once a group is watched) one for blocking stream reads.
 * An ACL user needs the key pattern `{namespace}:*` (or `~*`), `&*` for channels, and the categories +@read +@write
 * +@scripting +@pubsub +@stream +@connection +time; optional: +client|id +client|unblock (a new watch joins a blocked read
 * at once instead of within 250 ms) and +config|get +config|set (keyspace notifications for faster reaping).
 */
import { randomBytes } from 'node:crypto';
import type { Redis as RedisClient } from 'ioredis';
import { importClient } from '../../src/client.js';
import { sleep, waitForWake } from '../../src/clock.js';
import { debug } from '../../src/debug.js';
import { ConcordError, abortedError, type ErrorCode } from '../../src/errors.js';
import type { Driver, DriverContext, GroupSnapshot, LockHolder, LockKind, Revision, Unsubscribe, WatchSink } from '../../src/driver.js';
import type { Capabilities, Features, Member } from '../../src/types.js';
import { createClient, open, quit, type RedisConstructor } from './connection.js';
import { redisSettings, type RedisSettings } from './options.js';
import { Subscriber } from './pubsub.js';
import { StreamReader, type StreamWatch } from './reader.js';
import { SCRIPTS, type ScriptName } from './scripts.js';

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

/** Script refusals become their ConcordError; anything else from the server or the link is ERR_CONNECTION. */
function toConcordError(error: unknown, context: ErrorContext = {}): ConcordError {
  if (error instanceof ConcordError) return error;
  const text = error instanceof Error ? error.message : String(error);
  const match = /CONCORD (ERR_[A-Z_]+)/.exec(text);
  if (match?.[1]) {
    const code = match[1] as ErrorCode;
    return new ConcordError(code, message(code, context));
  }
  return new ConcordError('ERR_CONNECTION', `redis: ${text}`, { cause: error });
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
  readonly #cmd: RedisClient;
  readonly #subscriber: Subscriber;
  #expiryEvents = false;
  #reader: StreamReader | undefined;
  #readerClient: RedisClient | undefined;
  readonly #sessions = new Map<string, number>();
  readonly #lockWatchers = new Set<() => void>();
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
    this.#cmd = createClient(Redis, settings.base, 'command', context.sessionTtlMs);
    this.#subscriber = new Subscriber(createClient(Redis, settings.base, 'subscriber', context.sessionTtlMs), () => {
      // Messages published while the subscriber was down are lost: every waiter and lock watch checks again.
      for (const listener of [...this.#lockWatchers]) listener();
      this.#scheduleReap();
    });
    let wasDown = false;
    this.#cmd.on('close', () => {
      wasDown = true;
      this.#loaded.clear();
    });
    this.#cmd.on('ready', () => {
      if (!wasDown) return;
      wasDown = false;
      // A server restarted without persistence forgot every session: say so now, not at the next renewal.
      for (const sid of this.#sessions.keys()) {
        this.#cmd.exists(`${this.#prefix}s:${sid}`).then(
          (n) => {
            if (n === 0 && this.#sessions.has(sid)) this.#context.events.sessionExpired(sid);
          },
          () => undefined,
        );
      }
    });
  }

  async start(): Promise<void> {
    try {
      await Promise.all([open(this.#cmd), open(this.#subscriber.client)]);
    } catch (error) {
      this.destroy();
      throw error;
    }
    // Every script cached up front: later calls send only the SHA1.
    try {
      const pipeline = this.#cmd.pipeline();
      for (const script of Object.values(SCRIPTS)) pipeline.call('SCRIPT', 'LOAD', script.source);
      const replies = (await pipeline.exec()) ?? [];
      if (replies.every(([error]) => error === null)) for (const name of Object.keys(SCRIPTS) as ScriptName[]) this.#loaded.add(name);
    } catch (error) {
      debug('loading scripts failed: %s', (error as Error).message);
    }
    await this.#checkEviction();
  }

  /**
   * A server that may evict any key under memory pressure could drop a lock, a queue or a session without a word: a
   * silent double grant. Refused (unless ?allowEviction=true) when CONFIG GET says so; unreadable settings pass.
   */
  async #checkEviction(): Promise<void> {
    let settings: Map<string, string>;
    try {
      const reply = (await this.#cmd.call('CONFIG', 'GET', 'maxmemory*')) as string[];
      settings = new Map<string, string>();
      for (let i = 0; i + 1 < reply.length; i += 2) settings.set(reply[i] ?? '', reply[i + 1] ?? '');
    } catch (error) {
      debug('cannot read the eviction settings (%s): make sure maxmemory-policy is noeviction', (error as Error).message);
      return;
    }
    const policy = settings.get('maxmemory-policy') ?? 'noeviction';
    const maxmemory = Number(settings.get('maxmemory') ?? '0');
    if (policy === 'noeviction' || !(maxmemory > 0)) return;
    debug(
      'redis may evict keys (maxmemory %d, maxmemory-policy %s): locks and sessions may vanish under memory pressure',
      maxmemory,
      policy,
    );
    if (policy.startsWith('allkeys-') && !this.#settings.allowEviction) {
      this.destroy();
      throw new ConcordError(
        'ERR_CONNECTION',
        `redis may evict any key (maxmemory-policy ${policy} with maxmemory ${String(maxmemory)}), which can drop a held lock ` +
          'and grant it twice: set maxmemory-policy noeviction, or add ?allowEviction=true to the url to accept the risk',
      );
    }
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
      throw toConcordError(error, context);
    }
  }

  /** The subscriber connection, opened with the command connection so a first watch subscribes in one round trip. */
  #sub(): Promise<Subscriber> {
    if (this.#closed) return Promise.reject(new ConcordError('ERR_CONNECTION', 'the redis connection is closed'));
    if (this.#settings.keyspaceEvents && !this.#expiryEvents) {
      // Only coordinators that watch or wait listen for expiries: plain members need not all reap on every one.
      this.#expiryEvents = true;
      void this.#listenForExpiry(this.#subscriber);
    }
    return Promise.resolve(this.#subscriber);
  }

  /** Expired session keys reaped at once: turn the notifications on when allowed; never depend on them. */
  async #listenForExpiry(subscriber: Subscriber): Promise<void> {
    try {
      const reply = (await this.#cmd.call('CONFIG', 'GET', 'notify-keyspace-events')) as string[];
      const flags = reply[1] ?? '';
      const on = flags.includes('E') && (flags.includes('x') || flags.includes('A'));
      if (!on) await this.#cmd.call('CONFIG', 'SET', 'notify-keyspace-events', `${flags}Ex`);
    } catch (error) {
      debug('keyspace notifications unavailable: %s', (error as Error).message);
    }
    const sessionKeys = `${this.#prefix}s:`;
    try {
      await subscriber.add(`__keyevent@${this.#settings.db}__:expired`, (key) => {
        if (!key.startsWith(sessionKeys)) return;
        const sid = key.slice(sessionKeys.length);
        if (this.#sessions.has(sid)) this.#context.events.sessionExpired(sid);
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

  // ---- sessions

  async openSession(ttlMs: number): Promise<string> {
    const sid = randomBytes(12).toString('hex');
    await this.#run('openSession', [sid, this.#context.member, String(Math.ceil(ttlMs))]);
    this.#sessions.set(sid, Math.ceil(ttlMs));
    return sid;
  }

  async renewSession(sessionId: string): Promise<boolean> {
    const ttl = this.#sessions.get(sessionId) ?? Math.ceil(this.#ttlMs);
    return (await this.#run('renewSession', [sessionId, String(ttl), String(REAP_LIMIT)])) === 1;
  }

  async closeSession(sessionId: string): Promise<void> {
    this.#sessions.delete(sessionId);
    await this.#run('closeSession', [sessionId]);
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#readerClient?.disconnect();
    await this.#reader?.stop();
    this.#subscriber.dispose();
    await Promise.all([quit(this.#cmd), quit(this.#subscriber.client)]);
  }

  destroy(): void {
    if (this.#closed) return;
    this.#closed = true;
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
    return held === 1 ? BigInt(value) : undefined;
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
        if (held === 1) return BigInt(value);
        if (granted !== undefined) return BigInt(granted);
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
        if (granted !== undefined) return BigInt(granted);
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
      throw toConcordError(error);
    } finally {
      this.#lockWatchers.delete(wakeAll);
      this.#grants.delete(nonce);
    }
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
    await this.#run('cancel', [lockKey(kind, name), sessionId]);
  }

  async unlock(kind: LockKind, name: string, sessionId: string, token: bigint): Promise<void> {
    await this.#run('unlock', [lockKey(kind, name), sessionId, token.toString()]);
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

export async function createDriver(context: DriverContext): Promise<Driver> {
  const settings = redisSettings(context.url, context.rawUrl, context.params, context.sessionTtlMs);
  const module = await importClient<{ Redis: RedisConstructor }>('ioredis', context.url.protocol.slice(0, -1));
  const driver = new RedisDriver(module.Redis, settings, context);
  const { signal } = context;
  if (signal?.aborted) throw abortedError(signal, 'connecting');
  const onAbort = (): void => {
    driver.destroy();
  };
  signal?.addEventListener('abort', onAbort, { once: true });
  try {
    await driver.start();
  } catch (error) {
    if (signal?.aborted) throw abortedError(signal, 'connecting');
    throw error;
  } finally {
    signal?.removeEventListener('abort', onAbort);
  }
  return driver;
}
