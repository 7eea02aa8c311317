/** The examples are documentation: each must run to completion and print what it promises. */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';

const run = promisify(execFile);
const examples: Array<[string, RegExp]> = [
  ['coordinator', /connected to memory:\/\/example as example-1/],
  ['lock', /holding invoice-run with fencing token 1/],
  ['lock-block', /migrated 42 rows/],
  ['group', /after b left: \[ 'indexer-a' \]/],
  ['capabilities', /members with a GPU: \[ 'gpu-box' \]/],
  ['watchers', /leave worker/],
  ['hashring', /ToozHashRing without cache-c/],
  ['partitioner', /both agree: true/],
  ['fetch-pages', /9 of 9 pages fetched, each once/],
  ['quickstart', /ok: every increment happened under the lock/],
];

describe('examples', () => {
  it.each(examples)('%s runs', async (name, expected) => {
    const { stdout } = await run(process.execPath, ['--import', 'tsx', `examples/${name}.ts`], { timeout: 60_000 });
    expect(stdout).toMatch(expected);
  });
});
