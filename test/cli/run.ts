/** Runs the concord command as a child process, from the TypeScript sources, and collects what it prints. */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadNodeSqlite } from '../../drivers/sqlite/engine.js';
import { schemes } from '../../src/index.js';

export const ROOT = fileURLToPath(new URL('../../', import.meta.url));
export const BIN = join(ROOT, 'bin', 'concord.js');

// A command for the lock and elect tests: appends what it sees to a file, then waits for a signal (or exits at once
// with the given code). Inline, so that starting it costs no compilation.
const RECORD_SCRIPT = `
const { appendFileSync } = require('node:fs');
const [file, code] = process.argv.slice(1);
const write = (line) => appendFileSync(file, line + '\\n');
const env = process.env;
write('start pid=' + process.pid + ' token=' + (env.CONCORD_FENCING_TOKEN ?? '') + ' term=' + (env.CONCORD_TERM ?? '') + ' member=' + (env.CONCORD_MEMBER ?? ''));
if (code !== undefined) process.exit(Number(code));
for (const signal of ['SIGTERM', 'SIGINT']) process.on(signal, () => { write('signal ' + signal); process.exit(0); });
setInterval(() => undefined, 1000);
`;

/** The command line of the recording command: `record FILE [EXIT-CODE]`. */
export function record(file: string, exitCode?: number): string[] {
  return [process.execPath, '-e', RECORD_SCRIPT, file, ...(exitCode === undefined ? [] : [String(exitCode)])];
}

function sqliteProblem(): string | undefined {
  if (!schemes().includes('sqlite')) return 'the sqlite driver is not registered in src/connect.ts';
  // node:sqlite (Node 22.13+) needs nothing installed; Node 20 needs better-sqlite3.
  if (loadNodeSqlite()) return undefined;
  try {
    createRequire(import.meta.url).resolve('better-sqlite3');
  } catch {
    return 'better-sqlite3 is not installed (npm install), and this Node has no node:sqlite';
  }
  return undefined;
}

const problem = sqliteProblem();
// Under CI the tests run (and fail with the reason) rather than skip.
export const sqliteAvailable = problem === undefined || process.env.CI === 'true';
export const SQLITE_SKIP = problem ?? '';

export interface Result {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly stdout: string;
  readonly stderr: string;
}

export interface RunOptions {
  readonly env?: Record<string, string>;
  readonly input?: string;
  /** Run as this uid and gid, through setpriv (needs root). */
  readonly asUid?: number;
  /** Start concord in a process group (and session) of its own, as a shell's job would be. */
  readonly detached?: boolean;
}

/** The environment of every run: the sources, never a stale build; no colours; no URL from the caller's shell. */
function environment(extra?: Record<string, string>): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, CONCORD_CLI_SOURCE: '1', NO_COLOR: '1', ...extra };
  if (extra?.CONCORD_URL === undefined) delete env.CONCORD_URL;
  return env;
}

export class Running {
  readonly child: ChildProcess;
  stdout = '';
  stderr = '';
  readonly done: Promise<Result>;
  /** concord's own exit; `done` also waits for every process holding its output (a command's leftovers too). */
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;

  constructor(args: readonly string[], options?: RunOptions) {
    const command = [process.execPath, BIN, ...args];
    const uid = options?.asUid;
    // setpriv execs the command: the pid is concord's.
    if (uid !== undefined) command.unshift('setpriv', `--reuid=${String(uid)}`, `--regid=${String(uid)}`, '--clear-groups');
    const [file = '', ...rest] = command;
    this.child = spawn(file, rest, {
      cwd: ROOT,
      env: environment(options?.env),
      stdio: ['pipe', 'pipe', 'pipe'],
      detached: options?.detached === true,
    });
    this.child.stdout?.setEncoding('utf8').on('data', (chunk: string) => (this.stdout += chunk));
    this.child.stderr?.setEncoding('utf8').on('data', (chunk: string) => (this.stderr += chunk));
    this.child.stdin?.end(options?.input ?? '');
    this.exited = new Promise((resolve) => {
      this.child.once('exit', (code, signal) => {
        resolve({ code, signal });
      });
    });
    this.done = new Promise((resolve) => {
      this.child.once('close', (code, signal) => {
        resolve({ code, signal, stdout: this.stdout, stderr: this.stderr });
      });
    });
  }

  /** Ends the command if it still runs (a stopped one too) and waits for its output to close. */
  stop(): Promise<Result> {
    if (this.child.exitCode === null && this.child.signalCode === null) {
      this.child.kill('SIGCONT');
      this.child.kill('SIGKILL');
    }
    return this.done;
  }

  get pid(): number {
    const pid = this.child.pid;
    if (pid === undefined) throw new Error('the command did not start');
    return pid;
  }
}

export function concord(args: readonly string[], options?: RunOptions): Promise<Result> {
  return new Running(args, options).done;
}

/** A temporary folder with a SQLite URL inside it; remove() when done. */
export function tempDb(): { dir: string; url: string; remove: () => void } {
  const dir = mkdtempSync(join(tmpdir(), 'concord-cli-'));
  return {
    dir,
    url: `sqlite://${join(dir, 'test.db')}`,
    remove: () => {
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** The lines a user sees on stderr, ignoring blank ones. */
export function lines(text: string): string[] {
  return text.split('\n').filter((line) => line.trim() !== '');
}
