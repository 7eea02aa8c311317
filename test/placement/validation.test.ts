import { describe, expect, it } from 'vitest';
import { ConcordError } from '../../src/errors.js';
import { HashRing, Rendezvous, ToozHashRing, type Placement } from '../../src/placement/index.js';

/** Bad input is cast through never: it is exactly what the types forbid. */
type Bad = never;
type Build = (nodes?: unknown, options?: unknown) => Placement;

const implementations: [string, Build][] = [
  ['Rendezvous', (nodes) => new Rendezvous(nodes as Bad)],
  ['HashRing', (nodes, options) => new HashRing(nodes as Bad, options as Bad)],
  ['ToozHashRing', (nodes, options) => new ToozHashRing(nodes as Bad, options as Bad)],
];

function expectInvalid(fn: () => unknown, argument: string): void {
  let thrown: unknown;
  try {
    fn();
  } catch (error) {
    thrown = error;
  }
  expect(thrown).toBeInstanceOf(ConcordError);
  expect((thrown as ConcordError).code).toBe('ERR_INVALID_ARGUMENT');
  expect((thrown as ConcordError).message).toContain(argument);
}

const SAMPLE = Array.from({ length: 50 }, (_, i) => `key-${i}`);
const snapshot = (p: Placement) => ({
  nodes: p.nodes,
  size: p.size,
  owners: SAMPLE.map((k) => p.getNodes(k, { replicas: 3 })),
});

describe.each(implementations)('%s validation', (name, build) => {
  const constructorCases: [string, () => unknown, string][] = [
    ['a string instead of nodes', () => build('abc'), 'nodes'],
    ['a number instead of nodes', () => build(5), 'nodes'],
    ['null nodes', () => build(null), 'nodes'],
    ['a non-string node', () => build(['a', 1]), 'nodes'],
    ['an empty node', () => build(['a', '']), 'nodes'],
    ['weight 0', () => build({ a: 1, b: 0 }), 'weight'],
    ['a negative weight', () => build({ a: -1 }), 'weight'],
    ['a NaN weight', () => build({ a: Number.NaN }), 'weight'],
    ['an infinite weight', () => build({ a: Number.POSITIVE_INFINITY }), 'weight'],
    ['a string weight', () => build({ a: '2' }), 'weight'],
  ];
  if (name === 'HashRing') {
    constructorCases.push(
      ['vnodes 0', () => build([], { vnodes: 0 }), 'vnodes'],
      ['fractional vnodes', () => build([], { vnodes: 1.5 }), 'vnodes'],
      ['NaN vnodes', () => build([], { vnodes: Number.NaN }), 'vnodes'],
      ['options not an object', () => build([], 7), 'options'],
      ['a weight needing too many points', () => build({ a: 1e9 }), 'weight'],
    );
  }
  if (name === 'ToozHashRing') {
    constructorCases.push(
      ['partitions 0', () => build([], { partitions: 0 }), 'partitions'],
      ['negative partitions', () => build([], { partitions: -32 }), 'partitions'],
      ['options not an object', () => build([], 'x'), 'options'],
      ['a weight needing too many points', () => build({ a: 1e9 }), 'weight'],
    );
  }
  it.each(constructorCases)('constructor rejects %s', (_what, fn, argument) => expectInvalid(fn, argument));

  const callCases: [string, (p: Placement) => unknown, string][] = [
    ['add of a non-string', (p) => p.add(3 as Bad), 'node'],
    ['add of an empty node', (p) => p.add(''), 'node'],
    ['add with weight 0', (p) => p.add('new', 0), 'weight'],
    ['add with a negative weight', (p) => p.add('a', -2), 'weight'],
    ['add with NaN weight', (p) => p.add('a', Number.NaN), 'weight'],
    ['add with an infinite weight', (p) => p.add('new', Number.POSITIVE_INFINITY), 'weight'],
    ['add with a string weight', (p) => p.add('new', '1' as Bad), 'weight'],
    ['remove of a non-string', (p) => p.remove(undefined as Bad), 'node'],
    ['has of a non-string', (p) => p.has(null as Bad), 'node'],
    ['get of a number', (p) => p.get(42 as Bad), 'key'],
    ['get of undefined', (p) => p.get(undefined as Bad), 'key'],
    ['getNodes of an object', (p) => p.getNodes({} as Bad), 'key'],
    ['replicas 0', (p) => p.getNodes('k', { replicas: 0 }), 'replicas'],
    ['negative replicas', (p) => p.getNodes('k', { replicas: -1 }), 'replicas'],
    ['fractional replicas', (p) => p.getNodes('k', { replicas: 1.5 }), 'replicas'],
    ['NaN replicas', (p) => p.getNodes('k', { replicas: Number.NaN }), 'replicas'],
    ['string replicas', (p) => p.getNodes('k', { replicas: '2' as Bad }), 'replicas'],
    ['options not an object', (p) => p.getNodes('k', 3 as Bad), 'options'],
    ['ignore as a string', (p) => p.getNodes('k', { ignore: 'a' as Bad }), 'ignore'],
    ['ignore as a number', (p) => p.getNodes('k', { ignore: 1 as Bad }), 'ignore'],
    ['ignore holding a number', (p) => p.getNodes('k', { replicas: 3, ignore: ['a', 7] as Bad }), 'ignore'],
  ];
  it.each(callCases)('rejects %s and changes nothing', (_what, call, argument) => {
    const p = build({ a: 1, b: 2, c: 1, d: 3 });
    const before = snapshot(p);
    expectInvalid(() => call(p), argument);
    expect(snapshot(p)).toEqual(before);
    // Nothing left behind by a half-read ignore list either.
    expect(p.getNodes('key-1', { replicas: 4 })).toHaveLength(4);
  });

  it('accepts what is valid', () => {
    const p = build(['a', 'b']);
    p.add('c', 0.25);
    p.add('c', 2.5);
    expect(p.nodes).toEqual(['a', 'b', 'c']);
    expect(p.has('c')).toBe(true);
    expect(p.remove('zzz')).toBe(false);
    expect(p.getNodes('k', { replicas: 2, ignore: new Set(['a']) })).toHaveLength(2);
    expect(
      p.getNodes('k', {
        ignore: (function* () {
          yield 'a';
          yield 'b';
        })(),
      }),
    ).toEqual(['c']);
  });
});
