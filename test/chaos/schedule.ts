/**
 * The nemesis's schedule, a pure function of the seed: which faults, when, against whom, for how long.
 *
 * Two lanes run side by side so that faults combine (Jepsen's lesson: combinations find what single scenarios
 * miss): the client lane stops and kills client processes; the infrastructure lane breaks links (each client has
 * its own fault proxies) and servers. Within a lane episodes follow each other; across lanes they overlap freely. A
 * lane waits for each episode to heal before its next one starts, so a late episode (a slow restart on a loaded
 * machine) shifts the rest of its lane: the same seed gives the same sequence of faults and parameters, while the
 * wall-clock timings vary from run to run.
 *
 * Durations are drawn in units of the session TTL, half of them shorter and half longer than the TTL: shorter faults
 * must be ridden out (suspended, reconnected, nothing lost), longer ones must cost the session and nothing else.
 */
import { Prng } from './prng.js';

/** Faults that stop or kill client processes. */
export const CLIENT_FAULTS = ['pause', 'pause-holder', 'pause-leader', 'kill'] as const;
/** Faults of a client's links to the backend (its own fault proxies). */
export const LINK_FAULTS = ['cut', 'partition', 'delay', 'drop-replies'] as const;
/** Faults of the backend itself; each driver declares which of these it has. */
export const SERVER_FAULTS = ['restart-server', 'pause-server', 'kill-member', 'kill-leader', 'failover', 'stall-db'] as const;

export type ClientFault = (typeof CLIENT_FAULTS)[number];
export type LinkFault = (typeof LINK_FAULTS)[number];
export type ServerFault = (typeof SERVER_FAULTS)[number];
export type FaultKind = ClientFault | LinkFault | ServerFault;
export const FAULT_KINDS: readonly FaultKind[] = [...CLIENT_FAULTS, ...LINK_FAULTS, ...SERVER_FAULTS];

export interface Episode {
  /** Position in the schedule, for the history. */
  readonly id: number;
  readonly lane: 'clients' | 'infra';
  /** Planned start, ms after the workload started. */
  readonly at: number;
  readonly kind: FaultKind;
  /** A client index (client and link faults; the fallback target of pause-holder / pause-leader), else a member index. */
  readonly target: number;
  /** How long the fault lasts (pause, cut, ...) or how long the victim stays down (kill, restart). */
  readonly durationMs: number;
  /** delay only: added latency per direction. */
  readonly latencyMs?: number;
  /** A number for choices made when the episode runs (which holder to stop), drawn here so it is seeded too. */
  readonly pick: number;
}

export interface PlanOptions {
  readonly seed: number;
  readonly seconds: number;
  readonly clients: number;
  readonly ttlMs: number;
  /** The faults this campaign may inject. */
  readonly faults: readonly FaultKind[];
  /** Members of the backend's ensemble (1 for a single server). */
  readonly members?: number;
  /** Mean pause between a lane's episodes, in TTLs (default 0.9). */
  readonly gapTtl?: number;
}

/** Shorter than the TTL half of the time, longer the other half. */
function shortOrLong(rng: Prng, ttl: number): number {
  return Math.round(rng.chance(0.5) ? rng.between(0.2, 0.8) * ttl : rng.between(1.2, 2.5) * ttl);
}

function episodeFor(rng: Prng, kind: FaultKind, options: PlanOptions): Omit<Episode, 'id' | 'lane' | 'at'> {
  const ttl = options.ttlMs;
  const pick = rng.int(0, 2 ** 31 - 1);
  const client = rng.int(0, options.clients - 1);
  switch (kind) {
    case 'pause':
    case 'pause-holder':
    case 'pause-leader':
    case 'cut':
    case 'partition':
    case 'drop-replies':
    case 'pause-server':
    case 'stall-db':
      return { kind, target: client, durationMs: shortOrLong(rng, ttl), pick };
    case 'delay':
      // Mostly latency a session rides out; sometimes more than the TTL per round trip.
      return {
        kind,
        target: client,
        durationMs: shortOrLong(rng, ttl),
        latencyMs: Math.round(rng.chance(0.7) ? rng.between(20, 0.3 * ttl) : rng.between(1.0, 1.5) * ttl),
        pick,
      };
    case 'kill':
    case 'restart-server':
      return { kind, target: client, durationMs: Math.round(rng.between(0, 1.5) * ttl), pick };
    case 'kill-member':
    case 'kill-leader':
    case 'failover':
      return { kind, target: rng.int(0, Math.max(1, options.members ?? 1) - 1), durationMs: Math.round(rng.between(0.5, 2.5) * ttl), pick };
  }
}

/** The whole schedule for a campaign of `seconds`, in planned order. */
export function planSchedule(options: PlanOptions): Episode[] {
  const root = new Prng(options.seed).fork('nemesis');
  const lanes: Array<{ lane: Episode['lane']; kinds: FaultKind[] }> = [
    { lane: 'clients', kinds: options.faults.filter((f) => (CLIENT_FAULTS as readonly string[]).includes(f)) },
    { lane: 'infra', kinds: options.faults.filter((f) => !(CLIENT_FAULTS as readonly string[]).includes(f)) },
  ];
  const gap = options.gapTtl ?? 0.9;
  const planned: Array<Omit<Episode, 'id'>> = [];
  for (const { lane, kinds } of lanes) {
    if (kinds.length === 0) continue;
    const rng = root.fork(lane);
    // The first second lets every client connect and start working.
    let at = 1000 + rng.between(0, gap) * options.ttlMs;
    while (at < options.seconds * 1000) {
      const episode = episodeFor(rng, rng.pick(kinds), options);
      planned.push({ lane, at: Math.round(at), ...episode });
      at += episode.durationMs + rng.between(0.2, 2 * gap - 0.2) * options.ttlMs;
    }
  }
  return planned.sort((a, b) => a.at - b.at || a.lane.localeCompare(b.lane)).map((e, id) => ({ id, ...e }));
}

/** One line per episode, for --plan and for the saved history. */
export function describeEpisode(e: Episode): string {
  const latency = e.latencyMs === undefined ? '' : ` latency ${e.latencyMs} ms`;
  return `#${e.id} ${e.lane} +${(e.at / 1000).toFixed(2)} s ${e.kind} target ${e.target} for ${e.durationMs} ms${latency}`;
}
