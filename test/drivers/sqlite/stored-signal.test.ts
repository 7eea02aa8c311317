/**
 * A holder that keeps `held.signal` in a variable and is stopped (SIGSTOP) past its TTL: once resumed, it must not
 * write again after another process has taken the lock. The stored signal checks the session's deadline when read,
 * so the first look after the pause already says lost, before any timer has run. Real processes, one SQLite file.
 */
import { spawn } from 'node:child_process';
import { appendFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connect } from '../../../src/index.js';
import { deadline } from '../../support/wait.js';

const WRITER = fileURLToPath(new URL('./stored-signal-writer.ts', import.meta.url));

let dir = '';

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'concord-stored-signal-'));
});

afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

/** Starts the writer and resolves with its process and a reader of its JSON lines. */
function writer(args: string[]): { pid: number; next: (key: string) => Promise<Record<string, unknown>>; exited: Promise<void> } {
  const proc = spawn(process.execPath, ['--import', 'tsx', WRITER, ...args], { stdio: ['ignore', 'pipe', 'inherit'] });
  const lines: Array<Record<string, unknown>> = [];
  const waiters: Array<() => void> = [];
  if (proc.stdout) {
    createInterface({ input: proc.stdout }).on('line', (line) => {
      if (line.startsWith('{')) lines.push(JSON.parse(line) as Record<string, unknown>);
      for (const wake of waiters.splice(0)) wake();
    });
  }
  const exited = new Promise<void>((resolve) => proc.once('exit', () => resolve()));
  const next = (key: string): Promise<Record<string, unknown>> =>
    deadline(
      new Promise((resolve) => {
        const check = (): void => {
          const hit = lines.find((l) => key in l);
          if (hit) resolve(hit);
          else waiters.push(check);
        };
        check();
      }),
      60_000,
      `the writer's ${key} message`,
    );
  return { pid: proc.pid ?? -1, next, exited };
}

describe('a stored signal across SIGSTOP', () => {
  it('the resumed holder’s stored signal never says held once another process acquired the lock (3 rounds)', async () => {
    for (let round = 0; round < 3; round++) {
      const url = `sqlite://${join(dir, `r${round}.db`)}`;
      const log = join(dir, `r${round}.log`);
      writeFileSync(log, '');
      const a = writer([url, 'a', '600', 'L', log]);
      await a.next('acquired');
      process.kill(a.pid, 'SIGSTOP');
      const b = await connect(url, { member: 'b' });
      try {
        const held = await deadline(b.lock('L').acquire(), 30_000, 'b to acquire once a has expired');
        const acquiredAt = process.hrtime.bigint();
        appendFileSync(log, `b ${String(acquiredAt)}\n`);
        process.kill(a.pid, 'SIGCONT');
        expect((await a.next('lost')).lost).toBe('ERR_LOCK_LOST');
        const looks = readFileSync(log, 'utf8')
          .trim()
          .split('\n')
          .map((line) => line.split(' '))
          .filter(([who]) => who === 'a')
          .map(([, at]) => BigInt(at ?? '0'));
        // No look of a's stored signal said "held" once b held the lock (a write decided before the pause may land
        // after it: that is what fencing tokens are for).
        expect(
          looks.filter((at) => at >= acquiredAt),
          `a's looks that said held after b held the lock, round ${round}`,
        ).toEqual([]);
        expect(looks.length).toBeGreaterThan(0);
        await held.release();
      } finally {
        process.kill(a.pid, 'SIGCONT');
        await a.exited;
        await b.close();
      }
    }
  });
});
