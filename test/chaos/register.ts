/**
 * The fenced register the holders write to: the storage a lock guards, kept by the harness. It remembers the newest
 * token per key and refuses any write with an older one, as the README asks of a storage behind a lock. Every write
 * is recorded with the client's look time, the register's own receipt time and whether it was accepted, for the
 * checkers.
 *
 * Shared holds and permits write too (their validity is recorded by those writes), under a per-mode rule, as a store
 * behind a read-write lock would fence its readers and writers:
 * - an exclusive write is refused when the key has seen a newer token of any mode: a newer shared holder may be
 *   reading what it would change;
 * - a shared write (a read under a shared hold, or a permit's write) is refused only when the key has seen a newer
 *   exclusive token: concurrent shared holders carry tokens in no particular order and must not fence each other.
 * Either refusal within the writer's validity means a newer hold that excludes it was granted while it still held.
 * A semaphore has no exclusive holds, so its permits' writes are never refused; its limit is judged by the
 * permit-limit checker.
 *
 * Holders reach it over their IPC channel and wait for its answer before they look at `valid` again or release: a
 * storage write completes before the critical section moves on. So a write can only reach the register after its
 * holder's validity if the holder was stopped (or its channel stalled) between its look and the answer.
 */
import type { RegisterWrite } from './protocol.js';

export interface WriteRequest {
  readonly proc: string;
  readonly hold: string;
  readonly key: string;
  readonly token: bigint;
  readonly shared: boolean;
  readonly seq: number;
  readonly look: number;
}

export class FencedRegister {
  /** Per key: the newest token of any mode, and the newest exclusive one. */
  readonly #newest = new Map<string, bigint>();
  readonly #newestExclusive = new Map<string, bigint>();
  readonly #onWrite: (write: RegisterWrite) => void;
  accepted = 0;
  refused = 0;

  constructor(onWrite: (write: RegisterWrite) => void) {
    this.#onWrite = onWrite;
  }

  /** Applies a write received at `at`; true when accepted. */
  write(request: WriteRequest, at: number): boolean {
    const newest = (request.shared ? this.#newestExclusive : this.#newest).get(request.key);
    const accepted = newest === undefined || request.token >= newest;
    if (accepted) {
      const any = this.#newest.get(request.key);
      if (any === undefined || request.token > any) this.#newest.set(request.key, request.token);
      if (!request.shared) this.#newestExclusive.set(request.key, request.token);
    }
    if (accepted) this.accepted++;
    else this.refused++;
    this.#onWrite({
      proc: request.proc,
      hold: request.hold,
      key: request.key,
      token: request.token.toString(),
      ...(request.shared ? { shared: true } : {}),
      seq: request.seq,
      look: request.look,
      at,
      accepted,
      newest: newest?.toString(),
    });
    return accepted;
  }
}
