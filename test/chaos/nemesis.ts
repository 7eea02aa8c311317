/**
 * Runs the nemesis's schedule (schedule.ts) against the clients and the backend: each lane in order, each episode at
 * its planned time or as soon as the lane's previous one has healed, each healed before the lane moves on. Episodes
 * whose time comes after the campaign's end are skipped, so a lane that fell behind does not stretch the campaign.
 *
 * A partition or lost replies end with the affected connections reset (see the heal below); a delay just ends.
 *
 * pause-holder and pause-leader stop whichever client holds a lock (pause-holder; a permit when nobody holds a lock)
 * or leads (pause-leader) when the episode starts (the seeded `pick` chooses among several): the faults that matter
 * most hit the processes that matter most, as Jepsen's nemeses target primaries. With nobody holding they stop the
 * episode's fallback target.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import type { Backend } from './drivers.js';
import type { NemesisRecord } from './protocol.js';
import { describeEpisode, type Episode, type FaultKind } from './schedule.js';

/** What the nemesis acts on, provided by the campaign. */
export interface NemesisTarget {
  readonly backend: Backend;
  /** Whether client `index` is running (not paused, not dead, not restarting). */
  running(index: number): boolean;
  pause(index: number): void;
  resume(index: number): void;
  /** SIGKILL, resolved once it is gone. */
  kill(index: number): Promise<void>;
  /** Starts a new incarnation of client `index`. */
  restart(index: number): Promise<void>;
  /** Indexes of the running clients that hold a key starting with `prefix` ('lock:', 'permit:' or 'lead:'), sorted. */
  holders(prefix: string): number[];
}

export class Nemesis {
  readonly injected = new Map<FaultKind, number>();
  readonly #schedule: readonly Episode[];
  readonly #target: NemesisTarget;
  readonly #record: (entry: NemesisRecord) => void;
  readonly #now: () => number;
  readonly #elapsedMs: () => number;

  /** `now` stamps the history (ns since the epoch); `elapsedMs` is the time since the workload started. */
  constructor(
    schedule: readonly Episode[],
    target: NemesisTarget,
    record: (entry: NemesisRecord) => void,
    now: () => number,
    elapsedMs: () => number,
  ) {
    this.#schedule = schedule;
    this.#target = target;
    this.#record = record;
    this.#now = now;
    this.#elapsedMs = elapsedMs;
  }

  /** Runs every lane until its episodes are done or skipped; `endMs` is the campaign's end (workload time). */
  async run(endMs: number): Promise<void> {
    const lanes = new Map<string, Episode[]>();
    for (const e of this.#schedule) lanes.set(e.lane, [...(lanes.get(e.lane) ?? []), e]);
    await Promise.all([...lanes.values()].map((episodes) => this.#lane(episodes, endMs)));
  }

  async #lane(episodes: readonly Episode[], endMs: number): Promise<void> {
    for (const e of episodes) {
      const wait = e.at - this.#elapsedMs();
      if (wait > 0) await sleep(wait);
      if (this.#elapsedMs() >= endMs) {
        this.#log(e, 'skip', 'the campaign is over');
        continue;
      }
      await this.#episode(e);
    }
  }

  #log(e: Episode, phase: NemesisRecord['phase'], detail: string, client = -1): void {
    this.#record({ at: this.#now(), episode: e.id, kind: e.kind, phase, client, detail: `${describeEpisode(e)}: ${detail}` });
  }

  #count(kind: FaultKind): void {
    this.injected.set(kind, (this.injected.get(kind) ?? 0) + 1);
  }

  async #episode(e: Episode): Promise<void> {
    const t = this.#target;
    const backend = t.backend;
    switch (e.kind) {
      case 'pause':
      case 'pause-holder':
      case 'pause-leader': {
        let candidates: number[] = [];
        if (e.kind === 'pause-leader') candidates = t.holders('lead:');
        else if (e.kind === 'pause-holder') {
          // A lock's holders (exclusive or shared) first; a permit's when nobody holds a lock.
          candidates = t.holders('lock:');
          if (candidates.length === 0) candidates = t.holders('permit:');
        }
        const victim = candidates.length > 0 ? (candidates[e.pick % candidates.length] ?? e.target) : e.target;
        if (!t.running(victim)) {
          this.#log(e, 'skip', `client ${victim} is not running`);
          return;
        }
        t.pause(victim);
        this.#count(e.kind);
        this.#log(e, 'start', `SIGSTOP client ${victim}${candidates.length > 0 ? ' (holding)' : ''}`, victim);
        await sleep(e.durationMs);
        t.resume(victim);
        this.#log(e, 'heal', `SIGCONT client ${victim}`, victim);
        return;
      }
      case 'kill': {
        if (!t.running(e.target)) {
          this.#log(e, 'skip', `client ${e.target} is not running`);
          return;
        }
        await t.kill(e.target);
        this.#count(e.kind);
        this.#log(e, 'start', `SIGKILL client ${e.target}`, e.target);
        await sleep(e.durationMs);
        await t.restart(e.target);
        this.#log(e, 'heal', `client ${e.target} restarted`, e.target);
        return;
      }
      case 'cut':
      case 'partition':
      case 'delay':
      case 'drop-replies': {
        const links = backend.links(e.target);
        if (links.length === 0) {
          this.#log(e, 'skip', `client ${e.target} has no link yet`);
          return;
        }
        for (const link of links) {
          if (e.kind === 'cut') link.cut();
          else if (e.kind === 'partition') link.blackhole();
          else if (e.kind === 'delay') link.delay(e.latencyMs ?? 0);
          else link.dropReplies();
        }
        this.#count(e.kind);
        this.#log(e, 'start', `${e.kind} client ${e.target}'s links`, e.target);
        await sleep(e.durationMs);
        for (const link of links) {
          // The proxy discarded bytes of connections it kept open, which TCP never does (it delivers every byte in
          // order or breaks the connection): those connections end here, as a partition's would once either side
          // gave up on them. A delay loses nothing, so its connections carry on.
          if (e.kind === 'partition' || e.kind === 'drop-replies') link.cut();
          link.pass();
        }
        this.#log(e, 'heal', `client ${e.target}'s links pass`, e.target);
        return;
      }
      case 'restart-server':
        return this.#server(e, backend.restartServer?.bind(backend), 'SIGKILL the server, restart it');
      case 'pause-server':
        return this.#server(e, backend.pauseServer?.bind(backend), 'SIGSTOP the server');
      case 'stall-db':
        return this.#server(e, backend.stallDb?.bind(backend), 'hold the database write lock');
      case 'failover':
        return this.#server(e, backend.failover?.bind(backend), 'SIGKILL the master; Sentinel promotes the replica');
      case 'kill-member':
      case 'kill-leader': {
        const kill = backend.killMember?.bind(backend);
        if (!kill) {
          this.#log(e, 'skip', 'no ensemble');
          return;
        }
        this.#count(e.kind);
        this.#log(e, 'start', e.kind === 'kill-leader' ? 'SIGKILL the leader' : `SIGKILL member ${e.target}`);
        const which = await heal(() => kill(e.kind === 'kill-leader', e.target, e.durationMs));
        this.#log(e, 'heal', `${which} restarted`);
        return;
      }
    }
  }

  async #server(e: Episode, fault: ((ms: number) => Promise<unknown>) | undefined, what: string): Promise<void> {
    if (!fault) {
      this.#log(e, 'skip', 'not supported by this backend');
      return;
    }
    this.#count(e.kind);
    this.#log(e, 'start', what);
    const how = await heal(() => fault(e.durationMs));
    this.#log(e, 'heal', typeof how === 'string' ? how : 'back');
  }
}

/** A heal that fails (a restart not ready in time on a loaded machine) is tried again: the campaign needs it back. */
async function heal<T>(step: () => Promise<T>, attempts = 3): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await step();
    } catch (error) {
      if (attempt >= attempts) throw error;
    }
  }
}
