/**
 * The demo's ledger on its own: the correctness claim (every task completed exactly once, under its lock) and its
 * negative control (workers without locks complete a task twice), fencing of stale completions, and the verdict.
 */
import { describe, expect, it } from 'vitest';
import { Ledger } from '../../src/cli/demo/ledger.js';

const NORMAL = { timedOut: false, interrupted: false, failures: [], stuck: [] } as const;

/** A worker's turn at a task as the demo's workers take it: claim under the lock's token, then complete. */
function run(ledger: Ledger, worker: string, task: number, token: bigint): string {
  return ledger.claim(worker, task, token).done ? 'already done' : ledger.complete(worker, task, token);
}

describe('the demo ledger', () => {
  it('passes when every task completes exactly once, each under its lock', () => {
    const ledger = new Ledger(4);
    expect([run(ledger, 'a', 1, 1n), run(ledger, 'b', 2, 1n), run(ledger, 'a', 3, 1n), run(ledger, 'b', 4, 1n)]).toEqual([
      'accepted',
      'accepted',
      'accepted',
      'accepted',
    ]);
    // A later holder of a done task's lock finds it done and runs nothing.
    expect(run(ledger, 'b', 1, 2n)).toBe('already done');
    expect(ledger.accepted).toBe(4);
    expect([ledger.completionsBy('a'), ledger.completionsBy('b')]).toEqual([2, 2]);
    expect(ledger.completion(3)).toEqual({ worker: 'a', token: 1n });
    expect(ledger.verdict(NORMAL)).toEqual({ pass: true, lines: ['every one of the 4 tasks completed exactly once'] });
    const one = new Ledger(1);
    run(one, 'a', 1, 7n);
    expect(one.verdict(NORMAL)).toEqual({ pass: true, lines: ['the one task completed exactly once'] });
  });

  it('fails when workers skip the locks and two complete the same task (negative control)', () => {
    // Without locks the workers neither claim nor hold a token: they report token 0 for whatever they believe is theirs.
    const ledger = new Ledger(2);
    expect(ledger.complete('a', 1, 0n)).toBe('accepted');
    expect(ledger.complete('b', 2, 0n)).toBe('accepted');
    expect(ledger.complete('b', 1, 0n)).toBe('duplicate');
    const verdict = ledger.verdict(NORMAL);
    expect(verdict.pass).toBe(false);
    expect(verdict.lines).toEqual(['task-1 completed twice: by a (token 0) and by b (token 0)']);
    expect(ledger.completionsBy('b')).toBe(1);
  });

  it('refuses a completion under an older token as stale, and that is no failure', () => {
    const ledger = new Ledger(1);
    expect(ledger.claim('a', 1, 5n)).toEqual({ done: false });
    // a lost its lock (killed, or paused past its TTL); b holds it now under a larger token.
    ledger.workerGone('a');
    expect(ledger.claim('b', 1, 6n)).toEqual({ done: false });
    expect(ledger.complete('a', 1, 5n)).toBe('stale');
    expect(ledger.complete('b', 1, 6n)).toBe('accepted');
    expect(ledger.stale).toEqual(['task-1 from a (token 5 < 6)']);
    expect(ledger.violations).toEqual([]);
    expect(ledger.verdict(NORMAL).pass).toBe(true);
  });

  it('records a claim that breaks mutual exclusion or does not grow the token as a violation', () => {
    const ledger = new Ledger(2);
    ledger.claim('a', 1, 5n);
    ledger.claim('b', 1, 6n);
    ledger.claim('a', 2, 3n);
    ledger.workerGone('a');
    ledger.claim('b', 2, 3n);
    expect(ledger.violations).toEqual(['task-1: b claimed it while a still held it', 'task-2: b claimed with token 3 after token 3']);
    expect(ledger.verdict(NORMAL)).toMatchObject({ pass: false });
  });

  it("once its holder is gone, a claim stands in no one's way; a completed task holds no claim", () => {
    const ledger = new Ledger(2);
    ledger.claim('a', 1, 1n);
    ledger.workerGone('a');
    ledger.claim('b', 1, 2n);
    run(ledger, 'c', 2, 1n);
    ledger.claim('d', 2, 2n);
    expect(ledger.violations).toEqual([]);
  });

  it('an unknown task is a violation to claim and is never recorded', () => {
    const ledger = new Ledger(2);
    expect(ledger.claim('a', 3, 1n)).toEqual({ done: true });
    expect(ledger.complete('a', 0, 1n)).toBe('unknown');
    expect(ledger.violations).toEqual(['a claimed an unknown task 3']);
    expect(ledger.accepted).toBe(0);
  });

  it('fails for tasks never completed, failed workers, and a run that timed out or was interrupted', () => {
    const ledger = new Ledger(7);
    run(ledger, 'a', 4, 1n);
    expect(ledger.missing()).toEqual([1, 2, 3, 5, 6, 7]);
    expect(
      ledger.verdict({
        timedOut: true,
        interrupted: false,
        failures: ['worker-2 failed: boom'],
        stuck: ['worker-1 was running task-1 when time ran out'],
      }),
    ).toEqual({
      pass: false,
      lines: [
        'timed out before the end',
        '6 of 7 tasks never completed (task-1, task-2, task-3, task-5, task-6, ...)',
        'worker-2 failed: boom',
        'worker-1 was running task-1 when time ran out',
      ],
    });
    expect(ledger.verdict({ ...NORMAL, timedOut: true, interrupted: true }).lines[0]).toBe('interrupted before the end');
  });

  it('lists at most ten violations, then how many more', () => {
    const ledger = new Ledger(1);
    for (let i = 0; i < 12; i++) ledger.complete('a', 1, 0n);
    const { lines } = ledger.verdict(NORMAL);
    expect(lines).toHaveLength(11);
    expect(lines[10]).toBe('... and 1 more violations');
  });
});
