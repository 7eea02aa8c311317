import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { HashRing, Rendezvous, ToozHashRing, type Placement } from '../../src/placement/index.js';
import type { VectorFile } from '../vectors/generate.js';
import { keyOf } from './support.js';

// The committed vectors are the published contract: placement must keep reproducing them.
const builders: [string, (nodes: Record<string, number>, options: Record<string, number>) => Placement][] = [
  ['rendezvous', (nodes) => new Rendezvous(nodes)],
  ['hashring', (nodes, options) => new HashRing(nodes, options)],
  ['tooz', (nodes, options) => new ToozHashRing(nodes, options)],
];

describe.each(builders)('test/vectors/%s.json', (name, build) => {
  const file = JSON.parse(readFileSync(new URL(`../vectors/${name}.json`, import.meta.url), 'utf8')) as VectorFile;

  it('is reproduced lookup for lookup', () => {
    expect(file.algorithm).toBe(name);
    let lookups = 0;
    for (const c of file.cases) {
      const placement = build(c.nodes, c.options);
      for (const l of c.lookups) {
        const key = keyOf(l.key === undefined ? { keyHex: l.keyHex! } : { key: l.key });
        expect({
          case: c.name,
          key: l.key ?? l.keyHex,
          owners: placement.getNodes(key, { replicas: l.replicas, ignore: l.ignore }),
        }).toEqual({ case: c.name, key: l.key ?? l.keyHex, owners: l.owners });
        lookups++;
      }
    }
    expect(lookups).toBeGreaterThan(150);
  });
});
