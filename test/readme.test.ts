import { readFileSync } from 'node:fs';
import { expect, it } from 'vitest';
import { capabilityTable, readmeBlock } from '../scripts/capabilities.js';

it("the README's capability matrix is what the drivers declare (npm run docs regenerates it)", async () => {
  const readme = readFileSync(new URL('../README.md', import.meta.url), 'utf8');
  expect(readmeBlock(readme)).toBe(await capabilityTable());
});
