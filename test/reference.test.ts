import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { expect, it } from 'vitest';

const root = fileURLToPath(new URL('..', import.meta.url));

function files(dir: string): Map<string, string> {
  const found = new Map<string, string>();
  const walk = (at: string): void => {
    for (const entry of readdirSync(at, { withFileTypes: true })) {
      const path = join(at, entry.name);
      if (entry.isDirectory()) walk(path);
      else found.set(relative(dir, path), readFileSync(path, 'utf8'));
    }
  };
  walk(dir);
  return found;
}

it('the API reference in docs/reference is what the JSDoc says, with every public member documented (npm run docs)', () => {
  const out = mkdtempSync(join(tmpdir(), 'concord-reference-'));
  try {
    // typedoc fails on an undocumented public member (validation.notDocumented, warnings as errors).
    execFileSync(process.execPath, [join(root, 'node_modules/typedoc/bin/typedoc'), '--out', out], { cwd: root, stdio: 'pipe' });
    const fresh = files(out);
    const committed = files(join(root, 'docs/reference'));
    expect([...committed.keys()].sort()).toEqual([...fresh.keys()].sort());
    for (const [name, text] of fresh) expect(committed.get(name), `docs/reference/${name} is stale`).toBe(text);
  } finally {
    rmSync(out, { recursive: true, force: true });
  }
}, 120_000);
