/**
 * Load through a Redis failover (Sentinel or Cluster): clients loop acquire -> release on locks `a` and `b`, each hold's
 * interval recorded for checkIntervals. Once `cut()` is called (replication stopped, the master about to die), a
 * holder of `a` keeps it until `promoted()`: a grant lost in the failover is then still held when the promoted replica
 * grants the lock again, while `b` keeps changing hands, so the master grants what the replica never sees.
 */
import type { Redis } from 'ioredis';
import { expect } from 'vitest';
import { connect, type Coordinator } from '../../src/index.js';
import { checkIntervals, type HoldInterval } from './history.js';

/** The token the server behind `admin` has for lock `name`'s exclusive holder, if any. */
export function tokenOn(admin: Redis, namespace: string, name: string): Promise<string | null> {
  return admin.hget(`{${namespace}}:l:lock:${name}`, 't');
}

export class FailoverLoad {
  readonly names: readonly string[] = ['a', 'b'];
  readonly intervals = new Map<string, HoldInterval[]>(this.names.map((name) => [name, []]));
  /** Holds taken so far. */
  grants = 0;
  /** Grants when cut() was called. */
  grantsAtCut = 0;
  #cut = false;
  #promotedNow: () => void = () => undefined;
  readonly #promoted = new Promise<void>((resolve) => {
    this.#promotedNow = resolve;
  });
  readonly #stop = new AbortController();
  readonly #clients: readonly Coordinator[];
  readonly #loops: Array<Promise<void>>;

  /** Two clients per lock, so a client waiting for `a` held across the failover never holds up `b`. */
  constructor(clients: readonly Coordinator[], acquireTimeoutMs: number) {
    this.#clients = clients;
    this.#loops = clients.map((client, i) => this.#loop(client, this.names[i % this.names.length] ?? 'a', acquireTimeoutMs));
  }

  /** Four clients of `url` in `namespace`, looping; close() ends the loops and closes them. */
  static async connect(url: string, namespace: string, acquireTimeoutMs: number): Promise<FailoverLoad> {
    const clients: Coordinator[] = [];
    try {
      for (let i = 0; i < 4; i++) {
        // A TTL longer than the failover takes here: sessions outlive it, so only the cut-off grants are lost.
        clients.push(await connect(url, { member: `c${String(i)}`, namespace, sessionTtlMs: 20_000 }));
      }
    } catch (error) {
      await Promise.all(clients.map((c) => c.close()));
      throw error;
    }
    return new FailoverLoad(clients, acquireTimeoutMs);
  }

  /** Holds of `a` taken from now on are kept until promoted(). */
  cut(): void {
    this.#cut = true;
    this.grantsAtCut = this.grants;
  }

  promoted(): void {
    this.#promotedNow();
  }

  /** Holds of `name` that started after `at` (process.hrtime.bigint()). */
  since(name: string, at: bigint): number {
    return (this.intervals.get(name) ?? []).filter((i) => i.start > at).length;
  }

  /** Ends the loops and waits for them. */
  async stop(): Promise<void> {
    this.#stop.abort();
    this.#promotedNow();
    await Promise.all(this.#loops);
  }

  /** Ends the loops and closes the clients. */
  async close(): Promise<void> {
    await this.stop();
    await Promise.all(this.#clients.map((c) => c.close()));
  }

  /** With ?replicas no hold overlaps another of its lock; without, whether one did is only told (it is a race). */
  check(replicas: boolean): void {
    const violations = this.names.flatMap((name) => checkIntervals(this.intervals.get(name) ?? []).violations);
    if (replicas) {
      expect(violations).toEqual([]);
      return;
    }
    console.info(
      `without ?replicas: ${String(this.grants)} grants (${String(this.grants - this.grantsAtCut)} after the replication link was cut), ${
        violations.length > 0 ? `a double grant was seen: ${violations[0] ?? ''}` : 'no double grant was seen this time'
      }`,
    );
  }

  async #loop(client: Coordinator, name: string, acquireTimeoutMs: number): Promise<void> {
    const signal = this.#stop.signal;
    while (!signal.aborted) {
      let held;
      try {
        held = await client.lock(name).acquire({ timeoutMs: acquireTimeoutMs, signal });
      } catch {
        continue;
      }
      const start = process.hrtime.bigint();
      const holdAcross = this.#cut && name === 'a';
      // Held until the release is sent, or until the holder is told it lost the lock, whichever comes first.
      let lostAt: bigint | undefined;
      held.signal.addEventListener('abort', () => {
        lostAt = process.hrtime.bigint();
      });
      this.grants++;
      await (holdAcross ? this.#promoted : new Promise((resolve) => setImmediate(resolve)));
      const end = lostAt ?? process.hrtime.bigint();
      this.intervals.get(name)?.push({ client: client.member, token: held.token, start, end });
      await held.release().catch(() => undefined);
    }
  }
}
