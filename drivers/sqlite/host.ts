/**
 * What every process of one host shares: the monotonic clock (process.hrtime is CLOCK_MONOTONIC, the same for all
 * processes of one boot and one time namespace), the boot id and the pid namespace. With them a session row says
 * whether its process is still alive, so a killed holder is released at once instead of after its TTL.
 */
import { readFileSync, readlinkSync } from 'node:fs';

/** Milliseconds on the host's monotonic clock; comparable between processes of one boot, never the wall clock. */
export function monotonicMs(): number {
  return Number(process.hrtime.bigint() / 1_000_000n);
}

function readOr(read: () => string): string {
  try {
    return read().trim();
  } catch {
    return '';
  }
}

/** Linux's id of this boot; '' where there is none (then only TTLs and pids decide). */
export const BOOT_ID = readOr(() => readFileSync('/proc/sys/kernel/random/boot_id', 'utf8'));

/** The pid namespace: a pid is only meaningful to processes in the same one (containers share boot ids). */
export const PID_NS = readOr(() => readlinkSync('/proc/self/ns/pid'));

/**
 * The time namespace: CLOCK_MONOTONIC is offset per time namespace (`unshare -T`, a restored checkpoint), so an
 * expiry written in another one means nothing on our clock. '' where unknown (then clocks are taken as shared).
 */
export const TIME_NS = readOr(() => readlinkSync('/proc/self/ns/time'));

export interface SessionOwner {
  readonly pid: number;
  readonly boot: string;
  readonly pidns: string;
  readonly timens: string;
  readonly expiresAt: number;
}

/** Why a session is over, or undefined while it may live. */
export function deathOf(owner: SessionOwner, nowMs: number): string | undefined {
  // A monotonic time from another boot means nothing here, and no process of that boot survives it.
  if (owner.boot !== '' && BOOT_ID !== '' && owner.boot !== BOOT_ID) return 'its host rebooted';
  // A session from another time namespace expires on its own clock: its own process judges its TTL (renewal fails
  // once it ran out); from here only its process's death ends it, and without a shared pid namespace nothing does.
  const sameClock = owner.timens === '' || TIME_NS === '' || owner.timens === TIME_NS;
  if (sameClock && owner.expiresAt <= nowMs) return 'its TTL ran out';
  if (owner.pid === process.pid || owner.pidns !== PID_NS || PID_NS === '') return undefined;
  try {
    process.kill(owner.pid, 0);
  } catch (error) {
    // EPERM: alive, owned by another user. Only "no such process" proves the holder is gone.
    if ((error as NodeJS.ErrnoException).code === 'ESRCH') return 'its process is gone';
    return undefined;
  }
  // A killed process whose parent has not collected it yet still answers signals; Linux shows it as a zombie.
  return isZombie(owner.pid) ? 'its process is gone' : undefined;
}

function isZombie(pid: number): boolean {
  const stat = readOr(() => readFileSync(`/proc/${String(pid)}/stat`, 'utf8'));
  const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
  return state === 'Z' || state === 'X';
}
