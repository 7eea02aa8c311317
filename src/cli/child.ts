/** Running the user's command for `lock` and `elect`: inherited stdio, forwarded signals, a graceful stop. */
import { spawn, type ChildProcess } from 'node:child_process';
import { CliError, EXIT } from './output.js';
import { signalExitCode } from './context.js';

export interface ChildExit {
  /** The exit code a shell would report: the command's code, or 128 + the signal number. */
  readonly code: number;
  readonly signal: NodeJS.Signals | null;
}

const FORWARDED: readonly NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP'];

export class Child {
  readonly #process: ChildProcess;
  readonly exited: Promise<ChildExit>;
  readonly #forward: (signal: NodeJS.Signals) => void;
  #exit: ChildExit | undefined;

  private constructor(process: ChildProcess, exited: Promise<ChildExit>) {
    this.#process = process;
    this.exited = exited.then((exit) => {
      this.#exit = exit;
      this.#unforward();
      return exit;
    });
    this.#forward = (signal) => {
      this.kill(signal);
    };
  }

  /** Starts `argv` and resolves once it runs; a command that cannot start is a CliError (exit 127 or 126). */
  static async start(argv: readonly string[], env: Record<string, string>): Promise<Child> {
    const [file, ...rest] = argv;
    if (file === undefined) throw new CliError('missing the command to run', EXIT.usage);
    const child = spawn(file, rest, { stdio: 'inherit', env: { ...process.env, ...env } });
    const exited = new Promise<ChildExit>((resolve) => {
      child.once('exit', (code, signal) => {
        resolve({ code: signal ? signalExitCode(signal) : (code ?? EXIT.failure), signal });
      });
    });
    await new Promise<void>((resolve, reject) => {
      child.once('spawn', resolve);
      child.once('error', (error: NodeJS.ErrnoException) => {
        const problem = error.code === 'ENOENT' ? 'command not found' : error.code === 'EACCES' ? 'permission denied' : error.message;
        reject(new CliError(`cannot run ${JSON.stringify(file)}: ${problem}`, error.code === 'ENOENT' ? EXIT.notFound : 126));
      });
    });
    // Later errors (a signal that cannot be delivered) change nothing: the exit event tells the outcome.
    child.on('error', () => undefined);
    const started = new Child(child, exited);
    for (const signal of FORWARDED) process.on(signal, started.#forward);
    return started;
  }

  get pid(): number | undefined {
    return this.#process.pid;
  }

  get running(): boolean {
    return this.#exit === undefined;
  }

  kill(signal: NodeJS.Signals): void {
    if (this.#exit === undefined) this.#process.kill(signal);
  }

  /** SIGTERM, then SIGKILL if it is still running after `graceMs`. */
  async stop(graceMs: number): Promise<ChildExit> {
    if (this.#exit) return this.#exit;
    this.kill('SIGTERM');
    const timer = setTimeout(() => {
      this.kill('SIGKILL');
    }, graceMs);
    try {
      return await this.exited;
    } finally {
      clearTimeout(timer);
    }
  }

  #unforward(): void {
    for (const signal of FORWARDED) process.off(signal, this.#forward);
  }
}
