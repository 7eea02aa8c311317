/**
 * A new application, as a user makes one: the packed concord is installed with npm on the Node running this test, and
 * `npx concord demo` passes on the default SQLite file. Nothing is compiled: the embedded default is node:sqlite, and
 * better-sqlite3 (an optional peer) is not installed at all. Runs where this Node has node:sqlite (22.13+);
 * .ci/node-lines runs it on Node 22, 24 and 26. On Node 20 the default needs better-sqlite3, so it is skipped.
 */
import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, realpathSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, dirname, join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadNodeSqlite } from '../../drivers/sqlite/engine.js';
import { ensureBuilt } from '../support/build.js';
import { ROOT } from './run.js';

const exec = promisify(execFile);

/** The npm the machine has (its CLI script), run with this test's Node, as a user of that Node runs it. */
function npmScript(name: 'npm-cli.js' | 'npx-cli.js'): string | undefined {
  for (const folder of (process.env.PATH ?? '').split(delimiter)) {
    try {
      return join(dirname(realpathSync(join(folder, 'npm'))), name);
    } catch {
      // not in this folder
    }
  }
  return undefined;
}

const npm = npmScript('npm-cli.js');
const npx = npmScript('npx-cli.js');
const problem =
  loadNodeSqlite() === undefined
    ? `Node ${process.version} has no node:sqlite (.ci/node-lines runs this on Node 22, 24 and 26)`
    : npm === undefined
      ? 'npm is not on PATH'
      : undefined;

/** Every file under `folder` whose name ends with one of `endings` (a native build leaves .node files and build/). */
function filesEnding(folder: string, endings: readonly string[]): string[] {
  return readdirSync(folder, { recursive: true, encoding: 'utf8' }).filter((file) => endings.some((ending) => file.endsWith(ending)));
}

describe.skipIf(problem !== undefined)(
  `a new application installs the packed concord and runs npx concord demo${problem === undefined ? '' : ` (skipped: ${problem})`}`,
  { timeout: 180_000 },
  () => {
    const dir = mkdtempSync(join(tmpdir(), 'concord-packed-'));
    const app = join(dir, 'app');
    const runtime = join(dir, 'runtime');
    /** This Node first on PATH, so that npm, npx and the concord bin (`#!/usr/bin/env node`) all run on it. */
    const env: NodeJS.ProcessEnv = {};
    let tarball = '';

    beforeAll(async () => {
      for (const [key, value] of Object.entries(process.env)) {
        // What an npm script sets for its children (npm test) is not the new application's.
        if (!key.startsWith('npm_') && key !== 'CONCORD_URL' && key !== 'CONCORD_CLI_SOURCE') env[key] = value;
      }
      env.PATH = `${dirname(process.execPath)}${delimiter}${process.env.PATH ?? ''}`;
      env.NO_COLOR = '1';
      // The default database lives in $XDG_RUNTIME_DIR/concord: a folder of this test's own.
      env.XDG_RUNTIME_DIR = runtime;
      // The package as npm publishes it, from a build that is up to date (not rebuilt by pack while other tests read it).
      await ensureBuilt();
      const { stdout } = await exec(process.execPath, [npm ?? '', 'pack', '--ignore-scripts', '--json', '--pack-destination', dir], {
        cwd: ROOT,
        env,
      });
      const [packed] = JSON.parse(stdout) as Array<{ filename: string }>;
      tarball = join(dir, packed?.filename ?? '');
    }, 120_000);

    afterAll(() => {
      rmSync(dir, { recursive: true, force: true });
    });

    it('npm install compiles nothing and leaves out better-sqlite3; npx concord demo passes', async () => {
      mkdirSync(app);
      mkdirSync(runtime, { mode: 0o700 });
      writeFileSync(join(app, 'package.json'), JSON.stringify({ name: 'app', version: '1.0.0', private: true, type: 'module' }));
      // Install scripts run and show their output: none may build anything.
      const install = await exec(
        process.execPath,
        [npm ?? '', 'install', '--no-audit', '--no-fund', '--prefer-offline', '--foreground-scripts', tarball],
        { cwd: app, env },
      );
      const said = `${install.stdout}\n${install.stderr}`;
      expect(said).not.toMatch(/gyp|prebuild|node-pre-gyp|cmake|make: /i);
      expect(readdirSync(join(app, 'node_modules')).sort()).toEqual(['.bin', '.package-lock.json', 'cockatiel', 'concord']);
      expect(filesEnding(join(app, 'node_modules'), ['.node', 'binding.gyp', 'config.gypi'])).toEqual([]);

      const demo = await exec(process.execPath, [npx ?? '', 'concord', 'demo'], { cwd: app, env, timeout: 150_000 }).catch(
        (error: unknown) => {
          const { code, stdout, stderr } = error as { code?: unknown; stdout?: string; stderr?: string };
          throw new Error(`npx concord demo failed (${String(code)}):\n${stdout ?? ''}\n${stderr ?? ''}`);
        },
      );
      expect(demo.stdout).toMatch(/^concord demo: 4 workers, 200 tasks, on sqlite:\/\//);
      expect(demo.stdout).toContain(`on sqlite://${join(runtime, 'concord')}`);
      expect(demo.stdout).toMatch(/^ {2}verdict {3}PASS: every one of the 200 tasks completed exactly once$/m);
    });
  },
);
