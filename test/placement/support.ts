import { execFile, execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** Helpers shared by the placement tests and test/vectors/generate.ts. */

export const PYTHON = '/usr/bin/python3';
export const INSTALL_TOOZ = 'apt-get install -y python3-tooz';

/** mulberry32: a tiny seeded PRNG, so generated cases are the same on every run. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 2 ** 32;
  };
}

export function pick<T>(random: () => number, items: readonly T[]): T {
  return items[Math.floor(random() * items.length)]!;
}

export function int(random: () => number, min: number, max: number): number {
  return min + Math.floor(random() * (max - min + 1));
}

const ALPHABET = ['a', 'b', 'z', '0', '-', '.', 'é', 'ß', 'ü', '节', '点', 'Ω', '😀', '𝄞', ' ', '_'];

/** A random non-empty string over ASCII, Latin-1, CJK and astral characters (no lone surrogates). */
export function randomText(random: () => number, maxLength = 12): string {
  let s = '';
  const n = int(random, 1, maxLength);
  for (let i = 0; i < n; i++) s += pick(random, ALPHABET);
  return s;
}

/** A key as JSON: a string, or bytes as hex. */
export type KeySpec = { readonly key: string } | { readonly keyHex: string };

export function keyOf(spec: KeySpec): string | Uint8Array {
  return 'key' in spec ? spec.key : Uint8Array.from(Buffer.from(spec.keyHex, 'hex'));
}

export function randomKey(random: () => number, i: number): KeySpec {
  switch (i % 4) {
    case 0:
      return { key: `key-${int(random, 0, 1e6)}` };
    case 1:
      return { key: randomText(random, 20) };
    case 2: {
      // Raw bytes, often not valid UTF-8.
      const bytes = Buffer.alloc(int(random, 0, 40));
      for (let b = 0; b < bytes.length; b++) bytes[b] = int(random, 0, 255);
      return { keyHex: bytes.toString('hex') };
    }
    default:
      return { key: `${randomText(random, 6)}/${i}` };
  }
}

/** Does one id's UTF-8 equal another's repeated? Then tooz gives both the same md5 points (see tooz-ring.ts). */
export function repeats(a: string, b: string): boolean {
  const [short, long] = a.length <= b.length ? [a, b] : [b, a];
  return long.length % short.length === 0 && short.repeat(long.length / short.length) === long;
}

export interface ToozLookup {
  readonly spec: KeySpec;
  readonly replicas: number;
  readonly ignore: readonly string[];
}

export interface ToozCase {
  /** Added in this order with add_node(name, weight). */
  readonly nodes: readonly (readonly [string, number])[];
  readonly partitions?: number;
  readonly lookups: readonly ToozLookup[];
}

export interface ToozAnswer {
  /** get_nodes(key, ignore_nodes, replicas), sorted. */
  readonly set: string[];
  /** The same nodes in ring order, from successive get_nodes(..., replicas=1) calls ignoring those found so far. */
  readonly ordered: string[];
}

const SCRIPT = `
import json, sys
from tooz import hashring

def data(spec):
    return bytes.fromhex(spec['keyHex']) if 'keyHex' in spec else spec['key'].encode('utf-8')

cases = json.load(open(sys.argv[1], encoding='utf-8'))
out = []
for case in cases:
    ring = hashring.HashRing([], **({'partitions': case['partitions']} if case.get('partitions') else {}))
    for name, weight in case['nodes']:
        ring.add_node(name, weight)
    answers = []
    for lookup in case['lookups']:
        key = data(lookup['spec'])
        found = ring.get_nodes(key, ignore_nodes=lookup['ignore'], replicas=lookup['replicas'])
        ordered = []
        for _ in range(len(found)):
            ordered.extend(ring.get_nodes(key, ignore_nodes=list(lookup['ignore']) + ordered, replicas=1))
        answers.append({'set': sorted(found), 'ordered': ordered})
    out.append(answers)
json.dump(out, sys.stdout)
`;

/** Can /usr/bin/python3 import tooz.hashring? */
export function toozAvailable(): boolean {
  try {
    execFileSync(PYTHON, ['-c', 'import tooz.hashring'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

/** Asks real Python tooz for the owners of every lookup. */
export async function runTooz(cases: readonly ToozCase[]): Promise<ToozAnswer[][]> {
  const dir = mkdtempSync(join(tmpdir(), 'concord-tooz-'));
  try {
    const input = join(dir, 'cases.json');
    writeFileSync(input, JSON.stringify(cases));
    const stdout = await new Promise<string>((resolve, reject) => {
      execFile(PYTHON, ['-c', SCRIPT, input], { maxBuffer: 256 * 1024 * 1024 }, (error, out, err) => {
        if (error) reject(new Error(`python tooz failed: ${err}`, { cause: error }));
        else resolve(out);
      });
    });
    return JSON.parse(stdout) as ToozAnswer[][];
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Sorts like Python's sorted() on str: by code point, which is UTF-8 byte order (JS's sort compares UTF-16 units). */
export function sortByCodePoint(items: readonly string[]): string[] {
  return [...items].sort((a, b) => Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8')));
}
