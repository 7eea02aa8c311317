/** concord demo, run as a user would without a terminal: small numbers, its verdict, and a negative control. */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SQLITE_SKIP, concord, sqliteAvailable, tempDb } from './run.js';

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
});
