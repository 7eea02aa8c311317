/**
 * A held lock or leadership: its token, its signal, its release. The signal tells the truth when read after a pause:
 * reading `aborted` (or `reason`, or calling `throwIfAborted()`) first checks the session's deadline on the monotonic
 * clock, so a process that was stopped past its TTL sees the loss on its first look, even through a signal it stored
 * before the pause and before any timer has had a chance to run.
 */
import { lostChannel, releaseChannel, type LostMessage, type ReleaseContext } from '../diagnostics.js';
import { ConcordError, isConcordError } from '../errors.js';
import { debug } from '../debug.js';
import type { LockKind } from '../driver.js';
import type { HeldLock } from '../types.js';
import type { LockHost } from './host.js';
import { slotKey } from './registry.js';

/* eslint-disable @typescript-eslint/unbound-method -- the platform's own accessors, called on their own instance */
const abortedOf = Object.getOwnPropertyDescriptor(AbortSignal.prototype, 'aborted')?.get as (this: AbortSignal) => boolean;
const reasonOf = Object.getOwnPropertyDescriptor(AbortSignal.prototype, 'reason')?.get as (this: AbortSignal) => unknown;
const throwIfAbortedOf = AbortSignal.prototype.throwIfAborted;
/* eslint-enable @typescript-eslint/unbound-method */

/** Makes `signal` consult `check` (the session deadline) before it answers whether it has aborted. */
function checked(signal: AbortSignal, check: () => void): AbortSignal {
  Object.defineProperties(signal, {
    aborted: {
      configurable: true,
      get: (): boolean => {
        check();
        return abortedOf.call(signal);
      },
    },
    reason: {
      configurable: true,
      get: (): unknown => {
        check();
        return reasonOf.call(signal);
      },
    },
    throwIfAborted: {
      configurable: true,
      value: (): void => {
        check();
        throwIfAbortedOf.call(signal);
      },
    },
  });
  return signal;
}

/** How a hold ended: lost with its session or from outside, dropped by close(), or released. */
type Ending = 'lost' | 'closed' | 'released';

export class HeldLockImpl implements HeldLock {
  readonly name: string;
  readonly token: bigint;
  readonly kind: LockKind;
  readonly #host: LockHost;
  readonly #sessionId: string;
  /** Which of the session's requests of the name this is (0 for exclusive holds). */
  readonly #slot: number;
  /** A shared hold or a permit. */
  readonly shared: boolean;
  // Created on first use of `signal`: most holders never look, and a controller plus its abort is a large share of
  // an uncontended acquire and release.
  #controller: AbortController | undefined;
  /** How the hold ended, once it has: its error is made only when someone asks (most never do). */
  #ending: Ending | undefined;
  #released: Promise<void> | undefined;
  readonly #acquiredAt: number;
  #slotLeft = false;

  constructor(host: LockHost, kind: LockKind, name: string, sessionId: string, token: bigint, slot = 0, shared = false) {
    this.#host = host;
    this.#slot = slot;
    this.shared = shared;
    this.kind = kind;
    this.name = name;
    this.#sessionId = sessionId;
    this.token = token;
    this.#acquiredAt = performance.now();
    host.registry.held.add(this);
  }

  get signal(): AbortSignal {
    this.#host.checkSession();
    if (!this.#controller) {
      this.#controller = new AbortController();
      checked(this.#controller.signal, () => {
        this.#host.checkSession();
      });
      if (this.#ending) this.#controller.abort(this.#reason(this.#ending));
    }
    return this.#controller.signal;
  }

  /** True while the lock is held: not released, and not lost as far as this process can know (the deadline is checked). */
  get valid(): boolean {
    this.#host.checkSession();
    return this.#released === undefined;
  }

  /** Throws the reason the lock ended (ERR_LOCK_LOST, ERR_LEADERSHIP_LOST, ERR_CLOSED, ERR_ABORTED) unless it is valid. */
  assertValid(): void {
    if (this.valid) return;
    throw this.#ending ? this.#reason(this.#ending) : new ConcordError('ERR_LOCK_LOST', `${this.#what()} is no longer held`);
  }

  /** Why the hold ended, as the error its signal aborts with. */
  #reason(ending: Ending): ConcordError {
    switch (ending) {
      case 'lost':
        return this.kind === 'leader'
          ? new ConcordError('ERR_LEADERSHIP_LOST', `leadership of group "${this.name}" was lost`)
          : new ConcordError('ERR_LOCK_LOST', `${this.#what()} was lost`);
      case 'closed':
        return new ConcordError('ERR_CLOSED', 'the coordinator was closed');
      case 'released':
        return new ConcordError(
          'ERR_ABORTED',
          this.kind === 'leader' ? `leadership of group "${this.name}" was resigned` : `${this.#what()} was released`,
        );
    }
  }

  /** What this hold is, for messages. */
  #what(): string {
    if (this.kind === 'semaphore') return `a permit of semaphore "${this.name}"`;
    return this.shared ? `shared hold of lock "${this.name}"` : `lock "${this.name}"`;
  }

  /** Aborts the signal with ERR_LOCK_LOST / ERR_LEADERSHIP_LOST; the backend has freed, or will free, the lock. */
  lose(): void {
    if (this.#released) return;
    this.#released = Promise.resolve();
    if (lostChannel.hasSubscribers) {
      lostChannel.publish({ member: this.#host.member, kind: this.kind, name: this.name, token: this.token } satisfies LostMessage);
    }
    this.#finish('lost');
  }

  /** The coordinator is closing and ends the session, which frees the lock on the backend. */
  drop(): void {
    if (this.#released) return;
    this.#released = Promise.resolve();
    this.#finish('closed');
  }

  release(): Promise<void> {
    if (this.#released) return this.#released;
    if (!releaseChannel.hasSubscribers) return (this.#released = this.#release());
    const context: ReleaseContext = {
      coordinator: this.#host.member,
      kind: this.kind,
      name: this.name,
      shared: this.shared,
      token: this.token,
      heldMs: performance.now() - this.#acquiredAt,
    };
    return (this.#released = releaseChannel.tracePromise(() => this.#release(), context));
  }

  #release(): Promise<void> {
    // The hold keeps its slot until the release has reached the backend: a new request of this process taking the
    // same slot meanwhile would meet this hold's entry there, which a driver cannot tell from a grant of its own whose
    // answer was lost. (A shared hold or permit takes another free slot instead; an exclusive one waits its turn.)
    this.#finish('released', false);
    return this.#unlock();
  }

  async #unlock(): Promise<void> {
    try {
      // Bounded by the session and close(): a lost session frees the lock anyway, and release() must settle.
      await this.#host.guard(
        this.#slot === 0
          ? this.#host.driver.unlock(this.kind, this.name, this.#sessionId, this.token)
          : this.#host.driver.unlock(this.kind, this.name, this.#sessionId, this.token, this.#slot),
      );
      this.#leaveSlot();
    } catch (error) {
      // A lock whose release did not reach the backend would block others until our session ends: retry later.
      if (isConcordError(error, 'ERR_CONNECTION')) {
        this.#host.registry.unreleased.set(
          () => this.#unlock(),
          () => {
            this.#leaveSlot();
          },
        );
      } else {
        this.#leaveSlot();
      }
      debug('release of %s "%s" failed: %s', this.kind, this.name, (error as Error).message);
    }
  }

  /** Passes this hold's slot on to the next local request; once. */
  #leaveSlot(): void {
    if (this.#slotLeft) return;
    this.#slotLeft = true;
    this.#host.registry.leave(slotKey(this.kind, this.name, this.#slot));
  }

  #finish(ending: Ending, leaveSlot = true): void {
    this.#host.registry.held.delete(this);
    this.#ending = ending;
    const controller = this.#controller;
    if (controller && !abortedOf.call(controller.signal)) controller.abort(this.#reason(ending));
    if (leaveSlot) this.#leaveSlot();
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.release();
  }
}
