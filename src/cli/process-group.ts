/**
 * The process group of a command run by `lock` or `elect`: signalling all of it, and knowing when none of it is left.
 * POSIX only; on Windows there are no process groups, and only the command's own process is signalled.
 */
import { readdirSync, readFileSync } from 'node:fs';

const WINDOWS = process.platform === 'win32';

/** Sends `signal` (0: none, only the check) to every process of the group; false when the group has no process. */
export function signalGroup(pgid: number, signal: NodeJS.Signals | 0): boolean {
  try {
    process.kill(WINDOWS ? pgid : -pgid, signal);
    return true;
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ESRCH') return false;
    // A member we may not signal (a set-uid program) is still a member.
    if (code === 'EPERM') return true;
    throw error;
  }
}

/**
 * The live processes of the group. Zombies do not count: they run nothing, and an orphan stays one until init reaps
 * it. Read from /proc on Linux; elsewhere only whether kill(2) still finds the group (zombies included) is known.
 */
export function groupMembers(pgid: number): number[] {
  if (!signalGroup(pgid, 0)) return [];
  if (WINDOWS) return [pgid];
  let entries: string[];
  try {
    entries = readdirSync('/proc');
  } catch {
    return [pgid];
  }
  const members: number[] = [];
  for (const entry of entries) {
    if (!/^\d+$/.test(entry)) continue;
    let stat: string;
    try {
      stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
    } catch {
      continue; // exited while we looked
    }
    // pid (comm) state ppid pgrp ...: comm may hold spaces and parentheses, so read after the last ')'.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const state = fields[0];
    if (Number(fields[2]) === pgid && state !== 'Z' && state !== 'X') members.push(Number(entry));
  }
  return members;
}

/**
 * Resolves true once no process of the group is alive, or false once `ms` have passed. There is no event for a
 * group becoming empty (its members need not be our children), so this looks again with a growing pause.
 */
export async function waitGroupGone(pgid: number, ms: number): Promise<boolean> {
  const end = performance.now() + ms;
  let pause = 2;
  for (;;) {
    if (groupMembers(pgid).length === 0) return true;
    const left = end - performance.now();
    if (left <= 0) return false;
    await new Promise((resolve) => setTimeout(resolve, Math.min(pause, left)));
    pause = Math.min(pause * 2, 50);
  }
}

/**
 * Ends the group: `first` (unless null), then SIGKILL once `graceMs` pass with a process still alive; resolves once
 * none is left. `slow` is called once if processes outlive their SIGKILL by a second (stuck in the kernel, or not
 * ours to kill): nothing is released while they live, so the wait goes on.
 */
export async function endGroup(
  pgid: number,
  options: { readonly graceMs: number; readonly first: NodeJS.Signals | null; readonly slow?: (pids: number[]) => void },
): Promise<void> {
  if (options.first !== null && !signalGroup(pgid, options.first)) return;
  if (await waitGroupGone(pgid, options.graceMs)) return;
  signalGroup(pgid, 'SIGKILL');
  if (await waitGroupGone(pgid, 1000)) return;
  options.slow?.(groupMembers(pgid));
  while (!(await waitGroupGone(pgid, 60_000))) signalGroup(pgid, 'SIGKILL');
}
