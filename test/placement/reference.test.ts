import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { mix32, murmur3 } from '../../src/placement/hash.js';
import { HashRing, Rendezvous } from '../../src/placement/index.js';

fc.configureGlobal({ seed: 0x4ef, numRuns: 40 });

// Naive versions of the documented formulas: the fast implementations must agree with them exactly.

function naiveRendezvous(nodes: Record<string, number>, key: string | Uint8Array): string[] {
  const uniform = new Set(Object.values(nodes)).size === 1;
  const scored = Object.entries(nodes).map(([node, w]) => {
    let x = murmur3(key) ^ murmur3(node);
    x = Math.imul(x ^ (x >>> 16), 0x85ebca6b);
    const r = Math.imul(x ^ (x >>> 13), 0xc2b2ae35);
    return { node, score: uniform ? r : Math.log((r + 2 ** 31 + 0.5) / 2 ** 32) / w };
  });
  scored.sort((a, b) => b.score - a.score || (a.node < b.node ? -1 : 1));
  return scored.map((s) => s.node);
}

function naiveRing(nodes: Record<string, number>, vnodes: number, key: string | Uint8Array): string[] {
  const points: { at: number; node: string }[] = [];
  for (const [node, w] of Object.entries(nodes)) {
    for (let i = 0; i < Math.max(1, Math.round(w * vnodes)); i++) {
      points.push({ at: mix32(murmur3(node) + mix32(Math.imul(i + 1, 0x9e3779b9))), node });
    }
  }
  points.sort((a, b) => a.at - b.at || (a.node < b.node ? -1 : 1));
  const h = murmur3(key);
  let start = points.findIndex((p) => p.at >= h);
  if (start < 0) start = 0;
  const seen: string[] = [];
  for (let i = 0; i < points.length; i++) {
    const node = points[(start + i) % points.length]!.node;
    if (!seen.includes(node)) seen.push(node);
  }
  return seen;
}

const nodesArb = (max: number) =>
  fc.uniqueArray(fc.string({ minLength: 1, maxLength: 6 }), { minLength: 1, maxLength: max }).chain((names) =>
    fc.oneof(
      fc.constant(Object.fromEntries(names.map((n) => [n, 1]))),
      fc
        .tuple(...names.map(() => fc.oneof(fc.constant(1), fc.double({ min: 0.1, max: 5, noNaN: true }))))
        .map((ws) => Object.fromEntries(names.map((n, i) => [n, ws[i]!]))),
    ),
  );
const keyArb = fc.oneof(fc.string({ maxLength: 10 }), fc.uint8Array({ maxLength: 10 }));

describe('against the documented formulas', () => {
  it('Rendezvous ranks by ln(u) / w (by the rank when weights are equal), ties to the smaller id', () => {
    fc.assert(
      fc.property(nodesArb(60), fc.array(keyArb, { minLength: 1, maxLength: 10 }), (nodes, keys) => {
        const p = new Rendezvous(nodes);
        const n = Object.keys(nodes).length;
        for (const k of keys) {
          const expected = naiveRendezvous(nodes, k);
          expect(p.getNodes(k, { replicas: n })).toEqual(expected);
          expect(p.getNodes(k, { replicas: 3 })).toEqual(expected.slice(0, 3));
          expect(p.get(k)).toBe(expected[0]);
        }
      }),
    );
  });

  it('HashRing walks points mix32(murmur3(node) + offset[i]) clockwise from murmur3(key)', () => {
    fc.assert(
      fc.property(
        nodesArb(12),
        fc.integer({ min: 1, max: 30 }),
        fc.array(keyArb, { minLength: 1, maxLength: 10 }),
        (nodes, vnodes, keys) => {
          const p = new HashRing(nodes, { vnodes });
          const n = Object.keys(nodes).length;
          for (const k of keys) {
            const expected = naiveRing(nodes, vnodes, k);
            expect(p.getNodes(k, { replicas: n })).toEqual(expected);
            expect(p.get(k)).toBe(expected[0]);
          }
        },
      ),
    );
  });
});
