/** concord ring --nodes a,b:2,c KEY...: shows which nodes own keys, computed locally (no backend). */
import { createInterface } from 'node:readline';
import { HashRing, Rendezvous, ToozHashRing, type Placement } from '../placement/index.js';
import type { CommandSpec, Parsed } from './args.js';
import { HELP_OPTION, JSON_OPTION } from './context.js';
import { UsageError, out, table, toJson } from './output.js';

export const spec: CommandSpec = {
  name: 'ring',
  summary: 'Show the owners of keys on a placement of nodes, primary first; computed locally, no backend needed.',
  description: [
    'Nodes are NAME or NAME:WEIGHT (weight > 0, default 1). Without KEY arguments, keys are read from stdin, one per line.',
    "Algorithms: rendezvous (the partitioner's default), ring (consistent hash ring, murmur3), tooz (the same owners",
    'as Python tooz.hashring.HashRing).',
  ].join('\n'),
  positionals: [{ name: 'KEY', arity: '*' }],
  options: [
    { name: 'nodes', type: 'string', value: 'LIST', description: 'the nodes, comma-separated: a,b:2,c (required)' },
    { name: 'algorithm', type: 'string', value: 'NAME', default: 'rendezvous', description: 'rendezvous, ring or tooz' },
    { name: 'replicas', type: 'integer', value: 'N', min: 1, default: 1, description: 'owners per key' },
    { name: 'vnodes', type: 'integer', value: 'N', min: 1, description: 'ring: points per weight unit (default 160)' },
    { name: 'partitions', type: 'integer', value: 'N', min: 1, description: 'tooz: points per weight unit (default 32)' },
    JSON_OPTION,
    HELP_OPTION,
  ],
  examples: [
    'concord ring --nodes a,b:2,c user-1 user-2 user-3',
    'seq 1 5 | concord ring --nodes a,b,c --algorithm tooz --replicas 2 --json',
  ],
};

export function parseNodes(list: string): Record<string, number> {
  const nodes: Record<string, number> = {};
  for (const entry of list.split(',')) {
    const item = entry.trim();
    if (item === '') throw new UsageError(`--nodes has an empty entry in ${JSON.stringify(list)}`, 'ring');
    const colon = item.lastIndexOf(':');
    const name = colon === -1 ? item : item.slice(0, colon);
    const weightText = colon === -1 ? '1' : item.slice(colon + 1);
    const weight = Number(weightText);
    if (name === '') throw new UsageError(`--nodes has an entry without a name: ${JSON.stringify(item)}`, 'ring');
    if (weightText.trim() === '' || !Number.isFinite(weight) || weight <= 0) {
      throw new UsageError(
        `--nodes: the weight of ${JSON.stringify(name)} must be a number > 0, got ${JSON.stringify(weightText)}`,
        'ring',
      );
    }
    if (Object.hasOwn(nodes, name)) throw new UsageError(`--nodes names ${JSON.stringify(name)} twice`, 'ring');
    nodes[name] = weight;
  }
  return nodes;
}

function placementOf(args: Parsed, nodes: Record<string, number>): Placement {
  const algorithm = args.string('algorithm') ?? 'rendezvous';
  const vnodes = args.integer('vnodes');
  const partitions = args.integer('partitions');
  if (vnodes !== undefined && algorithm !== 'ring') throw new UsageError('--vnodes applies to --algorithm ring only', 'ring');
  if (partitions !== undefined && algorithm !== 'tooz') throw new UsageError('--partitions applies to --algorithm tooz only', 'ring');
  switch (algorithm) {
    case 'rendezvous':
      return new Rendezvous(nodes);
    case 'ring':
      return new HashRing(nodes, vnodes !== undefined ? { vnodes } : undefined);
    case 'tooz':
      return new ToozHashRing(nodes, partitions !== undefined ? { partitions } : undefined);
    default:
      throw new UsageError(`--algorithm must be rendezvous, ring or tooz, got ${JSON.stringify(algorithm)}`, 'ring');
  }
}

async function stdinKeys(): Promise<string[]> {
  if (process.stdin.isTTY) throw new UsageError('give at least one KEY (or pipe keys on stdin, one per line)', 'ring');
  const keys: string[] = [];
  for await (const line of createInterface({ input: process.stdin, crlfDelay: Infinity })) if (line !== '') keys.push(line);
  return keys;
}

export async function run(args: Parsed): Promise<number> {
  const list = args.string('nodes');
  if (list === undefined) throw new UsageError('--nodes is required, e.g. --nodes a,b:2,c', 'ring');
  const placement = placementOf(args, parseNodes(list));
  const replicas = args.integer('replicas') ?? 1;
  const keys = args.positionals.length > 0 ? args.positionals : await stdinKeys();
  const rows = keys.map((key) => ({ key, owners: placement.getNodes(key, { replicas }) }));
  if (args.flag('json')) out(toJson(rows));
  else for (const line of table(rows.map((row) => [row.key, row.owners.join(' ')]))) out(line);
  return 0;
}
