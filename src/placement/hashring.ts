import { invalidArgument } from '../errors.js';
import { mix32, murmur3 } from './hash.js';
import { checkCount, checkOptionsObject, type PlacementKey, type PlacementNodes } from './placement.js';
import { Ring } from './ring.js';

/** Options of `new HashRing()`. */
export interface HashRingOptions {
  /** Points per weight unit; default 160 (tooz's 32 gives a peak/mean load of 1.35 at 100 nodes). */
  readonly vnodes?: number;
}

const DEFAULT_VNODES = 160;
/** Most points one node may have: keeps a typo'd weight from eating the heap. */
const MAX_POINTS = 1 << 24;
/** Ring positions packed as position * 2^21 + owner stay exact in a double. */
const PACK = 2 ** 21;

/** Offsets added to a node's hash before mixing, one per point: the same for every node. */
let offsets = new Uint32Array(0);

function pointOffsets(count: number): Uint32Array {
  if (offsets.length < count) {
    const grown = new Uint32Array(Math.max(count, offsets.length * 2, 1024));
    // mix32 of i + 1 (mix32(0) is 0): point offsets that look random, so two nodes whose hashes differ by a small
    // multiple of a constant do not share runs of points.
    for (let i = 0; i < grown.length; i++) grown[i] = mix32(Math.imul(i + 1, 0x9e3779b9));
    offsets = grown;
  }
  return offsets;
}

/**
 * Consistent hash ring with murmur3: `round(weight * vnodes)` points per node (at least 1) at mix32(hash(node) +
 * offset[i]). A node's points depend only on its id, and a larger weight only appends points, so a weight increase
 * moves keys to that node and nowhere else. A key goes to the first point at or after murmur3(key), clockwise;
 * points at the same position are ordered by node id; replicas are the next distinct owners clockwise.
 *
 * @example
 * ```ts
 * const ring = new HashRing({ a: 1, b: 2 });
 * ring.get('user:42');
 * ring.getNodes('user:42', { replicas: 2 });
 * ```
 */
export class HashRing extends Ring {
  /** Points per weight unit. */
  readonly vnodes: number;
  private points = new Uint32Array(0);

  constructor(nodes?: PlacementNodes, options?: HashRingOptions) {
    checkOptionsObject(options);
    const vnodes = checkCount(options?.vnodes, 'vnodes', DEFAULT_VNODES, MAX_POINTS);
    super();
    this.vnodes = vnodes;
    this.addAll(nodes);
  }

  private pointCount(weight: number): number {
    return Math.max(1, Math.round(weight * this.vnodes));
  }

  protected override checkWeightLimit(weight: number): void {
    if (this.pointCount(weight) > MAX_POINTS) {
      throw invalidArgument('weight', `is too large: weight * vnodes must be at most ${MAX_POINTS}, got ${weight}`);
    }
  }

  protected locate(key: PlacementKey): number {
    const h = murmur3(key);
    const points = this.points;
    let lo = 0;
    let hi = points.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (points[mid]! < h) lo = mid + 1;
      else hi = mid;
    }
    return lo === points.length ? 0 : lo;
  }

  protected build(ids: readonly string[]): void {
    let total = 0;
    let most = 0;
    const counts = ids.map((id) => this.pointCount(this.weights.get(id)!));
    for (const c of counts) {
      total += c;
      most = Math.max(most, c);
    }
    const table = pointOffsets(most);
    const points = new Uint32Array(total);
    const owners = new Uint32Array(total);
    if (ids.length <= PACK) {
      // Sort (position, owner) pairs as one number each: a native numeric sort, ties by node id for free.
      const packed = new Float64Array(total);
      let j = 0;
      for (let i = 0; i < ids.length; i++) {
        const h = murmur3(ids[i]!);
        for (let r = 0; r < counts[i]!; r++) packed[j++] = mix32(h + table[r]!) * PACK + i;
      }
      packed.sort();
      for (let k = 0; k < total; k++) {
        const v = packed[k]!;
        const position = Math.floor(v / PACK);
        points[k] = position;
        owners[k] = v - position * PACK;
      }
    } else {
      const pos = new Uint32Array(total);
      const own = new Uint32Array(total);
      let j = 0;
      for (let i = 0; i < ids.length; i++) {
        const h = murmur3(ids[i]!);
        for (let r = 0; r < counts[i]!; r++, j++) {
          pos[j] = mix32(h + table[r]!);
          own[j] = i;
        }
      }
      const order = Array.from({ length: total }, (_, k) => k);
      order.sort((a, b) => pos[a]! - pos[b]! || own[a]! - own[b]!);
      for (let k = 0; k < total; k++) {
        points[k] = pos[order[k]!]!;
        owners[k] = own[order[k]!]!;
      }
    }
    this.points = points;
    this.owners = owners;
  }
}
