/**
 * SQLite wake-ups: a commit watchers care about is announced by a touch of the side file, a renewal by nothing; a
 * change nobody announced (a lost notification, a writer gone between its commit and its touch) still reaches a
 * watcher through the fallback poll; and while a process of an earlier version (which touches nothing) shares the
 * file, its commits still wake watchers at once.
 */
import { existsSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { BOOT_ID, PID_NS, TIME_NS, monotonicMs } from '../../../drivers/sqlite/host.js';
import { notifyCounts, sideFile } from '../../../drivers/sqlite/notify.js';
import { connect, type Coordinator, type GroupEvent } from '../../../src/index.js';
import { deadline } from '../../support/wait.js';
import { openDatabase } from './database.js';

let dir = '';
let path = '';
const coordinators: Coordinator[] = [];

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'concord-sqlite-notify-'));
  path = join(dir, 'db.sqlite');
});

afterEach(async () => {
  await Promise.all(coordinators.splice(0).map((c) => c.close()));
  rmSync(dir, { recursive: true, force: true });
});

async function coordinator(member: string, sessionTtlMs = 10_000): Promise<Coordinator> {
  const c = await connect(`sqlite://${path}`, { member, sessionTtlMs });
  coordinators.push(c);
  return c;
}

/** A watcher of group g (joined, so the group exists) whose events come to `seen`; resolves once it is watching. */
async function watcher(): Promise<{ next: (member: string) => Promise<GroupEvent> }> {
  const c = await coordinator('watcher');
  await c.group('g').join({ create: true });
  const watch = c.group('g').watch({ initial: false });
  const waiting = new Map<string, (event: GroupEvent) => void>();
  const seen = new Map<string, GroupEvent>();
  void (async () => {
    for await (const event of watch) {
      seen.set(event.member, event);
      waiting.get(event.member)?.(event);
    }
  })();
  // The watch is open once a join by a coordinator of this process (told directly) comes through it.
  const probe = await coordinator('probe');
  const probed = new Promise<void>((resolve) => waiting.set('probe', () => resolve()));
  await probe.group('g').join();
  await deadline(probed, 5000, 'the watch to open');
  const next = (member: string): Promise<GroupEvent> => {
    const found = seen.get(member);
    if (found) return Promise.resolve(found);
    return new Promise((resolve) => waiting.set(member, resolve));
  };
  // The watch may subscribe again once open (its catch-up then reads what is new): settled once an unannounced change
  // has come through.
  ghostJoin('settle');
  await deadline(next('settle'), 5000, 'the watch to settle');
  return { next };
}

/** A change-log row written behind the drivers' backs: committed as any writer would, but announced to nobody. */
function ghostJoin(member: string): void {
  const db = openDatabase(path, { writable: true });
  try {
    db.transaction('immediate', () => {
      db.prepare('INSERT INTO concord_members (ns, grp, member, session, capabilities) VALUES (?, ?, ?, ?, ?)').run(
        'concord',
        'g',
        member,
        'nobody',
        '{}',
      );
      db.prepare("INSERT INTO concord_changes (ns, grp, type, member, capabilities) VALUES (?, ?, 'join', ?, '{}')").run(
        'concord',
        'g',
        member,
      );
    });
  } finally {
    db.close();
  }
}

describe('sqlite wake-ups', () => {
  it('renewals of other connections wake no watcher; a join does, through the side file', async () => {
    const { next } = await watcher();
    expect(existsSync(sideFile(path))).toBe(true);
    // Another connection renewing every 50 ms: each renewal is a commit (the -wal is written), and none is announced.
    await coordinator('renewer', 150);
    const before = notifyCounts.notified;
    await new Promise((resolve) => setTimeout(resolve, 1000));
    // Before: every commit woke every watcher (about 20 here), and each wake-up that found nothing looked again 3 times.
    expect(notifyCounts.notified - before).toBeLessThanOrEqual(1);
    const writer = await coordinator('writer');
    await writer.group('g').join();
    expect((await deadline(next('writer'), 5000, 'the join')).type).toBe('join');
  });

  it('a change whose notification never comes still reaches the watcher, through the fallback poll', async () => {
    const { next } = await watcher();
    // Nothing announces these: only the poll can find them (the side file is never touched meanwhile).
    const touched = statSync(sideFile(path)).mtimeMs;
    for (const member of ['ghost', 'ghost2']) {
      ghostJoin(member);
      expect((await deadline(next(member), 5000, 'the unannounced join')).type).toBe('join');
    }
    expect(statSync(sideFile(path)).mtimeMs).toBe(touched);
  });

  it('while a session of an earlier version lives, its unannounced commits wake watchers at once (the -wal is watched)', async () => {
    // A version 3 session: written without `touches`, so it reads 0. Ours (pid and boot) so nobody reaps it.
    const db = openDatabase(path, { writable: true });
    try {
      await coordinator('first');
      db.prepare('INSERT INTO concord_sessions (id, ns, ttl_ms, expires_at, pid, boot, pidns, timens) VALUES (?, ?, ?, ?, ?, ?, ?, ?)').run(
        'old',
        'concord',
        60_000,
        monotonicMs() + 60_000,
        process.pid,
        BOOT_ID,
        PID_NS,
        TIME_NS,
      );
    } finally {
      db.close();
    }
    const { next } = await watcher();
    const notified = notifyCounts.notified;
    ghostJoin('old-member');
    expect((await deadline(next('old-member'), 5000, 'the join of an earlier version')).type).toBe('join');
    // Woken by the -wal's notification, not found by the poll.
    expect(notifyCounts.notified).toBeGreaterThan(notified);
  });
});
