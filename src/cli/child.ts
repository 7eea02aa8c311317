/**
 * Running the user's command for `lock` and `elect`. The command runs in a process group of its own under a guard
 * process (guard.ts): forwarded signals, the SIGTERM on a lost lock and the SIGKILL after the grace period reach every
 * process the command started, and if concord dies, even by SIGKILL, the guard kills the group. Nothing is released
 * before the whole group is gone.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { signalExitCode } from './context.js';
import type { GuardReport, GuardRequest } from './guard-protocol.js';
import { CliError, EXIT, note } from './output.js';
import { endGroup } from './process-group.js';

export interface ChildExit {
  /** The exit code a shell would report: the command's code, or 128 + the signal number. */
  readonly code: number;
  readonly signal: NodeJS.Signals | null;
}

export interface StopOptions {
  /** How long the group has after the first signal before SIGKILL. */
  readonly graceMs: number;
  /** The first signal; null when the group already got one (a forwarded SIGINT). Default SIGTERM. */
  readonly first?: NodeJS.Signals | null;
}

const FORWARDED: readonly NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP'];

/** The guard's command line: its compiled file, or its source through tsx when concord runs from the sources. */
function guardArgs(): string[] {
  if (import.meta.url.endsWith('.ts')) {
    return ['--import', import.meta.resolve('tsx/esm'), fileURLToPath(new URL('./guard.ts', import.meta.url))];
  }
  return [fileURLToPath(new URL('./guard.js', import.meta.url))];
}

function startError(file: string, report: Extract<GuardReport, { type: 'error' }>): CliError {
  const problem = report.code === 'ENOENT' ? 'command not found' : report.code === 'EACCES' ? 'permission denied' : report.message;
  return new CliError(`cannot run ${JSON.stringify(file)}: ${problem}`, report.code === 'ENOENT' ? EXIT.notFound : 126);
}

export class Child {
  readonly #guard: ChildProcess;
  readonly #guardExited: Promise<void>;
  readonly #started: Promise<number>;
  #pgid = 0;
  readonly exited: Promise<ChildExit>;
  #exit: ChildExit | undefined;
  #onExit: (exit: ChildExit) => void = () => undefined;
  #onStopped: () => void = () => undefined;
  readonly #groupGone: Promise<void>;
  #stopping: Promise<ChildExit> | undefined;
  #closing = false;
  readonly #forward = (signal: NodeJS.Signals): void => {
    this.kill(signal);
  };

  private constructor(file: string, guard: ChildProcess) {
    this.#guard = guard;
    this.#guardExited = new Promise<void>((resolve) => {
      guard.once('exit', () => {
        resolve();
      });
    });
    this.exited = new Promise<ChildExit>((resolve) => {
      this.#onExit = resolve;
    }).then((exit) => {
      this.#exit = exit;
      for (const signal of FORWARDED) process.off(signal, this.#forward);
      return exit;
    });
    this.#groupGone = new Promise<void>((resolve) => {
      this.#onStopped = resolve;
    });
    // One listener from the start: reports can arrive together in one read, and none may be missed.
    this.#started = new Promise<number>((resolve, reject) => {
      guard.on('message', (report: GuardReport) => {
        if (report.type === 'spawned') {
          this.#pgid = report.pid;
          resolve(report.pid);
        } else if (report.type === 'error') {
          reject(startError(file, report));
        } else if (report.type === 'exit') {
          this.#onExit({ code: report.signal ? signalExitCode(report.signal) : (report.code ?? EXIT.failure), signal: report.signal });
        } else {
          this.#onStopped();
        }
      });
      guard.on('error', (error) => {
        reject(new CliError(`cannot start the guard process: ${error.message}`));
      });
      void this.#guardExited.then(() => {
        reject(new CliError('the guard process exited before it started the command'));
        return this.#guardLost();
      });
    });
  }

  /** Starts `argv` under a guard and resolves once it runs; a command that cannot start is a CliError (127 or 126). */
  static async start(argv: readonly string[], env: Record<string, string>): Promise<Child> {
    const [file] = argv;
    if (file === undefined) throw new CliError('missing the command to run', EXIT.usage);
    // The guard leads a session of its own, so that a signal to concord's process group (a shell's kill %1) cannot
    // take it down together with concord.
    const guard = spawn(process.execPath, [...guardArgs(), '--', ...argv], {
      stdio: ['inherit', 'inherit', 'inherit', 'ipc'],
      detached: true,
      env: { ...process.env, ...env },
    });
    const child = new Child(file, guard);
    await child.#started;
    for (const signal of FORWARDED) process.on(signal, child.#forward);
    return child;
  }

  /** The command's pid, which is also its process group's id. */
  get pid(): number {
    return this.#pgid;
  }

  /** Whether the command's own process still runs (others of its group may outlive it; stop() ends them). */
  get running(): boolean {
    return this.#exit === undefined;
  }

  /** Sends `signal` to every process of the command's group. */
  kill(signal: NodeJS.Signals): void {
    if (this.#stopping === undefined) this.#send({ type: 'signal', signal });
  }

  /**
   * Ends every process of the command's group: `first` (SIGTERM), then SIGKILL after `graceMs`. Resolves with the
   * command's exit once no process of the group is left and the guard is gone. Once the command has exited by
   * itself, this ends what it left behind (background jobs).
   */
  stop(options: StopOptions): Promise<ChildExit> {
    this.#stopping ??= (async () => {
      this.#send({ type: 'stop', graceMs: options.graceMs, first: options.first === undefined ? 'SIGTERM' : options.first });
      await this.#groupGone;
      const exit = await this.exited;
      this.#closing = true;
      if (this.#guard.connected) this.#guard.disconnect();
      await this.#guardExited;
      return exit;
    })();
    return this.#stopping;
  }

  #send(request: GuardRequest): void {
    if (this.#guard.connected) this.#guard.send(request, () => undefined);
  }

  /** The guard ended without being told to: concord is alive, so it ends the command's group itself. */
  async #guardLost(): Promise<void> {
    if (this.#closing) return;
    this.#closing = true;
    if (this.#pgid !== 0) {
      note(`the guard process of the command (pid ${this.#pgid}) ended unexpectedly; killing the command`);
      await endGroup(this.#pgid, { graceMs: 0, first: 'SIGKILL' });
    }
    this.#onExit({ code: EXIT.failure, signal: null });
    this.#onStopped();
  }
}
