/**
 * The session state machine. One backend session per coordinator; memberships and locks hang off it.
 *
 *   connected --renew fails, or the driver says the link dropped--> suspended
 *   suspended --renew works (at once when the driver says the link is back)--> connected ('reconnected')
 *   connected|suspended --no renewal for ttl - margin, or the backend says expired--> lost
 *   lost --new session opened, groups re-joined--> connected ('restored')
 *
 * Liveness is judged on the monotonic clock from the moment the last successful renewal was *sent*: the backend
 * measures its TTL from when it received that request, which is later, so we always give up first.
 */
import { now, sleep, withTimeout } from './clock.js';
import { ConcordError } from './errors.js';
import { debug } from './debug.js';
import type { Driver } from './driver.js';
import type { SessionState } from './types.js';

export interface SessionHooks {
  suspended(): void;
  reconnected(): void;
  /** A renewal went through (the backend is reachable): a moment to retry work that failed on the connection. */
  renewed(): void;
  /** Synchronous: every lost signal must be aborted before this returns. */
  lost(sessionId: string): void;
  /** A session is open and usable (the first one, or a replacement before its groups are re-joined). */
  opened(): void;
  /**
   * The new session is open; re-join and resynchronise (never rejects), then the machine reports `restored`. Runs
   * again for the same session if it was suspended meanwhile: a re-join given up on a dropped link is tried again.
   */
  restore(): Promise<void>;
  restored(): void;
}

export class SessionMachine {
  readonly ttlMs: number;
  #id = '';
  #state: SessionState = 'connected';
  #renewedAt = 0;
  #heartbeat: NodeJS.Timeout | undefined;
  #deadline: NodeJS.Timeout | undefined;
  /** The renewal under way, if any. */
  #beat: Promise<void> | undefined;
  #replacing: Promise<void> | undefined;
  /** A replacement session whose groups are not all re-joined yet: the restore runs again when it reconnects. */
  #unrestored: string | undefined;
  /** The restore under way, if any. */
  #restoring: Promise<void> | undefined;
  /** Counts connected -> suspended turns, so a restore can tell that the link dropped while it ran. */
  #suspensions = 0;
  readonly #driver: () => Driver;
  readonly #hooks: SessionHooks;
  readonly #stop = new AbortController();

  /** `driver` is asked for on each call: the coordinator hands out a traced copy while anyone listens. */
  constructor(driver: () => Driver, ttlMs: number, hooks: SessionHooks) {
    this.#driver = driver;
    this.ttlMs = ttlMs;
    this.#hooks = hooks;
  }

  get id(): string {
    return this.#id;
  }

  get state(): SessionState {
    return this.#state;
  }

  /** How long before the backend's expiry we declare the session lost: covers timer lateness and clock rate. */
  get marginMs(): number {
    return Math.min(Math.max(this.ttlMs / 10, 5), 1000);
  }

  get #intervalMs(): number {
    // While suspended, retry faster so a short outage is noticed to be over well within the TTL.
    return this.#state === 'suspended' ? Math.max(this.ttlMs / 10, 5) : this.ttlMs / 3;
  }

  async open(): Promise<void> {
    let sentAt = now();
    const id = await this.#driver().openSession(this.ttlMs);
    if (!this.#stop.signal.aborted && now() - sentAt > this.ttlMs / 3) {
      // A late answer (a stalled server) leaves little of a TTL counted from when the open was sent: renew at once,
      // so that the deadline and the first renewal agree, instead of declaring the new session lost before its first
      // renewal is even due.
      const renewedAt = now();
      const alive = await withTimeout(this.#driver().renewSession(id), this.ttlMs / 3).catch(() => false);
      if (!alive) {
        this.#driver()
          .closeSession(id)
          .catch(() => undefined);
        throw new ConcordError('ERR_CONNECTION', 'the backend answered too slowly to keep a new session alive');
      }
      sentAt = renewedAt;
    }
    if (this.#stop.signal.aborted) {
      // Closed while the session was being opened: it must not outlive the coordinator.
      await this.#driver()
        .closeSession(id)
        .catch(() => undefined);
      throw new ConcordError('ERR_CLOSED', 'the coordinator is closed');
    }
    this.#id = id;
    this.#renewedAt = sentAt;
    this.#state = 'connected';
    this.#schedule();
    this.#hooks.opened();
  }

  /** Declares the session lost if its time is up. Called before any use of a held lock's signal. */
  check(): void {
    if ((this.#state === 'connected' || this.#state === 'suspended') && now() >= this.#expiresAt()) {
      this.lose('the session could not be renewed within its TTL');
    }
  }

  #expiresAt(): number {
    return this.#renewedAt + this.ttlMs - this.marginMs;
  }

  #schedule(): void {
    clearTimeout(this.#heartbeat);
    if (this.#stop.signal.aborted) return;
    this.#heartbeat = setTimeout(() => void this.#renew(), this.#intervalMs);
    this.#heartbeat.unref();
    this.#armDeadline();
  }

  /** The timer that declares the session lost even while a renewal hangs. */
  #armDeadline(): void {
    clearTimeout(this.#deadline);
    // Timers may fire a fraction of a millisecond early: round up, and re-arm if it was still too early.
    this.#deadline = setTimeout(
      () => {
        this.check();
        if (this.#state === 'connected' || this.#state === 'suspended') this.#armDeadline();
      },
      Math.max(1, Math.ceil(this.#expiresAt() - now())),
    );
    this.#deadline.unref();
  }

  /**
   * Renews now instead of at the next heartbeat: the backend answered that it does not know the session. Resolves
   * once that renewal has settled (and the session is declared lost if the backend agrees).
   */
  probe(): Promise<void> {
    return this.#renew();
  }

  #renew(): Promise<void> {
    this.#beat ??= this.#renewal().finally(() => {
      this.#beat = undefined;
    });
    return this.#beat;
  }

  async #renewal(): Promise<void> {
    this.check();
    if (this.#stop.signal.aborted) return;
    if (this.#state !== 'connected' && this.#state !== 'suspended') return;
    clearTimeout(this.#heartbeat);
    const id = this.#id;
    const sentAt = now();
    let alive: boolean | undefined;
    try {
      alive = await withTimeout(this.#driver().renewSession(id), this.ttlMs / 3);
    } catch (error) {
      debug('session %s renewal failed: %s', id, (error as Error).message);
    }
    if (this.#stop.signal.aborted || id !== this.#id) return;
    if (this.#state !== 'connected' && this.#state !== 'suspended') return;
    if (alive === true) {
      this.#renewedAt = sentAt;
      this.#hooks.renewed();
      if (this.#state === 'suspended') {
        this.#state = 'connected';
        debug('session %s reconnected', id);
        this.#hooks.reconnected();
        if (this.#unrestored === id) void this.#restoreGroups();
      }
    } else if (alive === false) {
      this.lose('the backend no longer knows the session');
      return;
    } else if (this.#state === 'connected') {
      this.#suspend();
    }
    this.check();
    if (this.#state === 'connected' || this.#state === 'suspended') this.#schedule();
  }

  #suspend(): void {
    this.#state = 'suspended';
    this.#suspensions++;
    debug('session %s suspended', this.#id);
    this.#hooks.suspended();
  }

  /** The driver says the link dropped: suspended now, not at the next failed renewal. The deadline stays as it was. */
  linkDown(): void {
    this.check();
    if (this.#stop.signal.aborted || this.#state !== 'connected') return;
    this.#suspend();
    this.#schedule(); // renewals at the suspended pace from now on
  }

  /** The driver says the link is back: renew now, so `reconnected` comes as soon as the backend confirms the session. */
  linkUp(): void {
    if (this.#state !== 'connected' && this.#state !== 'suspended') return;
    // A renewal in flight may have been sent on the dropped link: renew again once it settles.
    const beat = this.#beat;
    if (beat) void beat.then(() => this.#renew());
    else void this.#renew();
  }

  /** The backend said the session expired. */
  expired(sessionId: string): void {
    if (sessionId === this.#id) this.lose('the backend expired the session');
  }

  lose(why: string): void {
    if (this.#state !== 'connected' && this.#state !== 'suspended') return;
    debug('session %s lost: %s', this.#id, why);
    this.#state = 'lost';
    clearTimeout(this.#heartbeat);
    clearTimeout(this.#deadline);
    this.#hooks.lost(this.#id);
    this.#replacing = this.#replace().finally(() => {
      this.#replacing = undefined;
    });
  }

  async #replace(): Promise<void> {
    const old = this.#id;
    // Best effort: if the backend still has the old session, end it so its memberships do not linger.
    this.#driver()
      .closeSession(old)
      .catch(() => undefined);
    let delay = Math.min(50, this.ttlMs / 10);
    while (!this.#stop.signal.aborted) {
      try {
        await this.open();
      } catch (error) {
        if (this.#stop.signal.aborted) return;
        debug('opening a new session failed: %s', (error as Error).message);
        await sleep(delay, this.#stop.signal).catch(() => undefined);
        delay = Math.min(delay * 2, this.ttlMs / 3);
        continue;
      }
      debug('session %s replaces %s', this.#id, old);
      this.#unrestored = this.#id;
      await this.#restoreGroups();
      return;
    }
  }

  /** Queues a restore pass behind any under way, so passes never overlap. */
  #restoreGroups(): Promise<void> {
    const run = (this.#restoring ?? Promise.resolve()).then(() => this.#restorePass());
    this.#restoring = run;
    const settle = (): void => {
      if (this.#restoring === run) this.#restoring = undefined;
    };
    run.then(settle, settle);
    return run;
  }

  /**
   * Re-joins (the hook) until one pass ran without the link dropping, then reports `restored`. A session that is
   * suspended at the end stays unrestored: its reconnection queues another pass.
   */
  async #restorePass(): Promise<void> {
    for (;;) {
      const id = this.#id;
      if (this.#stop.signal.aborted || this.#unrestored !== id || this.#state !== 'connected') return;
      const suspensions = this.#suspensions;
      await this.#hooks.restore();
      if (id !== this.#id || suspensions !== this.#suspensions) continue;
      if (this.#stop.signal.aborted || this.#state !== 'connected') return;
      this.#unrestored = undefined;
      debug('session %s restored', id);
      this.#hooks.restored();
      return;
    }
  }

  /**
   * Stops every timer, and waits for a session replacement under way to wind down (a session it opened meanwhile is
   * closed by it); the caller then closes the current session.
   */
  async stop(): Promise<void> {
    this.#stop.abort();
    this.#state = 'closed';
    clearTimeout(this.#heartbeat);
    clearTimeout(this.#deadline);
    await this.#replacing;
    await this.#restoring;
  }
}
