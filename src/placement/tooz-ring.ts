import { invalidArgument } from '../errors.js';
import { md5Repeated, md5Words } from './hash.js';
import { checkCount, checkOptionsObject, type PlacementKey, type PlacementNodes } from './placement.js';
import { Ring } from './ring.js';

/** Options of `new ToozHashRing()`. */
export interface ToozHashRingOptions {
  /** Points per weight unit; default 32 (tooz's `partitions`, 2**5). */
  readonly partitions?: number;
}

const DEFAULT_PARTITIONS = 32;
const MAX_POINTS = 1 << 20;
const encoder = new TextEncoder();

/**
 * Python tooz's `tooz.hashring.HashRing`, key for key: node points are md5 digests of the node's UTF-8 bytes repeated
 * 2, 3, ... times (tooz's repeated `update`), `partitions * weight` of them, compared as 128-bit integers; a key goes
 * to the first point strictly after md5(key) (bisect-right), wrapping to the first; replicas are the next distinct
 * non-ignored owners clockwise. String keys hash as UTF-8, as tooz's partitioner encodes them (tooz's ring itself
 * only takes bytes); tooz returns replicas as a set, this returns them in ring order, primary first.
 *
 * Deliberate differences (everywhere else the owners are tooz's):
 * - weight 0 is refused (tooz accepts it and then loops forever looking for replicas), and so are other non-positive
 *   weights; non-integer weights get round(partitions * weight) points (tooz raises TypeError);
 * - re-adding a node replaces its weight: tooz keeps the points of a previous, larger weight, and its remove_node
 *   then leaves them behind;
 * - two nodes whose ids are repetitions of one another ('a', 'aa') share md5 points: tooz keeps only the node added
 *   last at such a point (its order then depends on Python's set order); here both stay, ordered by node id.
 *
 * @example
 * ```ts
 * const ring = new ToozHashRing(['node-1', 'node-2']); // the owners Python tooz computes
 * ring.get('job:7');
 * ```
 */
export class ToozHashRing extends Ring {
  /** Points per weight unit (tooz's `partitions`). */
  readonly partitions: number;
  /** Point digests, four big-endian 32-bit words each, in ring order. */
  private points = new Uint32Array(0);
  private readonly digest = new Uint32Array(4);

  constructor(nodes?: PlacementNodes, options?: ToozHashRingOptions) {
    checkOptionsObject(options);
    const partitions = checkCount(options?.partitions, 'partitions', DEFAULT_PARTITIONS, MAX_POINTS);
    super();
    this.partitions = partitions;
    this.addAll(nodes);
  }

  private pointCount(weight: number): number {
    return Math.max(1, Math.round(weight * this.partitions));
  }

  protected override checkWeightLimit(weight: number): void {
    if (this.pointCount(weight) > MAX_POINTS) {
      throw invalidArgument('weight', `is too large: weight * partitions must be at most ${MAX_POINTS}, got ${weight}`);
    }
  }

  protected locate(key: PlacementKey): number {
    const d = this.digest;
    md5Words(key, d);
    const d0 = d[0]!;
    const d1 = d[1]!;
    const d2 = d[2]!;
    const d3 = d[3]!;
    const points = this.points;
    // bisect_right: the first point greater than the digest.
    let lo = 0;
    let hi = points.length >>> 2;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      const at = mid << 2;
      const p0 = points[at]!;
      let greater: boolean;
      if (p0 !== d0) greater = p0 > d0;
      else if (points[at + 1] !== d1) greater = points[at + 1]! > d1;
      else if (points[at + 2] !== d2) greater = points[at + 2]! > d2;
      else greater = points[at + 3]! > d3;
      if (greater) hi = mid;
      else lo = mid + 1;
    }
    return lo === points.length >>> 2 ? 0 : lo;
  }

  protected build(ids: readonly string[]): void {
    const digests: Uint32Array[] = [];
    let total = 0;
    for (const id of ids) {
      const d = md5Repeated(encoder.encode(id), this.pointCount(this.weights.get(id)!));
      digests.push(d);
      total += d.length >>> 2;
    }
    const pos = new Uint32Array(total * 4);
    const own = new Uint32Array(total);
    let j = 0;
    for (let i = 0; i < ids.length; i++) {
      const d = digests[i]!;
      pos.set(d, j * 4);
      own.fill(i, j, j + (d.length >>> 2));
      j += d.length >>> 2;
    }
    const order = Array.from({ length: total }, (_, k) => k);
    order.sort((a, b) => {
      const x = a << 2;
      const y = b << 2;
      return pos[x]! - pos[y]! || pos[x + 1]! - pos[y + 1]! || pos[x + 2]! - pos[y + 2]! || pos[x + 3]! - pos[y + 3]! || own[a]! - own[b]!;
    });
    const points = new Uint32Array(total * 4);
    const owners = new Uint32Array(total);
    for (let k = 0; k < total; k++) {
      const from = order[k]!;
      points.set(pos.subarray(from * 4, from * 4 + 4), k * 4);
      owners[k] = own[from]!;
    }
    this.points = points;
    this.owners = owners;
  }
}
