/**
 * Tests that use the package by name (`import 'concord'`, `require('concord')`) run its build, as an application
 * would: this rebuilds dist/ when any source is newer than it (CI builds it fresh in `npm ci`).
 */
import { execFile } from 'node:child_process';
import { readdirSync, statSync } from 'node:fs';
import { promisify } from 'node:util';

const run = promisify(execFile);
export const root = new URL('../..', import.meta.url).pathname;

function newestIn(folder: string): number {
  return Math.max(...readdirSync(folder, { recursive: true, encoding: 'utf8' }).map((file) => statSync(`${folder}/${file}`).mtimeMs));
}

export async function ensureBuilt(): Promise<void> {
  const built = statSync(`${root}dist/src/index.js`, { throwIfNoEntry: false });
  const newest = Math.max(newestIn(`${root}src`), newestIn(`${root}drivers`));
  if (built && built.mtimeMs >= newest) return;
  await run(process.execPath, [`${root}node_modules/typescript/bin/tsc`, '-p', 'tsconfig.build.json'], { cwd: root });
}
