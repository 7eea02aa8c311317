/**
 * Writes the published placement test vectors: test/vectors/{rendezvous,hashring,tooz}.json.
 * Run: npx tsx test/vectors/generate.ts
 * rendezvous.json and hashring.json record what this library computes (any change to them is a breaking change of
 * placement); tooz.json records what real Python tooz (/usr/bin/python3, python3-tooz) computes.
 */
import { writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { HashRing, Rendezvous, type Placement } from '../../src/placement/index.js';
import {
  INSTALL_TOOZ,
  int,
  keyOf,
  pick,
  prng,
  randomKey,
  randomText,
  repeats,
  runTooz,
  toozAvailable,
  type KeySpec,
} from '../placement/support.js';

export interface VectorLookup {
  readonly key?: string;
  readonly keyHex?: string;
  readonly replicas: number;
  readonly ignore: string[];
  readonly owners: string[];
}

export interface VectorCase {
  readonly name: string;
  readonly nodes: Record<string, number>;
  readonly options: Record<string, number>;
  readonly lookups: VectorLookup[];
}

export interface VectorFile {
  readonly algorithm: string;
  readonly description: string;
  readonly cases: VectorCase[];
}

interface Shape {
  readonly name: string;
  readonly nodes: Record<string, number>;
  readonly options: Record<string, number>;
  readonly queries: { spec: KeySpec; replicas: number; ignore: string[] }[];
}

function shapes(seed: number, integerWeights: boolean, optionName: string, optionValues: readonly number[]): Shape[] {
  const random = prng(seed);
  const plans: [string, number, 'equal' | 'weighted'][] = [
    ['one node', 1, 'equal'],
    ['three nodes', 3, 'equal'],
    ['five nodes, weighted', 5, 'weighted'],
    ['ten nodes', 10, 'equal'],
    ['ten nodes, weighted', 10, 'weighted'],
    ['thirty nodes, weighted', 30, 'weighted'],
    ['hundred nodes', 100, 'equal'],
  ];
  const result: Shape[] = [];
  const variants: (number | undefined)[] = [undefined, ...optionValues];
  for (const variant of variants) {
    for (const [label, size, kind] of plans) {
      if (variant !== undefined && size > 10) continue;
      const names: string[] = [];
      while (names.length < size) {
        const name = pick(random, [
          `node-${names.length}`,
          randomText(random, 8),
          `10.0.0.${int(random, 1, 254)}:${int(random, 1000, 9999)}`,
        ]);
        if (!names.some((other) => repeats(other, name))) names.push(name);
      }
      const weightOf = (): number => (kind === 'equal' ? 1 : integerWeights ? int(random, 1, 4) : pick(random, [0.5, 1, 1.5, 2, 3, 0.25]));
      const nodes = Object.fromEntries(names.map((n) => [n, weightOf()]));
      const queries = Array.from({ length: size >= 100 ? 40 : 24 }, (_, i) => {
        const ignore = random() < 0.3 ? names.filter(() => random() < 0.2) : [];
        return { spec: randomKey(random, i), replicas: int(random, 1, Math.min(size + 1, 5)), ignore };
      });
      const options = variant === undefined ? {} : { [optionName]: variant };
      result.push({ name: variant === undefined ? label : `${label}, ${optionName} ${variant}`, nodes, options, queries });
    }
  }
  return result;
}

function ours(shape: Shape, placement: Placement): VectorCase {
  return {
    name: shape.name,
    nodes: shape.nodes,
    options: shape.options,
    lookups: shape.queries.map((q) => ({
      ...q.spec,
      replicas: q.replicas,
      ignore: q.ignore,
      owners: placement.getNodes(keyOf(q.spec), { replicas: q.replicas, ignore: q.ignore }),
    })),
  };
}

const KEYS_NOTE =
  'key: a string, hashed as its UTF-8 bytes; keyHex: raw bytes. owners: getNodes(key, { replicas, ignore }), primary first.';

async function main(): Promise<void> {
  const dir = fileURLToPath(new URL('.', import.meta.url));
  const write = (name: string, file: VectorFile): void => {
    writeFileSync(`${dir}${name}.json`, `${JSON.stringify(file, null, 1)}\n`);
  };

  write('rendezvous', {
    algorithm: 'rendezvous',
    description: `concord Rendezvous: weighted highest random weight. x = murmur3(key) ^ murmur3(node); y = imul(x ^ (x >>> 16), 0x85ebca6b); rank = imul(y ^ (y >>> 13), 0xc2b2ae35) as int32; score = ln((rank + 2^31 + 0.5) / 2^32) / weight; highest wins, ties to the smaller node id (UTF-16 order). ${KEYS_NOTE}`,
    cases: shapes(1, false, 'unused', []).map((s) => ours(s, new Rendezvous(s.nodes))),
  });

  write('hashring', {
    algorithm: 'hashring',
    description: `concord HashRing: round(weight * vnodes) points (at least 1) per node at mix32(murmur3(node) + mix32((i + 1) * 0x9e3779b9)); a key goes to the first point >= murmur3(key), wrapping; equal points ordered by node id; replicas are the next distinct owners clockwise. ${KEYS_NOTE}`,
    cases: shapes(2, false, 'vnodes', [1, 40]).map((s) => ours(s, new HashRing(s.nodes, s.options))),
  });

  if (!toozAvailable()) throw new Error(`tooz.json needs Python tooz: ${INSTALL_TOOZ}`);
  const toozShapes = shapes(3, true, 'partitions', [1, 7]);
  const answers = await runTooz(
    toozShapes.map((s) => ({
      nodes: Object.entries(s.nodes),
      ...s.options,
      lookups: s.queries,
    })),
  );
  write('tooz', {
    algorithm: 'tooz',
    description: `Python tooz.hashring.HashRing (python3-tooz 3.x), computed by tooz itself: HashRing([], **options), add_node(node, weight) for each node; owners are get_nodes(bytes, ignore_nodes, replicas) in ring order (found with successive replicas=1 calls ignoring the owners found so far; tooz returns a set). ${KEYS_NOTE}`,
    cases: toozShapes.map((s, i) => ({
      name: s.name,
      nodes: s.nodes,
      options: s.options,
      lookups: s.queries.map((q, l) => ({ ...q.spec, replicas: q.replicas, ignore: q.ignore, owners: answers[i]![l]!.ordered })),
    })),
  });
}

await main();
