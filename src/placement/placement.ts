import { invalidArgument } from '../errors.js';
import { compareIds } from '../kit/ids.js';

/** What every placement maps: a string (hashed as UTF-8) or raw bytes. */
export type PlacementKey = string | Uint8Array;

/** Options of `getNodes()`. */
export interface GetNodesOptions {
  /** How many distinct nodes to return, primary first; default 1. Capped at the number of non-ignored nodes. */
  readonly replicas?: number;
  /** Nodes to skip, as if they were absent for this lookup. */
  readonly ignore?: Iterable<string>;
}

/** Nodes as a list (weight 1 each) or as a record of weights. */
export type PlacementNodes = Iterable<string> | Readonly<Record<string, number>>;

/** Maps keys to nodes. Every mapping is a pure function of (nodes, weights, options), whatever the order of adds. */
export interface Placement {
  /** Adds `node`, or replaces its weight. Weight > 0, default 1. */
  add(node: string, weight?: number): void;
  /** Removes `node`; false when it was absent. */
  remove(node: string): boolean;
  /** Whether `node` is present. */
  has(node: string): boolean;
  /** The nodes, sorted. */
  readonly nodes: string[];
  /** How many nodes there are. */
  readonly size: number;
  /** The primary owner of `key`, or undefined when there are no nodes. */
  get(key: PlacementKey): string | undefined;
  /** Distinct owners of `key`, primary first. */
  getNodes(key: PlacementKey, options?: GetNodesOptions): string[];
}

export function describe(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  if (value instanceof Uint8Array) return 'a Uint8Array';
  if (typeof value === 'string') return JSON.stringify(value.length > 40 ? `${value.slice(0, 40)}…` : value);
  if (typeof value === 'number' || typeof value === 'boolean' || typeof value === 'bigint') return String(value);
  return typeof value;
}

export function checkNode(node: unknown, argument = 'node'): string {
  if (typeof node !== 'string') throw invalidArgument(argument, `must be a string, got ${describe(node)}`);
  if (node.length === 0) throw invalidArgument(argument, 'must not be empty');
  return node;
}

/** A weight: a finite number > 0; undefined means 1. */
export function checkWeight(weight: unknown, argument = 'weight'): number {
  if (weight === undefined) return 1;
  if (typeof weight !== 'number' || !Number.isFinite(weight) || weight <= 0) {
    throw invalidArgument(argument, `must be a finite number > 0, got ${describe(weight)}`);
  }
  return weight;
}

export function checkKey(key: unknown): PlacementKey {
  if (typeof key !== 'string' && !(key instanceof Uint8Array)) {
    throw invalidArgument('key', `must be a string or a Uint8Array, got ${describe(key)}`);
  }
  return key;
}

/** A positive integer option such as `vnodes`, `partitions` or `replicas`. */
export function checkCount(value: unknown, argument: string, fallback: number, max = Number.MAX_SAFE_INTEGER): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 1 || value > max) {
    throw invalidArgument(argument, `must be an integer from 1 to ${max}, got ${describe(value)}`);
  }
  return value;
}

export function checkOptionsObject(options: unknown, argument = 'options'): void {
  if (options !== undefined && (typeof options !== 'object' || options === null)) {
    throw invalidArgument(argument, `must be an object, got ${describe(options)}`);
  }
}

/** Validates getNodes options and returns the replica count. */
export function lookupReplicas(options: GetNodesOptions | undefined): number {
  checkOptionsObject(options);
  return checkCount(options?.replicas, 'replicas', 1);
}

/**
 * The ignore list, checked to be an iterable (callers then read it once, so generators work, and check each element
 * with checkIgnored). A string is iterable, but ignore: 'a' would mean its characters: certainly a mistake.
 */
export function lookupIgnore(options: GetNodesOptions | undefined): Iterable<unknown> | undefined {
  const ignore: unknown = options?.ignore;
  if (ignore === undefined) return undefined;
  if (typeof ignore !== 'object' || ignore === null || !(Symbol.iterator in ignore)) {
    throw invalidArgument('ignore', `must be an iterable of node names, got ${describe(ignore)}`);
  }
  return ignore as Iterable<unknown>;
}

export function ignoredNodeError(node: unknown): Error {
  return invalidArgument('ignore', `must hold strings only, got ${describe(node)}`);
}

/** Constructor input -> node weights, validated in full before the caller changes anything. */
export function parseNodes(nodes: unknown): Map<string, number> {
  const result = new Map<string, number>();
  if (nodes === undefined) return result;
  if (typeof nodes !== 'object' || nodes === null) {
    throw invalidArgument('nodes', `must be an iterable of node names or a record of weights, got ${describe(nodes)}`);
  }
  if (Symbol.iterator in nodes) {
    for (const node of nodes as Iterable<unknown>) result.set(checkNode(node, 'nodes'), 1);
    return result;
  }
  for (const [node, weight] of Object.entries(nodes)) {
    result.set(checkNode(node, 'nodes'), checkWeight(weight));
  }
  return result;
}

/** The order used for `nodes` and for breaking ties: plain UTF-16 code unit order, the same in every process. */
export { compareIds };

/**
 * The node bookkeeping the three placements share: weights by node, validation, and a dirty flag so the lookup
 * structure is rebuilt once, lazily, after any number of changes.
 */
export abstract class WeightedNodes {
  protected readonly weights = new Map<string, number>();
  /** True when the lookup structure no longer matches `weights`. */
  protected dirty = true;

  /** For constructors: validates every node before adding any, so a bad entry leaves nothing half-built. */
  protected addAll(nodes: unknown): void {
    const parsed = parseNodes(nodes);
    for (const weight of parsed.values()) this.checkWeightLimit(weight);
    for (const [node, weight] of parsed) this.weights.set(node, weight);
    this.dirty = true;
  }

  /** Subclasses refuse weights that would need an unreasonable number of points. */
  protected checkWeightLimit(_weight: number): void {
    return;
  }

  /** Adds `node`, or replaces its weight. Weight > 0, default 1; anything else throws ERR_INVALID_ARGUMENT. */
  add(node: string, weight?: number): void {
    const id = checkNode(node);
    const w = checkWeight(weight);
    this.checkWeightLimit(w);
    if (this.weights.get(id) === w) return;
    this.weights.set(id, w);
    this.dirty = true;
  }

  /** Removes `node`; false when it was absent. */
  remove(node: string): boolean {
    const removed = this.weights.delete(checkNode(node));
    if (removed) this.dirty = true;
    return removed;
  }

  /** Whether `node` is present. */
  has(node: string): boolean {
    return this.weights.has(checkNode(node));
  }

  /** The weight of `node`, or undefined when it is absent. */
  weight(node: string): number | undefined {
    return this.weights.get(checkNode(node));
  }

  /** The nodes, sorted. */
  get nodes(): string[] {
    return [...this.weights.keys()].sort(compareIds);
  }

  /** How many nodes there are. */
  get size(): number {
    return this.weights.size;
  }
}
