import { describe, expect, it } from 'vitest';
import { checkHistory, checkIntervals, type HoldInterval, type LockEvent } from './history.js';

const acq = (client: string, token: number, at: number): LockEvent => ({ client, kind: 'acquired', token: BigInt(token), at });
const rel = (client: string, token: number, at: number): LockEvent => ({ client, kind: 'released', token: BigInt(token), at });
const iv = (client: string, token: number, start: number, end: number): HoldInterval => ({
  client,
  token: BigInt(token),
  start: BigInt(start),
  end: BigInt(end),
});

describe('checkHistory', () => {
  it('accepts an empty history', () => {
    expect(checkHistory([])).toEqual({ ok: true, violations: [] });
  });

  it('accepts alternating holders with increasing tokens', () => {
    const result = checkHistory([acq('a', 1, 1), rel('a', 1, 2), acq('b', 2, 3), rel('b', 2, 4), acq('a', 7, 5), rel('a', 7, 6)]);
    expect(result).toEqual({ ok: true, violations: [] });
  });

  it('accepts a lock still held at the end', () => {
    expect(checkHistory([acq('a', 1, 1), rel('a', 1, 2), acq('b', 2, 3)]).ok).toBe(true);
  });

  it('orders by time, not by array position (events gathered from several clients)', () => {
    const result = checkHistory([acq('b', 2, 30), rel('b', 2, 40), acq('a', 1, 10), rel('a', 1, 20)]);
    expect(result).toEqual({ ok: true, violations: [] });
  });

  it('keeps array order for equal times (release recorded before the next acquire)', () => {
    expect(checkHistory([acq('a', 1, 1), rel('a', 1, 5), acq('b', 2, 5)]).ok).toBe(true);
  });

  it('accepts a long generated history of correct handoffs', () => {
    const events: LockEvent[] = [];
    let at = 0;
    for (let i = 1; i <= 1000; i++) {
      const client = `c${i % 7}`;
      events.push(acq(client, i * 3, at++), rel(client, i * 3, at++));
    }
    expect(checkHistory(events).ok).toBe(true);
  });

  // Negative controls: each violation kind must be caught, or a passing safety test proves nothing.

  it('NEGATIVE: catches an overlap (acquired while another client holds)', () => {
    const result = checkHistory([acq('a', 1, 1), acq('b', 2, 2), rel('a', 1, 3), rel('b', 2, 4)]);
    expect(result.ok).toBe(false);
    expect(result.violations.some((v) => v.startsWith('overlap:') && v.includes('b acquired') && v.includes('a holds'))).toBe(true);
  });

  it('NEGATIVE: catches an overlap hidden in a long history', () => {
    const events: LockEvent[] = [];
    let at = 0;
    for (let i = 1; i <= 500; i++) events.push(acq(`c${i % 5}`, i * 10, at++), rel(`c${i % 5}`, i * 10, at++));
    // c9 holds inside c1's holding of token 2510 (t=500..501), with a token between it and the next one, so only the
    // overlap is wrong.
    events.push(acq('c9', 2515, 500.5), rel('c9', 2515, 500.7));
    const result = checkHistory(events);
    expect(result.ok).toBe(false);
    expect(result.violations).toHaveLength(1);
    expect(result.violations[0]).toMatch(/^overlap: c9 acquired token 2515 at 500.5 while c1 holds token 2510/);
  });

  it('NEGATIVE: catches the same client acquiring twice without releasing', () => {
    const result = checkHistory([acq('a', 1, 1), acq('a', 2, 2)]);
    expect(result.ok).toBe(false);
    expect(result.violations[0]).toMatch(/^overlap: .*same client/);
  });

  it('NEGATIVE: catches a repeated token', () => {
    const result = checkHistory([acq('a', 5, 1), rel('a', 5, 2), acq('b', 5, 3), rel('b', 5, 4)]);
    expect(result.ok).toBe(false);
    expect(result.violations).toEqual([expect.stringMatching(/^token: b acquired token 5/)]);
  });

  it('NEGATIVE: catches a decreasing token', () => {
    const result = checkHistory([acq('a', 5, 1), rel('a', 5, 2), acq('b', 4, 3), rel('b', 4, 4)]);
    expect(result.ok).toBe(false);
    expect(result.violations).toEqual([expect.stringMatching(/^token: b acquired token 4 .* not greater than token 5/)]);
  });

  it('NEGATIVE: compares a token with every earlier token, not just the previous one', () => {
    // 10, 3, 7: 7 > 3 but 7 <= 10.
    const result = checkHistory([acq('a', 10, 1), rel('a', 10, 2), acq('b', 3, 3), rel('b', 3, 4), acq('c', 7, 5), rel('c', 7, 6)]);
    expect(result.violations.filter((v) => v.startsWith('token:'))).toHaveLength(2);
  });

  it('NEGATIVE: catches a release when nobody holds the lock', () => {
    const result = checkHistory([rel('a', 1, 1)]);
    expect(result.ok).toBe(false);
    expect(result.violations).toEqual([expect.stringMatching(/^release: a released token 1 .*nobody holds/)]);
  });

  it('NEGATIVE: catches a release by a client that is not the holder, and keeps the real holder', () => {
    const result = checkHistory([acq('a', 1, 1), rel('b', 1, 2), acq('c', 2, 3)]);
    expect(result.ok).toBe(false);
    expect(result.violations[0]).toMatch(/^release: b released .* but a holds token 1/);
    // The stray release did not free the lock, so c's acquisition overlaps a.
    expect(result.violations[1]).toMatch(/^overlap: c acquired/);
  });

  it('NEGATIVE: catches a release with the wrong token by the holder', () => {
    const result = checkHistory([acq('a', 2, 1), rel('a', 1, 2)]);
    expect(result.ok).toBe(false);
    expect(result.violations).toEqual([expect.stringMatching(/^release: a released token 1 .* a holds token 2/)]);
  });
});

describe('checkIntervals', () => {
  it('accepts an empty list', () => {
    expect(checkIntervals([])).toEqual({ ok: true, violations: [] });
  });

  it('accepts disjoint intervals with increasing tokens, in any input order', () => {
    const result = checkIntervals([iv('p2', 20, 300, 400), iv('p1', 10, 100, 200), iv('p3', 30, 500, 501)]);
    expect(result).toEqual({ ok: true, violations: [] });
  });

  it('accepts number timestamps and a zero-length interval', () => {
    const result = checkIntervals([
      { client: 'a', token: 1n, start: 1.5, end: 1.5 },
      { client: 'b', token: 2n, start: 2, end: 3 },
    ]);
    expect(result.ok).toBe(true);
  });

  it('accepts real hrtime intervals recorded one after another', () => {
    const intervals: HoldInterval[] = [];
    for (let i = 1; i <= 100; i++) {
      const start = process.hrtime.bigint();
      const end = process.hrtime.bigint();
      intervals.push({ client: `p${i % 3}`, token: BigInt(i), start, end });
      while (process.hrtime.bigint() === end) {
        // wait for the clock to tick, so the next interval starts strictly later
      }
    }
    expect(checkIntervals(intervals)).toEqual({ ok: true, violations: [] });
  });

  it('NEGATIVE: catches two overlapping intervals', () => {
    const result = checkIntervals([iv('p1', 1, 100, 200), iv('p2', 2, 150, 250)]);
    expect(result.ok).toBe(false);
    expect(result.violations).toEqual([expect.stringMatching(/^overlap: p2 token 2 \[150, 250\] overlaps p1 token 1/)]);
  });

  it('NEGATIVE: closed intervals that share an instant overlap', () => {
    expect(checkIntervals([iv('p1', 1, 100, 200), iv('p2', 2, 200, 300)]).ok).toBe(false);
  });

  it('NEGATIVE: catches an interval inside a long earlier one, past a short interval in between', () => {
    // p2 ends before p3 starts, but p1 (started first) is still holding.
    const result = checkIntervals([iv('p1', 1, 100, 1000), iv('p2', 2, 110, 120), iv('p3', 3, 500, 600)]);
    expect(result.violations.filter((v) => v.startsWith('overlap:'))).toHaveLength(2);
    expect(result.violations.some((v) => v.startsWith('overlap: p3') && v.includes('p1 token 1'))).toBe(true);
  });

  it('NEGATIVE: catches tokens that do not increase with start time', () => {
    const result = checkIntervals([iv('p1', 5, 100, 200), iv('p2', 5, 300, 400), iv('p3', 4, 500, 600)]);
    expect(result.ok).toBe(false);
    expect(result.violations).toHaveLength(2);
    expect(result.violations.every((v) => v.startsWith('token:'))).toBe(true);
  });

  it('NEGATIVE: catches an interval that ends before it starts', () => {
    const result = checkIntervals([iv('p1', 1, 200, 100)]);
    expect(result.ok).toBe(false);
    expect(result.violations[0]).toMatch(/^interval: /);
  });
});

describe('modes: shared holds and semaphore permits', () => {
  const sacq = (client: string, token: number, at: number): LockEvent => ({ ...acq(client, token, at), shared: true });
  const srel = (client: string, token: number, at: number): LockEvent => ({ ...rel(client, token, at), shared: true });
  const siv = (client: string, token: number, start: number, end: number): HoldInterval => ({
    ...iv(client, token, start, end),
    shared: true,
  });

  it('accepts overlapping shared holds, recorded in any token order, between exclusive ones', () => {
    const history = [
      acq('w', 1, 1),
      rel('w', 1, 2),
      sacq('r1', 3, 3),
      sacq('r2', 2, 4),
      srel('r1', 3, 5),
      srel('r2', 2, 6),
      acq('w', 4, 7),
    ];
    expect(checkHistory(history)).toEqual({ ok: true, violations: [] });
    expect(checkIntervals([iv('w', 1, 1, 2), siv('r1', 3, 3, 5), siv('r2', 2, 4, 6), iv('w', 4, 7, 8)])).toEqual({
      ok: true,
      violations: [],
    });
  });

  it('NEGATIVE: catches a shared hold beside an exclusive one, either way round', () => {
    expect(checkHistory([acq('w', 1, 1), sacq('r', 2, 2)]).violations).toEqual([expect.stringMatching(/^overlap: r acquired shared/)]);
    expect(checkHistory([sacq('r', 1, 1), acq('w', 2, 2)]).violations).toEqual([expect.stringMatching(/^overlap: w acquired token 2/)]);
    expect(checkIntervals([siv('r', 1, 1, 5), iv('w', 2, 3, 4)]).violations).toEqual([expect.stringMatching(/^overlap: /)]);
  });

  it('NEGATIVE: catches a shared token not above an earlier exclusive or released one', () => {
    expect(checkHistory([acq('w', 5, 1), rel('w', 5, 2), sacq('r', 4, 3)]).violations).toEqual([expect.stringMatching(/^token: /)]);
    expect(checkHistory([sacq('a', 5, 1), srel('a', 5, 2), sacq('b', 3, 3)]).violations).toEqual([expect.stringMatching(/^token: /)]);
    expect(checkIntervals([siv('a', 5, 1, 2), siv('b', 3, 3, 4)]).violations).toEqual([expect.stringMatching(/^token: /)]);
    expect(checkHistory([sacq('a', 5, 1), sacq('b', 5, 2)]).violations).toEqual([expect.stringMatching(/handed out before/)]);
  });

  it('accepts a shared grant noticed late, after a later shared hold came and went, when it says when it asked', () => {
    // b asked at 1, was granted token 5, and noticed at 6; a asked later, got 6, and was done by 4.
    const late = [
      { ...siv('b', 5, 6, 8), asked: 1 },
      { ...siv('a', 6, 3, 4), asked: 2 },
    ];
    expect(checkIntervals(late)).toEqual({ ok: true, violations: [] });
    expect(checkIntervals(late, { limit: 2 })).toEqual({ ok: true, violations: [] });
    // NEGATIVE: asked after a's hold ended, b's token must be above it.
    expect(checkIntervals([{ ...siv('b', 5, 6, 8), asked: 5 }, siv('a', 6, 3, 4)]).violations).toEqual([
      expect.stringMatching(/^token: b token 5/),
    ]);
    // NEGATIVE: asking early excuses nothing against an exclusive hold that started before.
    expect(checkIntervals([{ ...siv('b', 5, 6, 8), asked: 1 }, iv('w', 6, 3, 4)]).violations).toEqual([
      expect.stringMatching(/^token: b token 5/),
    ]);
  });

  it('judges a shared token against holds released before it was asked for, when `asked` is given', () => {
    // r1 asked at 1 and was granted token 2, but saw it only at 5, after r2 (token 3) had come and gone.
    const late = [sacq('r2', 3, 3), srel('r2', 3, 4), { ...sacq('r1', 2, 5), asked: 1 }, srel('r1', 2, 6)];
    expect(checkHistory(late)).toEqual({ ok: true, violations: [] });
    // NEGATIVE: asked after r2's release, a smaller token is a violation.
    expect(checkHistory([sacq('r2', 3, 3), srel('r2', 3, 4), { ...sacq('r1', 2, 5), asked: 4.5 }]).violations).toEqual([
      expect.stringMatching(/^token: /),
    ]);
  });

  it('accepts a semaphore at its limit, and NEGATIVE: catches a permit beyond it', () => {
    const within = [acq('a', 1, 1), acq('b', 2, 2), acq('c', 3, 3), rel('a', 1, 4), acq('d', 4, 5)];
    expect(checkHistory(within, { limit: 3 })).toEqual({ ok: true, violations: [] });
    const beyond = [...within.slice(0, 3), acq('d', 4, 3.5)];
    expect(checkHistory(beyond, { limit: 3 }).violations).toEqual([expect.stringMatching(/^limit: d acquired token 4 .* limit 3/)]);
    const intervals = [iv('a', 1, 1, 10), iv('b', 2, 2, 10), iv('c', 3, 3, 10)];
    expect(checkIntervals(intervals, { limit: 3 }).ok).toBe(true);
    expect(checkIntervals([...intervals, iv('d', 4, 9, 11)], { limit: 3 }).violations).toEqual([expect.stringMatching(/^limit: /)]);
    // The same history is an overlap for an exclusive lock.
    expect(checkIntervals(intervals).ok).toBe(false);
  });
});
