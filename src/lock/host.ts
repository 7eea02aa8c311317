import type { Driver, LockKind } from '../driver.js';
import type { LockRegistry } from './registry.js';

/** What the lock machinery needs from its coordinator. */
export interface LockHost {
  readonly driver: Driver;
  readonly member: string;
  readonly sessionTtlMs: number;
  readonly registry: LockRegistry;
  /** Throws ERR_CLOSED after close(). */
  assertOpen(): void;
  /** Throws ERR_CLOSED / ERR_SESSION_LOST when no lock can be taken now; returns the live session id. */
  usableSession(): string;
  /** The id of a usable session: now, or once a lost one has been replaced. Rejects when `signal` aborts or on close(). */
  nextSession(signal: AbortSignal): Promise<string>;
  /**
   * The backend answered that `sessionId` does not exist (say, a restart that lost its data): the session machine
   * checks at once. Resolves true when that session is lost.
   */
  sessionRefused(sessionId: string): Promise<boolean>;
  /** `promise`, unless the session is lost (ERR_SESSION_LOST) or the coordinator closes (ERR_CLOSED) first. */
  guard<T>(promise: Promise<T>): Promise<T>;
  /** This coordinator's wait for kind/name is registered with the backend (tests rely on it for arrival order). */
  queued(kind: LockKind, name: string): void;
  /** Declares the session lost if its time ran out (a paused process learns it before touching anything). */
  checkSession(): void;
}
