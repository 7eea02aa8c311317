/** CommonJS applications: `require('concord')` loads the package (Node 20.19+ requires ES modules) and it works. */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { beforeAll, expect, it } from 'vitest';
import { ensureBuilt, root } from './support/build.js';

const run = promisify(execFile);

beforeAll(ensureBuilt, 180_000);

it("require('concord') works from a CommonJS program", async () => {
  const program = `
    const { connect, ConcordError, Rendezvous } = require('concord');
    (async () => {
      const coordinator = await connect('memory://commonjs', { member: 'cjs-1' });
      const held = await coordinator.lock('job').acquire();
      console.log('token', String(held.token), 'owner', new Rendezvous({ a: 1 }).get('k'));
      await held.release();
      await coordinator.close();
      console.log('error type', typeof ConcordError);
    })().catch((error) => { console.error(error); process.exitCode = 1; });
  `;
  // --no-warnings: Node 20 and 22 note that require() of an ES module is experimental.
  const { stdout } = await run(process.execPath, ['--no-warnings', '-e', program], { cwd: root, timeout: 30_000 });
  expect(stdout).toContain('token 1 owner a');
  expect(stdout).toContain('error type function');
});
