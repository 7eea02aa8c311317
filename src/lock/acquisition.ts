/**
 * One acquire() call as an object: what it asked for (kind, name, the caller's signal and deadline), where it is
 * (its phase and session), and what it asked of the backend (so that giving up leaves nothing behind).
 *
 *   turn      waiting behind another acquisition or holder of the name in this process
 *   session   waiting for a usable session (a lost one being replaced)
 *   trying    one plain attempt, the uncontended path
 *   contending / queued   the backend's fair queue (or a notified retry loop): asked, then registered
 *
 * The session being lost ends an acquisition that was queued in it with ERR_SESSION_LOST. In any other phase it
 * carries on in the replacement session, within its own timeout and signal, as Curator's recipes do after a
 * ZooKeeper session expiry.
 */
import { sleep } from '../clock.js';
import { ConcordError, abortedError, isConcordError } from '../errors.js';
import { EXCLUSIVE, type LockKind, type LockMode } from '../driver.js';
import type { NormalizedAcquire } from '../options.js';
import { Wakeup } from '../kit/wakeup.js';
import { HeldLockImpl } from './held.js';
import type { LockHost } from './host.js';
import { lockKey, slotKey, type ActiveAcquisition } from './registry.js';

type Phase = 'turn' | 'session' | 'trying' | 'contending' | 'queued';

export function timeoutError(): ConcordError {
  return new ConcordError('ERR_LOCK_TIMEOUT', 'the lock was not acquired in time');
}

/** Thrown inside an acquisition (never to its caller) when it must start again in the replacement session. */
const replaced = new ConcordError('ERR_SESSION_LOST', 'the session was replaced; trying again in the new one');

function asConcordError(error: unknown): ConcordError {
  return error instanceof ConcordError
    ? error
    : new ConcordError('ERR_CONNECTION', `the backend request failed: ${String((error as Error | undefined)?.message ?? error)}`, {
        cause: error,
      });
}

/** What an acquisition asks for beyond kind and name: a shared hold of a lock, or a semaphore permit under `limit`. */
export interface Want {
  readonly shared: boolean;
  /** A semaphore's limit; 0 otherwise. */
  readonly limit: number;
}

export class Acquisition implements ActiveAcquisition {
  readonly kind: LockKind;
  readonly name: string;
  readonly #host: LockHost;
  /** The name's key: what "recently contended" is remembered by. */
  readonly #key: string;
  /** What is asked of the driver; its slot is settled with the local turn. */
  #mode: LockMode = EXCLUSIVE;
  readonly #want: Want | undefined;
  readonly #signal: AbortSignal | undefined;
  /** timeoutMs 0: one attempt, no waiting. */
  readonly #once: boolean;
  /** Monotonic ms by which it must be held, if the caller set a timeout. */
  readonly #deadline: number | undefined;
  #timer: NodeJS.Timeout | undefined;
  /** The abort listener on the caller's signal; made only when there is a signal (most acquisitions have none). */
  #abortListener: (() => void) | undefined;
  #phase: Phase = 'turn';
  #session = '';
  /** It holds the local turn of the name. */
  #entered = false;
  /** Something was asked of the backend in this session (and may be outstanding): giving up must clean up after it. */
  #asked = false;
  #inFlight: Promise<unknown> | undefined;
  /** Why it ends (the caller's abort, the timeout, close(), the session lost while queued); set once. */
  #ended: ConcordError | undefined;
  /** Aborts the waits of the current session round (driver waits, the local turn, a session replacement). */
  #round: AbortController | undefined;
  /** Rejects the backend request being awaited now. */
  #interrupt: ((error: ConcordError) => void) | undefined;

  constructor(host: LockHost, kind: LockKind, name: string, options: NormalizedAcquire, want?: Want) {
    this.#host = host;
    this.kind = kind;
    this.name = name;
    this.#key = lockKey(kind, name);
    this.#want = want?.shared ? want : undefined;
    this.#signal = options.signal;
    this.#once = options.timeoutMs === 0;
    this.#deadline = options.timeoutMs ? performance.now() + options.timeoutMs : undefined;
  }

  /** Resolves with the held lock; rejects with ERR_LOCK_TIMEOUT, ERR_ABORTED, ERR_SESSION_LOST or ERR_CLOSED. */
  async run(): Promise<HeldLockImpl> {
    const locks = this.#host.registry;
    locks.active.add(this);
    const signal = this.#signal;
    if (signal) {
      this.#abortListener = (): void => {
        this.#onAbort();
      };
      signal.addEventListener('abort', this.#abortListener, { once: true });
    }
    if (this.#deadline !== undefined) {
      this.#timer = setTimeout(
        () => {
          this.end(timeoutError());
        },
        Math.max(0, this.#deadline - performance.now()),
      );
    }
    try {
      // The local turn is usually free: taken at once, without a wait to await.
      const turn = this.#takeTurn();
      if (turn) await turn;
      for (;;) {
        // One round in the live session (inline rather than a method: one async layer fewer on every acquisition).
        try {
          const host = this.#host;
          this.#phase = 'session';
          // The session is usually live: no wait to await (and so nothing can change before the attempt below).
          const session = this.#once ? host.usableSession() : this.#liveSession();
          let waited = session === undefined;
          this.#session = session ?? (await host.nextSession(this.#waitSignal()));
          if (locks.uncancelled.size > 0) {
            await locks.cancelPending(host, slotKey(this.kind, this.name, this.#mode.slot));
            waited = true;
          }
          // A lock this process queued for a moment ago goes straight to the backend's queue.
          if (this.#once || !host.driver.acquireLock || !locks.recentlyContended(this.#key)) {
            // One plain attempt (the uncontended path): the token, or undefined when it is taken.
            this.#phase = 'trying';
            if (waited) this.#assertCurrent();
            let token: bigint | undefined;
            try {
              token = await this.#try();
            } catch (error) {
              await this.#tryFailed(error);
            }
            if (token !== undefined) return this.#hold(token);
            if (this.#once) throw timeoutError();
          }
          return this.#hold(await this.#contend());
        } catch (error) {
          if (error !== replaced || this.#ended) throw error;
          // What was asked in the old session ended with it on the backend.
          this.#asked = false;
          this.#inFlight = undefined;
          this.#round = undefined;
        }
      }
    } catch (error) {
      this.#abandon();
      throw this.#ended ?? asConcordError(error);
    } finally {
      locks.active.delete(this);
      if (this.#timer) clearTimeout(this.#timer);
      if (this.#abortListener) signal?.removeEventListener('abort', this.#abortListener);
    }
  }

  #onAbort(): void {
    const what = this.kind === 'leader' ? 'leadership of' : this.kind === 'semaphore' ? 'a permit of semaphore' : 'lock';
    this.end(abortedError(this.#signal, `acquiring ${what} "${this.name}"`));
  }

  end(reason: ConcordError): void {
    if (this.#ended) return;
    this.#ended = reason;
    this.#round?.abort(reason);
    this.#interrupt?.(reason);
  }

  sessionLost(sessionId: string): void {
    if (this.#ended || this.#session !== sessionId) return;
    if (this.#phase === 'queued') {
      this.end(new ConcordError('ERR_SESSION_LOST', 'the session was lost while waiting'));
    } else if (this.#phase === 'trying' || this.#phase === 'contending') {
      this.#round?.abort(replaced);
      this.#interrupt?.(replaced);
    }
  }

  /** The signal for this session round's waits. */
  #waitSignal(): AbortSignal {
    if (!this.#round) {
      this.#round = new AbortController();
      if (this.#ended) this.#round.abort(this.#ended);
    }
    return this.#round.signal;
  }

  /**
   * Awaits a backend request, unless the acquisition is interrupted first (the request is tracked for clean-up). The
   * promise's own reject is the interrupt: no closure of its own per request.
   */
  #race<T>(promise: Promise<T>): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      promise.then(
        (value) => {
          if (this.#interrupt === reject) this.#interrupt = undefined;
          resolve(value);
        },
        (error: unknown) => {
          if (this.#interrupt === reject) this.#interrupt = undefined;
          reject(asConcordError(error));
        },
      );
      if (this.#ended) reject(this.#ended);
      else this.#interrupt = reject;
    });
  }

  #ask(request: Promise<unknown>): void {
    this.#asked = true;
    this.#inFlight = request;
  }

  /** Takes the local turn of the name: at once (undefined), or once the promise resolves. */
  #takeTurn(): Promise<void> | undefined {
    const want = this.#want;
    if (want) {
      // Shared holds and permits of one process coexist: each takes a free slot of its own and waits on the backend.
      const slot = this.#host.registry.enterFreeSlot(this.kind, this.name, this.kind === 'semaphore' ? 0 : 1);
      this.#mode = { slot, shared: true, limit: want.limit };
      this.#entered = true;
      return undefined;
    }
    const queue = this.#host.registry.queue(this.#key);
    if (queue.tryEnter()) {
      this.#entered = true;
      return undefined;
    }
    // Held or awaited by someone else in this process; our own clean-up after an abandoned wait is not "taken".
    if (this.#once && !queue.onlyCleaning) throw timeoutError();
    this.#phase = 'turn';
    return queue.enter(this.#waitSignal()).then(() => {
      this.#entered = true;
    });
  }

  /** The live session's id, or undefined while a lost one is being replaced. */
  #liveSession(): string | undefined {
    try {
      return this.#host.usableSession();
    } catch (error) {
      if (!isConcordError(error, 'ERR_SESSION_LOST')) throw error;
      return undefined;
    }
  }

  /** The driver's tryLock in this acquisition's mode; exclusive requests name none, as before shared locks existed. */
  #tryLock(): Promise<bigint | undefined> {
    const { driver, member } = this.#host;
    return this.#want
      ? driver.tryLock(this.kind, this.name, this.#session, member, this.#mode)
      : driver.tryLock(this.kind, this.name, this.#session, member);
  }

  /**
   * One plain attempt, tracked for clean-up and raced against an interrupt: the token, or undefined when it is taken.
   * Not async: the race's promise is returned as it is, with no layer of its own.
   */
  #try(): Promise<bigint | undefined> {
    const attempt = this.#tryLock();
    this.#ask(attempt);
    return this.#race(attempt);
  }

  /** The plain attempt failed: resolves when waiting will tell (a dropped link), else throws what to throw. */
  async #tryFailed(error: unknown): Promise<void> {
    if (error === replaced || this.#ended) throw error;
    if (isConcordError(error, 'ERR_SESSION_LOST')) {
      // The backend no longer knows the session: once the machine agrees, carry on in the replacement.
      const lost = await this.#host.sessionRefused(this.#session);
      if (lost && !this.#once && !this.#ended) throw replaced;
      throw error;
    }
    // A dropped connection is not the end of a wait: the backend wait takes over, and the session machine decides.
    if (!this.#once && isConcordError(error, 'ERR_CONNECTION')) return;
    throw error;
  }

  /** The waiting part: the driver's fair queue, or a notified retry loop. */
  async #contend(): Promise<bigint> {
    const host = this.#host;
    const { driver } = host;
    this.#phase = 'contending';
    const signal = this.#waitSignal();
    const pollMs = driver.pollIntervalMs ?? host.sessionTtlMs / 3;
    const queued = (): void => {
      if (this.#phase === 'contending') this.#phase = 'queued';
      host.registry.markContended(this.#key);
      host.queued(this.kind, this.name);
    };
    if (driver.acquireLock) {
      for (;;) {
        this.#assertCurrent();
        const attempt = this.#want
          ? driver.acquireLock(this.kind, this.name, this.#session, host.member, signal, queued, this.#mode)
          : driver.acquireLock(this.kind, this.name, this.#session, host.member, signal, queued);
        this.#ask(attempt);
        try {
          return await this.#race(attempt);
        } catch (error) {
          if (error === replaced || this.#ended || !isConcordError(error, 'ERR_CONNECTION')) {
            if (error !== replaced && isConcordError(error, 'ERR_SESSION_LOST')) void host.sessionRefused(this.#session);
            throw error;
          }
          await sleep(pollMs, signal);
        }
      }
    }
    const wakeup = new Wakeup();
    const subscribing = driver.watchLock(this.kind, this.name, () => {
      wakeup.wake();
    });
    let unsubscribe: () => void;
    try {
      unsubscribe = await this.#race(subscribing);
    } catch (error) {
      subscribing.then((stop) => {
        stop();
      }, Boolean);
      throw error;
    }
    try {
      for (;;) {
        this.#assertCurrent();
        let token: bigint | undefined;
        try {
          token = await this.#try();
        } catch (error) {
          if (error === replaced || this.#ended || !isConcordError(error, 'ERR_CONNECTION')) throw error;
        }
        if (token !== undefined) return token;
        queued();
        await wakeup.wait(pollMs, signal);
      }
    } finally {
      unsubscribe();
    }
  }

  /** Before each request: the session lost since the last step means starting again in its replacement. */
  #assertCurrent(): void {
    let current = '';
    try {
      current = this.#host.usableSession();
    } catch (error) {
      if (!isConcordError(error, 'ERR_SESSION_LOST')) throw error;
    }
    if (current === this.#session) return;
    if (this.#phase === 'queued') throw new ConcordError('ERR_SESSION_LOST', 'the session was lost while waiting');
    throw replaced;
  }

  /** The grant becomes a HeldLock, unless the acquisition ended or its session was lost as it landed. */
  #hold(token: bigint): HeldLockImpl {
    if (this.#ended) throw this.#ended;
    let current: string;
    try {
      current = this.#host.usableSession();
    } catch (error) {
      if (!isConcordError(error, 'ERR_SESSION_LOST')) throw error;
      current = '';
    }
    if (current !== this.#session) {
      // The grant died with the old session (the clean-up hands it back if the backend still has it).
      if (this.#phase === 'queued' || this.#once) throw new ConcordError('ERR_SESSION_LOST', 'the session was lost while acquiring');
      throw replaced;
    }
    // The held lock owns the turn now, and there is nothing to clean up.
    this.#entered = false;
    this.#asked = false;
    return new HeldLockImpl(this.#host, this.kind, this.name, this.#session, token, this.#mode.slot, this.#mode.shared);
  }

  /** Gave up: clean up after what was asked (before the next local turn), or just pass the turn on. */
  #abandon(): void {
    if (!this.#entered) return;
    this.#entered = false;
    if (this.#asked) {
      const leftover = { kind: this.kind, name: this.name, session: this.#session, slot: this.#mode.slot };
      void this.#host.registry.cleanUp(this.#host, leftover, this.#inFlight);
    } else {
      this.#host.registry.leave(slotKey(this.kind, this.name, this.#mode.slot));
    }
  }
}
