/** concord demo, run as a user would without a terminal: small numbers, its verdict, and a negative control. */
import { execFileSync, spawn } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BIN, ROOT, SQLITE_SKIP, concord, sqliteAvailable, tempDb } from './run.js';

const ESC = String.fromCharCode(0x1b);

/** util-linux `script` gives a command a pseudo-terminal. */
function hasScript(): boolean {
  try {
    execFileSync('script', ['--version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

let db: ReturnType<typeof tempDb>;

describe.skipIf(!sqliteAvailable)(`concord demo${sqliteAvailable ? '' : ` (skipped: ${SQLITE_SKIP})`}`, { timeout: 120_000 }, () => {
  beforeAll(() => {
    db = tempDb();
  });

  afterAll(() => {
    db.remove();
  });

  it('kills a worker midway, the survivors take over, and every task completes exactly once', async () => {
    const result = await concord(['demo', '--workers', '3', '--tasks', '40', '--work-ms', '2', '--url', db.url]);
    expect(result.code, `${result.stdout}\n${result.stderr}`).toBe(0);
    expect(result.stdout).toMatch(/^concord demo: 3 workers, 40 tasks, on sqlite:\/\//);
    expect(result.stdout).toMatch(/killed worker-\d \(pid \d+, SIGKILL\)/);
    expect(result.stdout).toMatch(/^ {2}failover {2}worker-\d killed at \d+\/40 tasks; left the group .* after the kill/m);
    expect(result.stdout).toMatch(/^ {2}verdict {3}PASS: every one of the 40 tasks completed exactly once$/m);
    // Plain lines only: no cursor movement when stdout is not a terminal.
    expect(result.stdout).not.toContain('\x1b[');
    // Per-worker counts add up to the tasks.
    const counts = [...result.stdout.matchAll(/^ {2}worker-\d +\d+ +(\d+) +(finished|killed at .*)$/gm)].map((m) => Number(m[1]));
    expect(counts).toHaveLength(3);
    expect(counts.reduce((a, b) => a + b, 0)).toBe(40);
  });

  it('fails its check when workers skip the locks (negative control)', async () => {
    const result = await concord(['demo', '--workers', '3', '--tasks', '40', '--work-ms', '2', '--url', db.url, '--unsafe-no-locks']);
    expect(result.code).toBe(1);
    expect(result.stdout).toMatch(/^ {2}verdict {3}FAIL: task-\d+ completed twice/m);
  });

  it.skipIf(!hasScript())('draws live progress on a terminal and restores the cursor', async () => {
    const command = `${JSON.stringify(process.execPath)} ${JSON.stringify(BIN)} demo --workers 2 --tasks 20 --work-ms 10 --url ${JSON.stringify(db.url)}`;
    const child = spawn('script', ['-qfec', command, '/dev/null'], {
      cwd: ROOT,
      env: { ...process.env, CONCORD_CLI_SOURCE: '1', TERM: 'xterm', NO_COLOR: '' },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let output = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => (output += chunk));
    child.stdin.end();
    const code = await new Promise<number | null>((resolve) => child.once('close', resolve));
    expect(code, output).toBe(0);
    expect(output).toContain('\x1b[?25l');
    expect(output).toMatch(new RegExp(`${ESC}\\[\\d+F`));
    expect(output).toContain('\x1b[?25h');
    const text = output.replace(new RegExp(`${ESC}\\[[0-9;?]*[A-Za-z]`, 'g'), '');
    expect(text).toMatch(/total +█+ +20\/20/);
    expect(text).toMatch(/PASS: every one of the 20 tasks completed exactly once/);
  });
});
