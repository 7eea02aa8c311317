/**
 * The processes of a command's process group, as `ps` sees them: checked independently of src/cli/process-group.ts,
 * and a command for the tests that starts a grandchild and says who is who.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';

export interface Proc {
  readonly pid: number;
  readonly ppid: number;
  readonly pgid: number;
  readonly stat: string;
  readonly args: string;
}

function table(): Proc[] {
  const out = execFileSync('ps', ['-e', '-o', 'pid=,ppid=,pgid=,stat=,args='], { encoding: 'utf8' });
  return out
    .split('\n')
    .map((line) => /^\s*(\d+)\s+(\d+)\s+(\d+)\s+(\S+)\s?(.*)$/.exec(line))
    .filter((match) => match !== null)
    .map((match) => ({
      pid: Number(match[1]),
      ppid: Number(match[2]),
      pgid: Number(match[3]),
      stat: match[4] ?? '',
      args: match[5] ?? '',
    }));
}

/** The live (not zombie) processes whose process group is `pgid`. */
export function groupProcesses(pgid: number): Proc[] {
  return table().filter((proc) => proc.pgid === pgid && !proc.stat.startsWith('Z'));
}

/** The process `pid`, unless it is gone or a zombie. */
export function processOf(pid: number): Proc | undefined {
  return table().find((proc) => proc.pid === pid && !proc.stat.startsWith('Z'));
}

export interface Family {
  readonly shell: number;
  readonly grandchild: number;
}

/** What is left of a family: the processes of the shell's group, and the shell and grandchild wherever they are. */
export function survivors(family: Family): Proc[] {
  const left = new Map<number, Proc>();
  for (const proc of groupProcesses(family.shell)) left.set(proc.pid, proc);
  for (const pid of [family.shell, family.grandchild]) {
    const proc = processOf(pid);
    if (proc) left.set(pid, proc);
  }
  return [...left.values()];
}

/** Ends what is left of a family (a failed test's), by pid. */
export function killSurvivors(family: Family): void {
  for (const proc of survivors(family)) {
    try {
      process.kill(proc.pid, 'SIGKILL');
    } catch {
      // gone meanwhile
    }
  }
}

export interface FamilyOptions {
  /** The grandchild ignores SIGTERM, so only SIGKILL ends it. */
  readonly ignoreTerm?: boolean;
  /** The shell exits at once, leaving the grandchild running in the background. */
  readonly leave?: boolean;
}

/**
 * `sh -c` starting a grandchild (`sleep`), then writing "SHELL-PID GRANDCHILD-PID" to `file` once both run (written
 * whole, by rename) and waiting for it. A `sleep` started with `&` by a non-interactive shell ignores SIGINT.
 */
export function family(file: string, options: FamilyOptions = {}): string[] {
  const start = options.ignoreTerm ? `(trap '' TERM; exec sleep 1000) &` : 'sleep 1000 &';
  const script = `${start} echo "$$ $!" > "$1.tmp" && mv "$1.tmp" "$1"${options.leave ? '' : '; wait'}`;
  return ['sh', '-c', script, 'sh', file];
}

/** The pids `family` wrote, once it has. */
export function familyPids(file: string): Family | undefined {
  if (!existsSync(file)) return undefined;
  const [shell, grandchild] = readFileSync(file, 'utf8').trim().split(' ').map(Number);
  return shell && grandchild ? { shell, grandchild } : undefined;
}
