/**
 * The README's driver capability matrix, generated from what each driver declares (`features`), so the two cannot
 * drift apart. `npm run docs` rewrites the block; test/readme.test.ts fails when it is stale.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { Features } from '../src/types.js';

interface DriverInfo {
  readonly name: string;
  readonly schemes: string;
  readonly load: () => Promise<{ features: Features }>;
  /** Worst-case extra delay before a crashed member's leave, after its TTL. */
  readonly detection: string;
}

export const DRIVER_INFO: readonly DriverInfo[] = [
  { name: 'memory', schemes: '`memory://`', load: () => import('../drivers/memory/index.js'), detection: 'TTL' },
  {
    name: 'SQLite',
    schemes: '`sqlite://`',
    load: () => import('../drivers/sqlite/index.js'),
    detection: 'milliseconds when the process is gone; else TTL + 50 ms',
  },
  {
    name: 'Redis',
    schemes: '`redis://` `rediss://` `redis+sentinel://`',
    load: () => import('../drivers/redis/index.js'),
    detection: 'TTL + ~100 ms with keyspace notifications; else up to TTL/3 more (reaped by live members)',
  },
  {
    name: 'etcd',
    schemes: '`etcd://` `etcds://`',
    load: () => import('../drivers/etcd/index.js'),
    detection: 'TTL rounded up to whole seconds, + up to 0.5 s (lease expiry)',
  },
];

const yes = (b: boolean): string => (b ? 'yes' : 'no');

export async function capabilityTable(): Promise<string> {
  const rows = [
    '| driver | URL | scope | groups | election | fencing tokens | watch | fair locks | crashed member leaves after |',
    '|---|---|---|---|---|---|---|---|---|',
  ];
  for (const info of DRIVER_INFO) {
    const { features: f } = await info.load();
    rows.push(
      `| ${info.name} | ${info.schemes} | ${f.scope} | ${yes(f.groups)} | ${yes(f.election)} | ${yes(f.fencing)} | ${f.watch} | ${yes(f.fairLocks)} | ${info.detection} |`,
    );
  }
  return rows.join('\n');
}

const START = '<!-- capabilities:start -->';
const END = '<!-- capabilities:end -->';

export function readmeBlock(readme: string): string {
  const start = readme.indexOf(START);
  const end = readme.indexOf(END);
  if (start < 0 || end < start) throw new Error('README has no capabilities block');
  return readme.slice(start + START.length, end).trim();
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const path = fileURLToPath(new URL('../README.md', import.meta.url));
  const readme = readFileSync(path, 'utf8');
  const table = await capabilityTable();
  const start = readme.indexOf(START);
  const end = readme.indexOf(END);
  writeFileSync(path, `${readme.slice(0, start + START.length)}\n${table}\n${readme.slice(end)}`);
  console.log(table);
}
