/**
 * Every TypeScript and JavaScript block of the README runs as written, on the Node that runs the tests: TypeScript
 * through tsx, JavaScript with plain node. Each block is a program of its own in tmp/readme/, inside the package, so
 * that `import ... from 'concord'` resolves to this package's build as it would in an application. A prelude supplies
 * what the README leaves to the reader: `connect`, a `coordinator`, a `signal` that ends the loops, and stand-ins for
 * the application's own code (`storage`, `refresh`, `crawl`...). The README's Redis URL is pointed at a server the
 * test starts.
 */
import { execFile } from 'node:child_process';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ensureBuilt, root } from './support/build.js';
import { available, startRedis, type ServerHandle } from './support/servers.js';

const run = promisify(execFile);
const dir = `${root}tmp/readme/`;

interface Block {
  readonly language: 'ts' | 'js';
  readonly heading: string;
  readonly line: number;
  readonly code: string;
}

function blocks(markdown: string): Block[] {
  const found: Block[] = [];
  let heading = '';
  const lines = markdown.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i] ?? '';
    if (line.startsWith('#')) heading = line.replace(/^#+\s*/, '');
    const open = /^```(ts|js)\s*$/.exec(line);
    if (!open) continue;
    const start = i + 1;
    while (i + 1 < lines.length && lines[i + 1] !== '```') i++;
    found.push({ language: open[1] as 'ts' | 'js', heading, line: start, code: lines.slice(start, i + 1).join('\n') });
    i++;
  }
  return found;
}

/** Declared by the block itself (import, const, let, await using), so the prelude must not declare it again. */
function declares(code: string, name: string): boolean {
  return new RegExp(`(?:const|let|using)\\s+${name}\\b|import\\s*\\{[^}]*\\b${name}\\b[^}]*\\}`).test(code);
}

const uses = (code: string, name: string): boolean => new RegExp(`\\b${name}\\b`).test(code);

/** Stand-ins for what the README's reader brings: each does just enough to let the block run to its end. */
const STAND_INS: Record<string, string> = {
  storage:
    'const storage = { write: async (data, { fencingToken }) => { console.log("stored", data.name, "with token", String(fencingToken)); } };',
  report: 'const report = { name: "report" };',
  refresh: 'const refresh = async ({ signal }) => { signal.throwIfAborted(); };',
  runScheduler:
    'const runScheduler = ({ signal }) => new Promise((resolve) => { signal.addEventListener("abort", resolve, { once: true }); setTimeout(resolve, 50); });',
  urls: 'const urls = ["https://example.org/1", "https://example.org/2", "https://example.org/3"];',
  crawl: 'const crawl = async (url) => { console.log("crawled", url); };',
  rebalance: 'const rebalance = (members) => { console.log("members", members); };',
};

function program(block: Block, redisUrl: string | undefined): string {
  const code = redisUrl === undefined ? block.code : block.code.replaceAll('redis://127.0.0.1:6379', redisUrl);
  const prelude: string[] = [];
  const epilogue: string[] = [];
  if (!declares(code, 'connect') && (uses(code, 'connect') || (uses(code, 'coordinator') && !declares(code, 'coordinator')))) {
    prelude.push("import { connect } from 'concord';");
  }
  if (uses(code, 'coordinator') && !declares(code, 'coordinator')) {
    prelude.push(`const coordinator = await connect('memory://readme', { member: 'readme-1' });`);
    epilogue.push('await coordinator.close();');
  }
  if (uses(code, 'signal') && !declares(code, 'signal')) {
    // A ref'd timer: the loops it ends are the program's only work, and must not let the process exit under them.
    prelude.push('const stop = new AbortController(); const signal = stop.signal; setTimeout(() => stop.abort(), 300);');
  }
  for (const [name, source] of Object.entries(STAND_INS)) if (uses(code, name) && !declares(code, name)) prelude.push(source);
  // The block's own imports first: an import must come before the code that uses it only by convention, but a
  // duplicate import of `connect` would not compile.
  const imports = code.split('\n').filter((l) => l.startsWith('import '));
  const body = code
    .split('\n')
    .filter((l) => !l.startsWith('import '))
    .join('\n');
  return [...imports, ...prelude, body, ...epilogue, 'console.log("README block done");', ''].join('\n');
}

const readme = readFileSync(`${root}README.md`, 'utf8');
const all = blocks(readme);
let redis: ServerHandle | undefined;

beforeAll(async () => {
  // The blocks import the package by name, which resolves to its build.
  await ensureBuilt();
  if (all.some((b) => b.code.includes('redis://')) && available('redis').ok) redis = await startRedis();
  mkdirSync(dir, { recursive: true });
}, 180_000);

afterAll(async () => {
  await redis?.stop();
  rmSync(dir, { recursive: true, force: true });
});

describe('README code', () => {
  it('has TypeScript and JavaScript blocks to run', () => {
    expect(all.filter((b) => b.language === 'ts').length).toBeGreaterThanOrEqual(8);
    expect(all.filter((b) => b.language === 'js').length).toBeGreaterThanOrEqual(2);
  });

  it.each(all.map((b) => [`${b.heading} (line ${b.line}, ${b.language})`, b] as const))('%s runs as written', async (_name, block) => {
    if (block.code.includes('redis://') && !redis) throw new Error('this block needs redis-server (apt-get install redis-server)');
    const file = `${dir}block-${block.line}.${block.language === 'ts' ? 'mts' : 'mjs'}`;
    writeFileSync(file, program(block, redis?.url));
    const args = block.language === 'ts' ? ['--import', 'tsx', file] : [file];
    const { stdout } = await run(process.execPath, args, { cwd: root, timeout: 30_000 });
    expect(stdout).toContain('README block done');
  });
});
