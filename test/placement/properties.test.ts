import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { HashRing, Rendezvous, ToozHashRing, type Placement } from '../../src/placement/index.js';

fc.configureGlobal({ seed: 0x5eed, numRuns: 60 });

type Build = (nodes?: Record<string, number>) => Placement;

const implementations: readonly (readonly [string, Build])[] = [
  ['Rendezvous', (nodes) => new Rendezvous(nodes)],
  ['HashRing', (nodes) => new HashRing(nodes)],
  ['HashRing (vnodes 3)', (nodes) => new HashRing(nodes, { vnodes: 3 })],
  ['ToozHashRing', (nodes) => new ToozHashRing(nodes)],
  ['ToozHashRing (partitions 2)', (nodes) => new ToozHashRing(nodes, { partitions: 2 })],
];

const nodeId = fc.oneof(fc.string({ minLength: 1, maxLength: 6 }), fc.string({ minLength: 1, maxLength: 4, unit: 'grapheme' }));
const weight = fc.oneof(fc.constant(1), fc.integer({ min: 1, max: 4 }), fc.double({ min: 0.05, max: 4, noNaN: true }));
const nodeSet = fc.dictionary(nodeId, weight, { minKeys: 1, maxKeys: 9 });
const key = fc.oneof(fc.string({ maxLength: 12 }), fc.string({ maxLength: 6, unit: 'grapheme' }), fc.uint8Array({ maxLength: 12 }));
const keys = fc.array(key, { minLength: 1, maxLength: 25 });

/** Every node for every key, primary first: the whole mapping. */
function rankings(p: Placement, ks: readonly (string | Uint8Array)[]): string[][] {
  return ks.map((k) => p.getNodes(k, { replicas: Math.max(1, p.size) }));
}

const without = (list: readonly string[], node: string): string[] => list.filter((n) => n !== node);

describe.each(implementations)('%s', (_name, build) => {
  it('is independent of insertion order and of earlier changes', () => {
    fc.assert(
      fc.property(nodeSet, fc.infiniteStream(fc.nat()), nodeId, keys, (nodes, stream, extra, ks) => {
        const reference = build(nodes);
        const entries = Object.entries(nodes);
        // Shuffle with the stream, add one by one with detours: a temporary node, a temporary weight.
        const shuffled = entries
          .map((entry) => [stream.next().value as number, entry] as const)
          .sort((a, b) => a[0] - b[0])
          .map(([, entry]) => entry);
        const temporary = `${extra}\u0000tmp`;
        fc.pre(!(temporary in nodes));
        const other = build();
        other.add(temporary, 2);
        for (const [node, w] of shuffled) {
          other.add(node, w + 1);
          other.add(node, w);
        }
        other.remove(temporary);
        expect(other.nodes).toEqual(reference.nodes);
        expect(rankings(other, ks)).toEqual(rankings(reference, ks));
      }),
    );
  });

  it('returns distinct, ordered replicas, as many as there are non-ignored nodes, none ignored', () => {
    fc.assert(
      fc.property(
        nodeSet,
        keys,
        fc.integer({ min: 1, max: 12 }),
        fc.array(nodeId, { maxLength: 5 }),
        (nodes, ks, replicas, extraIgnore) => {
          const p = build(nodes);
          const members = Object.keys(nodes);
          const ignore = [...members.filter((_, i) => i % 3 === 1), ...extraIgnore];
          const ignored = new Set(ignore.filter((n) => members.includes(n)));
          const withoutIgnored = build(Object.fromEntries(Object.entries(nodes).filter(([n]) => !ignored.has(n))));
          for (const k of ks) {
            const owners = p.getNodes(k, { replicas, ignore });
            expect(new Set(owners).size).toBe(owners.length);
            expect(owners.length).toBe(Math.min(replicas, members.length - ignored.size));
            for (const o of owners) expect(ignored.has(o)).toBe(false);
            // Ordered: fewer replicas give a prefix of more.
            expect(p.getNodes(k, { replicas: replicas + 1, ignore }).slice(0, owners.length)).toEqual(owners);
            // Ignoring a node is the same as removing it.
            if (withoutIgnored.size > 0) expect(withoutIgnored.getNodes(k, { replicas })).toEqual(owners);
            expect(p.get(k)).toBe(p.getNodes(k)[0]);
          }
        },
      ),
    );
  });

  it('moves keys only to a joining node, keeping every other order', () => {
    fc.assert(
      fc.property(nodeSet, nodeId, weight, keys, (nodes, joiner, w, ks) => {
        fc.pre(!(joiner in nodes));
        const p = build(nodes);
        const before = rankings(p, ks);
        const primaries = ks.map((k) => p.get(k));
        p.add(joiner, w);
        const after = rankings(p, ks);
        ks.forEach((k, i) => {
          expect(without(after[i]!, joiner)).toEqual(before[i]);
          const owner = p.get(k);
          if (owner !== primaries[i]) expect(owner).toBe(joiner);
        });
      }),
    );
  });

  it('moves keys only away from a leaving node', () => {
    fc.assert(
      fc.property(nodeSet, fc.nat(), keys, (nodes, which, ks) => {
        const members = Object.keys(nodes);
        fc.pre(members.length > 1);
        const leaver = members[which % members.length]!;
        const p = build(nodes);
        const before = rankings(p, ks);
        const primaries = ks.map((k) => p.get(k));
        expect(p.remove(leaver)).toBe(true);
        expect(p.remove(leaver)).toBe(false);
        const after = rankings(p, ks);
        ks.forEach((k, i) => {
          expect(after[i]).toEqual(without(before[i]!, leaver));
          if (primaries[i] !== leaver) expect(p.get(k)).toBe(primaries[i]);
        });
      }),
    );
  });

  it('moves keys only to a node whose weight rises', () => {
    fc.assert(
      fc.property(nodeSet, fc.nat(), fc.double({ min: 1, max: 3, noNaN: true }), keys, (nodes, which, factor, ks) => {
        const members = Object.keys(nodes);
        const node = members[which % members.length]!;
        const p = build(nodes);
        const before = rankings(p, ks);
        p.add(node, nodes[node]! * factor);
        const after = rankings(p, ks);
        ks.forEach((_, i) => {
          expect(without(after[i]!, node)).toEqual(without(before[i]!, node));
          // The node only climbs: a key it owned stays, a key it gains comes from the node ahead of it.
          expect(after[i]!.indexOf(node)).toBeLessThanOrEqual(before[i]!.indexOf(node));
        });
      }),
    );
  });

  it('is empty-safe', () => {
    const p = build();
    expect(p.get('k')).toBeUndefined();
    expect(p.getNodes('k', { replicas: 3 })).toEqual([]);
    p.add('only');
    expect(p.getNodes('k', { replicas: 3, ignore: ['only'] })).toEqual([]);
    expect(p.getNodes(new Uint8Array([1, 2]), { replicas: 3 })).toEqual(['only']);
  });

  it('hashes a string as its UTF-8 bytes', () => {
    fc.assert(
      fc.property(nodeSet, fc.string({ maxLength: 10, unit: 'grapheme' }), (nodes, k) => {
        const p = build(nodes);
        expect(p.getNodes(new TextEncoder().encode(k), { replicas: 3 })).toEqual(p.getNodes(k, { replicas: 3 }));
      }),
    );
  });
});

describe('weights', () => {
  const KEYS = 20_000;
  const sample = Array.from({ length: KEYS }, (_, i) => `key-${i}`);

  /** Largest |share - expected| / expected over the nodes, less the binomial noise allowance. */
  function worstExcess(p: Placement, nodes: Record<string, number>): number {
    const counts = new Map<string, number>();
    for (const k of sample) counts.set(p.get(k)!, (counts.get(p.get(k)!) ?? 0) + 1);
    const total = Object.values(nodes).reduce((a, b) => a + b, 0);
    let worst = 0;
    for (const [node, w] of Object.entries(nodes)) {
      const expected = w / total;
      const share = (counts.get(node) ?? 0) / KEYS;
      const noise = 5 * Math.sqrt((expected * (1 - expected)) / KEYS);
      worst = Math.max(worst, (Math.abs(share - expected) - noise) / expected);
    }
    return worst;
  }

  const weightedSet = fc
    .uniqueArray(fc.string({ minLength: 1, maxLength: 8 }), { minLength: 2, maxLength: 6 })
    .chain((names) =>
      fc
        .tuple(...names.map(() => fc.double({ min: 0.5, max: 4, noNaN: true })))
        .map((ws) => Object.fromEntries(names.map((n, i) => [n, ws[i]!]))),
    );

  // Bounds: rendezvous is exact up to sampling noise; a ring's arcs add a relative error ~ 1/sqrt(points per node).
  it.each([
    ['Rendezvous', (n: Record<string, number>) => new Rendezvous(n), 0.01],
    ['HashRing', (n: Record<string, number>) => new HashRing(n), 0.45],
    ['ToozHashRing (partitions 320)', (n: Record<string, number>) => new ToozHashRing(n, { partitions: 320 }), 0.45],
  ] as const)('%s gives each node about its weight share', (_name, build, bound) => {
    fc.assert(
      fc.property(weightedSet, (nodes) => {
        expect(worstExcess(build(nodes), nodes)).toBeLessThanOrEqual(bound);
      }),
      { numRuns: 15 },
    );
  });

  it('Rendezvous splits 1:2:3 as 1/6, 1/3, 1/2', () => {
    const p = new Rendezvous({ a: 1, b: 2, c: 3 });
    const counts: Record<string, number> = { a: 0, b: 0, c: 0 };
    for (let i = 0; i < 60_000; i++) counts[p.get(`item/${i}`)!]!++;
    expect(counts.a! / 60_000).toBeCloseTo(1 / 6, 1);
    expect(Math.abs(counts.a! / 60_000 - 1 / 6)).toBeLessThan(0.01);
    expect(Math.abs(counts.b! / 60_000 - 1 / 3)).toBeLessThan(0.01);
    expect(Math.abs(counts.c! / 60_000 - 1 / 2)).toBeLessThan(0.01);
  });
});
