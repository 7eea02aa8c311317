import {
  checkKey,
  ignoredNodeError,
  lookupIgnore,
  lookupReplicas,
  WeightedNodes,
  type GetNodesOptions,
  type Placement,
  type PlacementKey,
} from './placement.js';

/**
 * What HashRing and ToozHashRing share: a sorted ring of points, each owned by a node, and the clockwise walk that
 * collects distinct owners for replicas. Subclasses build the points and find where a key lands.
 */
export abstract class Ring extends WeightedNodes implements Placement {
  /** Node ids, sorted; owners[] holds indexes into it. */
  protected ids: string[] = [];
  /** Owner of each point, in ring order. */
  protected owners = new Uint32Array(0);
  private readonly index = new Map<string, number>();
  // stamps[node] === generation marks a node seen (or ignored) during the current walk: no clearing, no allocation.
  private stamps = new Uint32Array(0);
  private generation = 0;

  /** Rebuilds the points from `weights` for the sorted `ids`; sets `owners`. */
  protected abstract build(ids: readonly string[]): void;

  /** The index of the first point at or after where `key` lands (wrapped to 0 past the end). */
  protected abstract locate(key: PlacementKey): number;

  get(key: PlacementKey): string | undefined {
    checkKey(key);
    this.refresh();
    if (this.owners.length === 0) return undefined;
    return this.ids[this.owners[this.locate(key)]!];
  }

  getNodes(key: PlacementKey, options?: GetNodesOptions): string[] {
    checkKey(key);
    const replicas = lookupReplicas(options);
    const ignore = lookupIgnore(options);
    this.refresh();
    const stamps = this.stamps;
    const generation = this.nextGeneration();
    let ignored = 0;
    if (ignore !== undefined) {
      // A bad element throws mid-way: the marks die with this generation, so nothing is left behind.
      for (const node of ignore) {
        if (typeof node !== 'string') throw ignoredNodeError(node);
        const i = this.index.get(node);
        if (i !== undefined && stamps[i] !== generation) {
          stamps[i] = generation;
          ignored++;
        }
      }
    }
    const want = Math.min(replicas, this.ids.length - ignored);
    const result: string[] = [];
    if (want === 0) return result;
    const owners = this.owners;
    // Every node owns at least one point, so one lap finds all of them.
    for (let p = this.locate(key); result.length < want; p = p + 1 === owners.length ? 0 : p + 1) {
      const owner = owners[p]!;
      if (stamps[owner] !== generation) {
        stamps[owner] = generation;
        result.push(this.ids[owner]!);
      }
    }
    return result;
  }

  private nextGeneration(): number {
    if (this.generation === 0xffffffff) {
      this.stamps.fill(0);
      this.generation = 0;
    }
    return ++this.generation;
  }

  private refresh(): void {
    if (!this.dirty) return;
    const ids = this.nodes;
    this.build(ids);
    this.ids = ids;
    this.index.clear();
    for (let i = 0; i < ids.length; i++) this.index.set(ids[i]!, i);
    this.stamps = new Uint32Array(ids.length);
    this.generation = 0;
    this.dirty = false;
  }
}
