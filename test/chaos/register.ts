/**
 * The fenced register the holders write to: the storage a lock guards, kept by the harness. It remembers the newest
 * token per key and refuses any write with an older one, as the README asks of a storage behind a lock. Every write
 * is recorded with the client's look time, the register's own receipt time and whether it was accepted, for the
 * checkers.
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
  readonly seq: number;
  readonly look: number;
}

export class FencedRegister {
  readonly #newest = new Map<string, bigint>();
  readonly #onWrite: (write: RegisterWrite) => void;
  accepted = 0;
  refused = 0;

  constructor(onWrite: (write: RegisterWrite) => void) {
    this.#onWrite = onWrite;
  }

  /** Applies a write received at `at`; true when accepted. */
  write(request: WriteRequest, at: number): boolean {
    const newest = this.#newest.get(request.key);
    const accepted = newest === undefined || request.token >= newest;
    if (accepted) this.#newest.set(request.key, request.token);
    if (accepted) this.accepted++;
    else this.refused++;
    this.#onWrite({
      proc: request.proc,
      hold: request.hold,
      key: request.key,
      token: request.token.toString(),
      seq: request.seq,
      look: request.look,
      at,
      accepted,
      newest: newest?.toString(),
    });
    return accepted;
  }
}
