#!/usr/bin/env node
// The concord command. Runs the compiled CLI when the package is built; in a source checkout without a build (or with
// CONCORD_CLI_SOURCE=1), runs the TypeScript sources through tsx.
const compiled = new URL('../dist/src/cli/main.js', import.meta.url);
const source = new URL('../src/cli/main.ts', import.meta.url);

async function load() {
  if (process.env.CONCORD_CLI_SOURCE !== '1') {
    try {
      return await import(compiled.href);
    } catch (error) {
      if (error?.code !== 'ERR_MODULE_NOT_FOUND') throw error;
    }
  }
  try {
    const { register } = await import('tsx/esm/api');
    register();
  } catch {
    process.stderr.write('concord: the CLI is not built (run npm run build) and tsx is not installed to run it from source\n');
    process.exit(1);
  }
  return import(source.href);
}

const cli = await load();
await cli.runCli();
