/**
 * A child process of the SQLite fault tests, printing one JSON object a line: the tests wait for its messages (never
 * for a fixed time) and kill it when they end.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { deadline } from '../../support/wait.js';

export type Message = Record<string, unknown>;

/** A child process printing one JSON object a line. */
export class Child {
  readonly #proc: ChildProcess;
  readonly #messages: Message[] = [];
  readonly #waiters: Array<() => void> = [];
  readonly exited: Promise<number | null>;
  #exitCode: number | string | null | undefined;
  stderr = '';

  /**
   * `wrapper`: a command that execs the rest (e.g. `unshare -T ...`); `env`: added to this process's environment;
   * `node`: the Node binary to run it on (another Node line than the tests').
   */
  constructor(script: string, args: string[], wrapper: string[] = [], env: Record<string, string> = {}, node = process.execPath) {
    const argv = [...wrapper, node, '--import', 'tsx', script, ...args];
    this.#proc = spawn(argv[0] ?? process.execPath, argv.slice(1), {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, ...env },
    });
    this.#proc.stderr?.on('data', (d: Buffer) => {
      this.stderr += d.toString();
      for (const wake of this.#waiters.splice(0)) wake();
    });
    this.exited = new Promise((resolve) =>
      this.#proc.once('exit', (code, signal) => {
        // Wait for stdout to drain first, so a last message is not mistaken for a missing one.
        const done = (): void => {
          this.#exitCode = code ?? signal;
          for (const wake of this.#waiters.splice(0)) wake();
          resolve(code);
        };
        if (this.#proc.stdout && !this.#proc.stdout.readableEnded) this.#proc.stdout.once('close', done);
        else done();
      }),
    );
    if (this.#proc.stdout) {
      createInterface({ input: this.#proc.stdout }).on('line', (line) => {
        if (line.startsWith('{')) this.#messages.push(JSON.parse(line) as Message);
        for (const wake of this.#waiters.splice(0)) wake();
      });
    }
  }

  get pid(): number {
    return this.#proc.pid ?? -1;
  }

  /** Whether a message carrying `key` has arrived. */
  has(key: string): boolean {
    return this.#messages.some((m) => key in m);
  }

  /** Waits until the child's stderr (with NODE_DEBUG=concord: its trace) has said something matching `pattern`. */
  said(pattern: RegExp, what: string, ms = 60_000): Promise<void> {
    return deadline(
      new Promise<void>((resolve, reject) => {
        const check = (): void => {
          if (pattern.test(this.stderr)) resolve();
          else if (this.#exitCode !== undefined) reject(new Error(`the child exited (${String(this.#exitCode)}) before ${what}`));
          else this.#waiters.push(check);
        };
        check();
      }),
      ms,
      what,
    );
  }

  /** The first message carrying `key`; waits for it, and fails if the child exits without sending it. */
  message(key: string, what: string, ms = 60_000): Promise<Message> {
    const find = (): Message | undefined => this.#messages.find((m) => key in m);
    return deadline(
      new Promise<Message>((resolve, reject) => {
        const check = (): void => {
          const hit = find();
          if (hit) resolve(hit);
          else if (this.#exitCode !== undefined)
            reject(new Error(`the child exited (${String(this.#exitCode)}) before ${what}: ${this.stderr.slice(-800)}`));
          else this.#waiters.push(check);
        };
        check();
      }),
      ms,
      `${what} (stderr: ${this.stderr.slice(-800)})`,
    );
  }

  signal(signal: NodeJS.Signals): void {
    process.kill(this.pid, signal);
  }

  async kill(): Promise<void> {
    if (this.#proc.exitCode === null && this.#proc.signalCode === null) {
      this.#proc.kill('SIGCONT');
      this.#proc.kill('SIGKILL');
    }
    await this.exited;
  }
}
