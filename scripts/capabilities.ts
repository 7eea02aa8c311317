/**
 * The README's driver capability matrix, generated from the built-in drivers' descriptors, so the two cannot drift
 * apart. `npm run docs` rewrites the block; test/readme.test.ts fails when it is stale.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { builtinDrivers } from '../drivers/index.js';

const yes = (b: boolean): string => (b ? 'yes' : 'no');

export function capabilityTable(): Promise<string> {
  const rows = [
    '| driver | URL | scope | groups | election | fencing tokens | watch | fair locks | shared locks, semaphores | crashed member leaves after |',
    '|---|---|---|---|---|---|---|---|---|---|',
  ];
  for (const { name, schemes, features: f, crashDetection } of builtinDrivers) {
    const urls = schemes.map((scheme) => `\`${scheme}://\``).join(' ');
    rows.push(
      `| ${name} | ${urls} | ${f.scope} | ${yes(f.groups)} | ${yes(f.election)} | ${yes(f.fencing)} | ${f.watch} | ${yes(f.fairLocks)} | ${yes(f.sharedLocks === true)} | ${crashDetection.text} |`,
    );
  }
  return Promise.resolve(rows.join('\n'));
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
