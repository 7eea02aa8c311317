/** A child process (tsx) speaking JSON lines on stdout and taking commands on stdin, for multi-process fault tests. */
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { createInterface } from 'node:readline';
import { deadline } from './wait.js';

export type Message = Record<string, unknown>;

export class Child {
  readonly process: ChildProcessWithoutNullStreams;
  readonly messages: Message[] = [];
  readonly exited: Promise<number | null>;
  #waiters: Array<{ accept: (m: Message) => boolean; resolve: (m: Message) => void }> = [];
  #stderr = '';

  constructor(script: string, args: readonly string[]) {
    this.process = spawn(process.execPath, ['--import', 'tsx', script, ...args], { stdio: ['pipe', 'pipe', 'pipe'] });
    this.process.stderr.on('data', (d: Buffer) => (this.#stderr += d.toString()));
    createInterface({ input: this.process.stdout }).on('line', (line) => {
      let message: Message;
      try {
        message = JSON.parse(line) as Message;
      } catch {
        return;
      }
      this.messages.push(message);
      this.#waiters = this.#waiters.filter((w) => {
        if (!w.accept(message)) return true;
        w.resolve(message);
        return false;
      });
    });
    this.exited = new Promise((resolve) => this.process.on('exit', resolve));
  }

  /** The first message (already received or still to come) that `accept` takes. */
  next(accept: (m: Message) => boolean, what: string, ms = 30_000): Promise<Message> {
    const seen = this.messages.find(accept);
    if (seen) return Promise.resolve(seen);
    return deadline(
      new Promise<Message>((resolve) => this.#waiters.push({ accept, resolve })),
      ms,
      `${what} (child stderr: ${this.#stderr.slice(-2000)})`,
    );
  }

  send(line: string): void {
    this.process.stdin.write(`${line}\n`);
  }

  /** SIGCONT then SIGKILL unless it has exited; resolves once it has. */
  async kill(): Promise<void> {
    if (this.process.exitCode === null && this.process.signalCode === null) {
      this.process.kill('SIGCONT');
      this.process.kill('SIGKILL');
    }
    await this.exited;
  }
}
