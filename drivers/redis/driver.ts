/**
 * The Redis driver's implementation: sessions, groups and locks as one Lua script each (scripts.ts), on a command
 * connection, a subscriber connection (pubsub.ts: lock grants, lock watches, expiries, flushes) and, once a group is
 * watched, a connection for blocking stream reads (reader.ts). Connecting runs the checks of probe.ts; held locks are
 * watched by held.ts. index.ts states what the driver promises.
 */
import { randomBytes } from 'node:crypto';
import type { Redis as RedisClient } from 'ioredis';
import { importClient } from '../../src/client.js';
import { sleep } from '../../src/clock.js';
import { debug } from '../../src/debug.js';
import { ConcordError, abortedError } from '../../src/errors.js';
import type {
  Driver,
  DriverContext,
  GroupSnapshot,
  LockHolder,
  LockKind,
  LockListing,
  LockWaiter,
  LockMode,
  Revision,
  Unsubscribe,
  WatchSink,
} from '../../src/driver.js';
import { Wakeup, compareIds, connectionClosed, limitMismatch, parseCapabilities } from '../../src/kit/index.js';
import type { Capabilities, Member } from '../../src/types.js';
import { createClient, open, quietSentinelConnector, quit, type RedisConstructor } from './connection.js';
import { isNoScript, toConcordError, type ErrorContext } from './errors.js';
import { HeldLocks } from './held.js';
import { features } from './index.js';
import { SlotLocator, slotConnector } from './cluster.js';
import { redisSettings, type RedisSettings } from './options.js';
import { probeServer } from './probe.js';
import { Subscriber } from './pubsub.js';
import { StreamReader, type StreamWatch } from './reader.js';
import { SCRIPTS, holdKey, isShared, lockKey, requestId, type ScriptName } from './scripts.js';

/** Expired sessions reaped per renewal at most (the rest on the next ones). */
const REAP_LIMIT = 16;
/** How long a deleted group's change stream is kept, so watchers of a re-created group carry on without a gap. */
const HISTORY_MS = 3_600_000;

class RedisDriver implements Driver {
  readonly features = features;
  readonly #Redis: RedisConstructor;
  readonly #settings: RedisSettings;
  readonly #context: DriverContext;
  readonly #prefix: string;
  readonly #ttlMs: number;
  /** Behind Sentinel or in a cluster: the master may move (a READONLY reply is not a refusal). */
  readonly #sentinel: boolean;
  /** KEYS of every script: the routing key, and in a cluster a key that never exists (cluster.ts says why). */
  readonly #scriptKeys: readonly string[];
  readonly #cmd: RedisClient;
  readonly #subscriber: Subscriber;
  /** The server publishes expired-key events (E and x). */
  #notifyExpired = false;
  #expiryListening = false;
  #reader: StreamReader | undefined;
  #readerClient: RedisClient | undefined;
  readonly #sessions = new Map<string, number>();
  readonly #lockWatchers = new Set<() => void>();
  /** Locks held by this driver's sessions, watched while held. */
  readonly #held: HeldLocks;
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
  /** ?replicas=N (0: not asked for): grants count, and releases end, once N replicas have them (WAIT). */
  readonly #replicas: number;
  /** How long one WAIT may take: everything sent after it on the command connection waits behind it. */
  readonly #replicaWaitMs: number;
  /** Counts closes of the command connection: a WAIT covers only the writes of its own connection. */
  #generation = 0;
  /** Scripts sent on the command connection so far. */
  #sent = 0;
  /** The last WAIT sent, with how many scripts had been sent before it (it covers those). */
  #lastWait: { readonly sent: number; readonly generation: number; readonly reply: Promise<unknown> } | undefined;

  constructor(Redis: RedisConstructor, settings: RedisSettings, context: DriverContext) {
    this.#Redis = Redis;
    this.#settings = settings;
    this.#context = context;
    this.#prefix = `{${context.namespace}}:`;
    this.#ttlMs = context.sessionTtlMs;
    this.#replicas = settings.replicas;
    // A sixth of the TTL at most: a renewal queued behind a WAIT or two still lands in time.
    this.#replicaWaitMs = Math.ceil(Math.max(50, Math.min(context.sessionTtlMs / 6, 2000)));
    this.#sentinel = settings.base.sentinels !== undefined || settings.clusterNodes !== undefined;
    this.#scriptKeys = settings.clusterNodes ? [`${this.#prefix}ss`, `${this.#prefix}moving`] : [`${this.#prefix}ss`];
    this.#cmd = createClient(Redis, settings.base, 'command', context.sessionTtlMs);
    this.#subscriber = new Subscriber(
      createClient(Redis, settings.base, 'subscriber', context.sessionTtlMs),
      {
        reconnected: () => {
          // Messages published while the subscriber was down are lost: every waiter and lock watch checks again, and
          // so do the holders (a deletion of their key may have gone unheard).
          for (const listener of [...this.#lockWatchers]) listener();
          this.#scheduleReap();
          this.#held.checkSoon();
        },
        flushed: () => {
          this.#checkSessions();
        },
      },
      this.#sentinel,
    );
    this.#held = new HeldLocks(this.#subscriber, `__keyspace@${String(settings.db)}__:${this.#prefix}l:`, {
      check: (sid, pairs) => this.#run('check', [sid, ...pairs]),
      sessionGone: (sid) => {
        if (this.#sessions.has(sid)) this.#expire(sid);
        else this.#forget(sid);
      },
      lockLost: (kind, name, token) => {
        this.#context.events.lockLost(kind, name, token);
      },
    });
    let wasDown = false;
    this.#cmd.on('close', () => {
      wasDown = true;
      this.#generation++;
      this.#loaded.clear();
      // Suspended now, not at the next renewal (up to TTL/3 away) that finds the link down. (After close() the core
      // has stopped its session machine, which ignores it.)
      this.#context.events.linkDown?.();
    });
    this.#cmd.on('ready', () => {
      if (!wasDown) return;
      wasDown = false;
      this.#followMaster();
      // A server restarted without persistence forgot every session, and a promoted replica may lack the latest
      // grants: say so now, not at the next renewal.
      this.#checkSessions();
      // The core renews at once: reconnected (or lost) as soon as the server answers.
      this.#context.events.linkUp?.();
    });
  }

  /**
   * In a cluster, the command connection found the namespace's slot on another master (a failover, or the slot was
   * moved while the old master lives on): the other connections follow, so keyspace notifications and flushes are
   * heard from the node that holds the keys.
   */
  #followMaster(): void {
    const locator = this.#settings.locator;
    if (!locator) return;
    const master = locator.connectedTo.get('concord-command');
    const others: RedisClient[] = [this.#subscriber.client, ...(this.#readerClient ? [this.#readerClient] : [])];
    for (const client of others) {
      const at = locator.connectedTo.get(client.options.connectionName ?? '');
      if (at !== undefined && at !== master && client.status === 'ready') {
        debug('redis cluster: %s moves from %s to %s', client.options.connectionName, at, master);
        client.disconnect(true);
      }
    }
  }

  /** Opens both connections and runs the connect-time checks (probe.ts); the grant channel is subscribed meanwhile. */
  async start(signal: AbortSignal): Promise<void> {
    try {
      await Promise.all([open(this.#cmd), open(this.#subscriber.client)]);
      const subscribed = this.#subscriber
        .start()
        .then(() => this.#listenForGrants())
        .then(
          () => undefined,
          (error: unknown) => error as Error,
        );
      const { scriptsLoaded, notifications } = await probeServer({
        client: this.#cmd,
        prefix: this.#prefix,
        user: this.#settings.base.username ?? 'default',
        sentinel: this.#sentinel,
        allowEviction: this.#settings.allowEviction,
        keyspaceEvents: this.#settings.keyspaceEvents,
        subscribed,
        signal,
      });
      if (scriptsLoaded) for (const name of Object.keys(SCRIPTS) as ScriptName[]) this.#loaded.add(name);
      this.#notifyExpired = notifications.expired;
      this.#held.watchKeys = notifications.deleted;
    } catch (error) {
      this.destroy();
      throw error;
    }
  }

  // ---- plumbing

  async #run(name: ScriptName, args: readonly string[], context?: ErrorContext): Promise<unknown> {
    if (this.#closed) throw connectionClosed('redis');
    const script = SCRIPTS[name];
    const keys = this.#scriptKeys;
    const argv = [this.#prefix, ...args];
    try {
      // EVAL the first time on each connection: an EVALSHA answered NOSCRIPT and then sent again as EVAL would run
      // after commands sent in between, reordering (say) a release behind the next acquire.
      if (!this.#loaded.has(name)) {
        this.#sent++;
        const reply: unknown = await this.#cmd.eval(script.source, keys.length, ...keys, ...argv);
        this.#loaded.add(name);
        return reply;
      }
      try {
        this.#sent++;
        return await this.#cmd.evalsha(script.sha, keys.length, ...keys, ...argv);
      } catch (error) {
        if (!isNoScript(error)) throw error;
        this.#loaded.clear();
        this.#sent++;
        return await this.#cmd.eval(script.source, keys.length, ...keys, ...argv);
      }
    } catch (error) {
      throw toConcordError(error, context, this.#sentinel);
    }
  }

  /**
   * ?replicas=N: true once N replicas have every script this connection sent so far, in `generation` (read before the
   * first of them was sent); false when they fell short within #replicaWaitMs or the connection was replaced
   * meanwhile. One WAIT serves every caller whose scripts were sent before it.
   */
  async #replicated(generation: number): Promise<boolean> {
    if (this.#closed) throw connectionClosed('redis');
    if (generation !== this.#generation) return false;
    let wait = this.#lastWait;
    if (wait?.generation !== generation || wait.sent < this.#sent) {
      wait = { sent: this.#sent, generation, reply: this.#cmd.call('WAIT', String(this.#replicas), String(this.#replicaWaitMs)) };
      this.#lastWait = wait;
    }
    let acked: number;
    try {
      acked = Number(await wait.reply);
    } catch (error) {
      throw toConcordError(error, undefined, this.#sentinel);
    }
    if (acked < this.#replicas) debug('redis: %d of %d replicas confirmed within %d ms', acked, this.#replicas, this.#replicaWaitMs);
    return generation === this.#generation && acked >= this.#replicas;
  }

  /**
   * ?replicas=N, after a script sent on this connection from `generation` wrote a grant or a release: it stands once N
   * replicas have it; else ERR_CONNECTION (the core retries, and reports no grant meanwhile).
   */
  async #written(generation: number): Promise<void> {
    if (this.#replicas === 0 || (await this.#replicated(generation))) return;
    throw new ConcordError(
      'ERR_CONNECTION',
      `redis: fewer than the ${String(this.#replicas)} replicas asked for (?replicas) confirmed the write within ${String(this.#replicaWaitMs)} ms`,
    );
  }

  /**
   * ?replicas=N, before a waiting call reports its grant: true once N replicas have it, false when the request does
   * not hold it with that token (any more, or on this master: a failover lost it). The grant may have been written by
   * another connection (a release or a reap handing it on), which a WAIT of ours would not cover, so confirm checks
   * the hold and writes on our connection first; replicas apply the stream in order, so ours covers the grant. While
   * the replicas fall short, it tries again (each try waits up to #replicaWaitMs) until the call is aborted.
   */
  async #confirm(key: string, id: string, token: string, signal: AbortSignal): Promise<boolean> {
    if (this.#replicas === 0) return true;
    for (;;) {
      if (signal.aborted) throw abortedError(signal);
      const generation = this.#generation;
      if ((await this.#run('confirm', [key, id, token])) !== 1) return false;
      if (await this.#replicated(generation)) return true;
    }
  }

  /** The subscriber connection, opened with the command connection so a first watch subscribes in one round trip. */
  #sub(): Promise<Subscriber> {
    if (this.#closed) return Promise.reject(connectionClosed('redis'));
    if (this.#notifyExpired && !this.#expiryListening) {
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
      await subscriber.add(`__keyevent@${String(this.#settings.db)}__:expired`, (key) => {
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

  /** Every session and every held lock checked against the backend (after a flush or a reconnect). */
  #checkSessions(): void {
    void this.#held.check(this.#sessions.keys());
  }

  /** Forgets a session that ended (closed, expired, or replaced): its locks went with it. */
  #forget(sid: string): void {
    this.#sessions.delete(sid);
    this.#held.releaseAll(sid);
  }

  #expire(sid: string): void {
    this.#forget(sid);
    this.#context.events.sessionExpired(sid);
  }

  // ---- sessions

  async openSession(ttlMs: number): Promise<string> {
    const sid = randomBytes(12).toString('hex');
    await this.#run('openSession', [sid, this.#context.member, String(Math.ceil(ttlMs))]);
    this.#sessions.set(sid, Math.ceil(ttlMs));
    return sid;
  }

  /** Renews, and checks on the way that the session still holds the locks no keyspace notification watches. */
  async renewSession(sessionId: string): Promise<boolean> {
    const ttl = this.#sessions.get(sessionId) ?? Math.ceil(this.#ttlMs);
    const pairs = this.#held.unwatchedPairsOf(sessionId);
    const reply = await this.#run('renewSession', [sessionId, String(ttl), String(REAP_LIMIT), ...pairs]);
    if (!Array.isArray(reply)) {
      this.#forget(sessionId);
      return false;
    }
    this.#held.lost(sessionId, pairs, (reply as unknown[]).slice(1) as string[]);
    return true;
  }

  async closeSession(sessionId: string): Promise<void> {
    this.#forget(sessionId);
    await this.#run('closeSession', [sessionId]);
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#held.close();
    this.#readerClient?.disconnect();
    await this.#reader?.stop();
    this.#subscriber.dispose();
    await Promise.all([quit(this.#cmd), quit(this.#subscriber.client)]);
  }

  destroy(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#held.close();
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
    return ((await this.#run('listGroups', [])) as string[]).sort(compareIds);
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
      // `<sid> <capabilities JSON>`
      const value = flat[i + 1] ?? '';
      members.push({ id: flat[i] ?? '', capabilities: parseCapabilities(value.slice(value.indexOf(' ') + 1)) });
    }
    members.sort((a, b) => compareIds(a.id, b.id));
    return { exists: exists === 1, members, revision: `${id} ${seq}` };
  }

  watchGroup(group: string, fromRevision: Revision, sink: WatchSink): Promise<Unsubscribe> {
    if (this.#closed) return Promise.reject(connectionClosed('redis'));
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

  async tryLock(kind: LockKind, name: string, sessionId: string, member: string, mode?: LockMode): Promise<bigint | undefined> {
    const nonce = String(++this.#nonce);
    // A granting reply of a 'try' (its nonce is new) means this very script wrote the grant: a WAIT covers it.
    const generation = this.#generation;
    if (mode?.shared) {
      const key = lockKey(kind, name);
      const args = [key, requestId(sessionId, mode.slot), member, 'try', '0', nonce, String(mode.limit)];
      const [held, value] = (await this.#run('acquireShared', args)) as [number, number | string];
      if (held === 2) throw limitMismatch(name, mode.limit, Number(value));
      if (held !== 1) return undefined;
      if (this.#replicas > 0) await this.#written(generation);
      return this.#granted(kind, name, sessionId, String(value), holdKey(key, mode.slot));
    }
    const [held, value] = (await this.#run('acquire', [lockKey(kind, name), sessionId, member, 'try', '0', nonce])) as [
      number,
      number | string,
    ];
    if (held !== 1) return undefined;
    // Without ?replicas, no await of its own: the uncontended path pays for none.
    if (this.#replicas > 0) await this.#written(generation);
    return this.#granted(kind, name, sessionId, String(value));
  }

  /**
   * The fair wait. One attempt first; when it queues us, listen on this driver's grant channel (subscribed once) and
   * wait for the grant addressed to this call's nonce, which the releasing script publishes, with the token, after
   * handing us the lock. Expiry publishes nothing, so we also re-check when the holder's session is due to expire,
   * and at least every ttl/3 (which keeps our queue entry fresh, and catches a release we were not told of). A shared
   * hold or a permit waits the same way, as its own request (`<sid>/<slot>`) in the name's one line.
   */
  async acquireLock(
    kind: LockKind,
    name: string,
    sessionId: string,
    member: string,
    signal: AbortSignal,
    queued: () => void,
    mode?: LockMode,
  ): Promise<bigint> {
    if (signal.aborted) throw abortedError(signal);
    const key = lockKey(kind, name);
    const shared = mode?.shared === true;
    const script: ScriptName = shared ? 'acquireShared' : 'acquire';
    const id = shared ? requestId(sessionId, mode.slot) : sessionId;
    const limit = shared ? [String(mode.limit)] : [];
    const hold = shared ? holdKey(key, mode.slot) : key;
    const nonce = `${this.#id}:${String(++this.#nonce)}`;
    let granted: string | undefined;
    const wakeup = new Wakeup();
    this.#grants.set(nonce, (token) => {
      granted = token;
      wakeup.wake();
    });
    const wake = (): void => {
      wakeup.wake();
    };
    this.#lockWatchers.add(wake);
    try {
      let listening = this.#grantChannel !== undefined;
      const refreshMs = this.#ttlMs / 3;
      for (;;) {
        if (signal.aborted) throw abortedError(signal);
        // What the attempt below sees needs no wake-up of its own: only news from after it is sent counts.
        wakeup.take();
        const [held, value] = (await this.#run(script, [key, id, member, 'wait', String(Math.ceil(this.#ttlMs)), nonce, ...limit])) as [
          number,
          number | string,
        ];
        if (held === 2) throw limitMismatch(name, mode?.limit ?? 0, Number(value));
        // Held here may be a grant another connection made (handed on to this wait): #confirm, not a WAIT alone.
        const token = held === 1 ? String(value) : granted;
        if (token !== undefined) {
          if (await this.#confirm(key, id, token, signal)) return this.#granted(kind, name, sessionId, token, hold);
          granted = undefined;
          continue;
        }
        if (!listening) {
          // Queued before we listened: subscribe, then look again, so a grant in between is not missed.
          await this.#listenForGrants();
          listening = true;
          continue;
        }
        queued();
        const holderMs = Number(value);
        const recheckMs = holderMs >= 0 ? Math.min(holderMs + 2, refreshMs) : refreshMs;
        await wakeup.wait(recheckMs, signal);
        if (granted !== undefined) {
          if (await this.#confirm(key, id, granted, signal)) return this.#granted(kind, name, sessionId, granted, hold);
          granted = undefined;
        }
      }
    } catch (error) {
      if (signal.aborted) {
        // The last attempt may have queued us (or granted us the lock) even if its reply never came: undo what this
        // wait (its nonce) left. Whatever this misses, the core's cancelLock ends afterwards.
        await this.#run('abandon', [key, id, nonce]).catch((cancelError: unknown) => {
          debug('leaving the queue of %s failed: %s', key, (cancelError as Error).message);
        });
        throw abortedError(signal);
      }
      throw toConcordError(error, {}, this.#sentinel);
    } finally {
      this.#lockWatchers.delete(wake);
      this.#grants.delete(nonce);
    }
  }

  #granted(kind: LockKind, name: string, sid: string, token: string, hold?: string): bigint {
    const key = lockKey(kind, name);
    this.#held.hold(hold ?? key, key, kind, name, sid, token);
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
   * Ends the request's queue entry and gives back a hold granted to it meanwhile (handed on as a release does). Keyed
   * by session and slot: the core calls it only when this session holds nothing of that name in that slot and nothing
   * else acquires it there. Failures reject with ERR_CONNECTION and are retried by the core, never here (a late replay
   * could free a lock the session acquired again since).
   */
  async cancelLock(kind: LockKind, name: string, sessionId: string, slot = 0): Promise<void> {
    const key = lockKey(kind, name);
    const shared = isShared(kind, slot);
    const hold = shared ? holdKey(key, slot) : key;
    if (this.#held.holds(hold, sessionId)) this.#held.release(hold);
    const generation = this.#generation;
    await this.#run('cancel', [key, shared ? requestId(sessionId, slot) : sessionId]);
    await this.#written(generation);
  }

  async unlock(kind: LockKind, name: string, sessionId: string, token: bigint, slot = 0): Promise<void> {
    const key = lockKey(kind, name);
    const value = token.toString();
    if (isShared(kind, slot)) {
      const hold = holdKey(key, slot);
      if (this.#held.holds(hold, sessionId, value)) this.#held.release(hold);
      const generation = this.#generation;
      await this.#run('unlockShared', [key, requestId(sessionId, slot), value]);
      if (this.#replicas > 0) await this.#written(generation);
      return;
    }
    // Before the release is sent: the deletion it causes is ours, not news.
    if (this.#held.holds(key, sessionId, value)) this.#held.release(key);
    const generation = this.#generation;
    await this.#run('unlock', [key, sessionId, value]);
    // A release a promoted replica never saw would leave the lock held there by a session that let it go; failing
    // here, the core sends it again.
    if (this.#replicas > 0) await this.#written(generation);
  }

  async lockHolder(kind: LockKind, name: string): Promise<LockHolder | undefined> {
    return (await this.lockHolders(kind, name))[0];
  }

  async lockHolders(kind: LockKind, name: string): Promise<LockHolder[]> {
    return holdersOf((await this.#run('holders', [lockKey(kind, name)])) as string[]);
  }

  async listLocks(kind: LockKind | undefined, prefix: string): Promise<LockListing[]> {
    if (this.#closed) throw connectionClosed('redis');
    // Held locks (l:) and locks only waited for (q:); a glob narrows the scan to the kind and prefix when it can.
    const found = new Set<string>();
    try {
      for (const area of ['l:', 'q:']) {
        const start = `${this.#prefix}${area}`;
        const pattern = `${globEscape(kind === undefined ? start : `${start}${kind}:${prefix}`)}*`;
        let cursor = '0';
        do {
          const [next, keys] = await this.#cmd.scan(cursor, 'MATCH', pattern, 'COUNT', 1000);
          cursor = next;
          for (const key of keys) found.add(key.slice(start.length));
        } while (cursor !== '0');
      }
    } catch (error) {
      throw toConcordError(error, undefined, this.#sentinel);
    }
    const wanted = [...found].filter((lk) => lk.slice(lk.indexOf(':') + 1).startsWith(prefix));
    if (wanted.length === 0) return [];
    const reply = (await this.#run('locks', wanted)) as Array<[string, string, number, string[], string, number]>;
    const listed: LockListing[] = [];
    for (const [lk, limit, waiting, flat, first, waitedMs] of reply) {
      const holders = holdersOf(flat);
      if (holders.length === 0 && waiting === 0) continue;
      const split = lk.indexOf(':');
      const kind = lk.slice(0, split) as LockKind;
      const name = lk.slice(split + 1);
      const oldest: LockWaiter | undefined = first === '' ? undefined : waitedMs < 0 ? { member: first } : { member: first, waitedMs };
      listed.push({
        kind,
        name,
        holders,
        ...(limit === '' ? {} : { limit: Number(limit) }),
        waiting,
        ...(oldest ? { oldestWaiter: oldest } : {}),
      });
    }
    return listed;
  }

  /**
   * Resolves at once: the subscription is made in the background (retried while the link is down), and the listener
   * is called once it is confirmed, so a caller that reads right away and again on each call misses nothing.
   */
  watchLock(kind: LockKind, name: string, listener: () => void): Promise<Unsubscribe> {
    if (this.#closed) return Promise.reject(connectionClosed('redis'));
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
  if (settings.clusterNodes) {
    const locator = new SlotLocator(module.Redis, settings.base, settings.clusterNodes, `{${context.namespace}}:ss`);
    const reconnectOnError = (error: Error): boolean => {
      // MOVED: the slot is served elsewhere now; READONLY: our master became a replica.
      if (error.message.startsWith('MOVED')) locator.moved(error.message);
      return /^(MOVED|READONLY)\b/.test(error.message);
    };
    settings = { ...settings, locator, base: { ...settings.base, Connector: slotConnector(locator), reconnectOnError } };
  }
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

/** A script's `member, token, shared ('1' | '0')` triples as holders, sorted by token. */
function holdersOf(flat: readonly string[]): LockHolder[] {
  const holders: LockHolder[] = [];
  for (let i = 0; i + 2 < flat.length; i += 3) {
    const member = flat[i] ?? '';
    const token = BigInt(flat[i + 1] ?? '0');
    holders.push(flat[i + 2] === '1' ? { member, token, shared: true } : { member, token });
  }
  return holders.sort((a, b) => (a.token < b.token ? -1 : a.token > b.token ? 1 : 0));
}

/** `text` as a Redis glob matching only itself. */
function globEscape(text: string): string {
  return text.replace(/[*?[\]\\]/g, (c) => `\\${c}`);
}
