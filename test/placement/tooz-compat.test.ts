import { describe, expect, it } from 'vitest';
import { ToozHashRing } from '../../src/placement/index.js';
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
  sortByCodePoint,
  toozAvailable,
  type ToozCase,
  type ToozLookup,
} from './support.js';

/** Many rings (sizes, weights, partitions, add orders) and lookups (str and bytes keys, replicas, ignore lists). */
function generateCases(): ToozCase[] {
  const random = prng(0x7007);
  const cases: ToozCase[] = [];
  const sizes = [1, 2, 3, 4, 5, 7, 10, 16, 25, 50, 100, 200];
  for (let c = 0; c < 48; c++) {
    const size = sizes[c % sizes.length]!;
    const names: string[] = [];
    while (names.length < size) {
      const name = pick(random, [`node-${names.length}`, randomText(random), `host-${int(random, 0, 999)}.example`]);
      if (!names.some((other) => repeats(other, name))) names.push(name);
    }
    const weighted = c % 3 !== 0;
    const nodes = names.map((name) => [name, weighted ? int(random, 1, 4) : 1] as const);
    const partitions = c % 4 === 3 ? pick(random, [1, 5, 17, 100]) : undefined;
    const lookups: ToozLookup[] = [];
    for (let l = 0; l < 120; l++) {
      const ignore = names.filter(() => random() < 0.15);
      if (random() < 0.2) ignore.push('not-a-member');
      lookups.push({ spec: randomKey(random, l), replicas: int(random, 1, Math.min(size + 2, 8)), ignore });
    }
    cases.push({ nodes, ...(partitions === undefined ? {} : { partitions }), lookups });
  }
  return cases;
}

const available = toozAvailable();
const reason = `Python tooz is not importable by /usr/bin/python3: ${INSTALL_TOOZ}`;

describe('ToozHashRing against Python tooz', () => {
  if (!available && process.env.CI) {
    it('has python3-tooz to compare with', () => {
      throw new Error(reason);
    });
    return;
  }

  it.skipIf(!available)(`gives tooz's owners for every key ${available ? '' : `(skipped: ${reason})`}`, async () => {
    const cases = generateCases();
    const answers = await runTooz(cases);
    let compared = 0;
    cases.forEach((c, i) => {
      // Built in the reverse of tooz's add order: placement does not depend on it.
      const ring = new ToozHashRing(
        Object.fromEntries([...c.nodes].reverse()),
        c.partitions === undefined ? undefined : { partitions: c.partitions },
      );
      c.lookups.forEach((lookup, l) => {
        const expected = answers[i]![l]!;
        const key = keyOf(lookup.spec);
        const got = ring.getNodes(key, { replicas: lookup.replicas, ignore: lookup.ignore });
        expect({ case: i, lookup: l, owners: got }).toEqual({ case: i, lookup: l, owners: expected.ordered });
        expect(sortByCodePoint(got)).toEqual(expected.set);
        if (lookup.ignore.length === 0) expect(ring.get(key)).toBe(expected.ordered[0]);
        compared++;
      });
    });
    expect(compared).toBe(48 * 120);
  });

  it.skipIf(!available)('agrees on the primary where two ids share md5 points', async () => {
    // 'a' and 'aa' share points; tooz keeps the node added last there, which here is the smaller id, as ours does.
    const nodes = [
      ['aa', 1],
      ['a', 3],
      ['b', 1],
      ['aaaa', 1],
    ] as const;
    const random = prng(7);
    const lookups = Array.from({ length: 300 }, (_, l) => ({ spec: randomKey(random, l), replicas: 1, ignore: [] }));
    const [answers] = await runTooz([
      {
        nodes: [
          ['aaaa', 1],
          ['aa', 1],
          ['a', 3],
          ['b', 1],
        ],
        lookups,
      },
    ]);
    const ring = new ToozHashRing(Object.fromEntries(nodes));
    lookups.forEach((lookup, l) => expect(ring.get(keyOf(lookup.spec))).toBe(answers![l]!.ordered[0]));
  });
});
