/** The demo's worker processes: started through the concord launcher, spoken to over IPC, killed, and finished. */
import { fork, type ChildProcess } from 'node:child_process';
import { launcherPath } from '../context.js';
import { isFromWorker, type FromWorker, type ToWorker } from './protocol.js';

/** stopped: ended by an interrupt (Ctrl-C) before the job was done. */
export type WorkerStatus = 'starting' | 'running' | 'killed' | 'finished' | 'failed' | 'stopped';

export type TaskMessage = Extract<FromWorker, { type: 'peek' | 'claim' | 'done' }>;

export interface DemoWorker {
  readonly name: string;
  readonly member: string;
  readonly process: ChildProcess;
  status: WorkerStatus;
  /** The task it has claimed and not yet reported. */
  current: number | undefined;
  failure: string | undefined;
  /** The end of what it wrote on stderr, for a failure's reason. */
  stderr: string;
  ready: boolean;
}

export interface FleetOptions {
  readonly count: number;
  /** Members are `${group}-worker-N`. */
  readonly group: string;
  /** Arguments of every `concord demo-worker`, besides its --member. */
  readonly args: readonly string[];
  /** Aborted by an interrupt: a worker that exits then was stopped, not failed. */
  readonly interrupted: AbortSignal;
  /** A worker asks about a task. */
  readonly onTask: (worker: DemoWorker, message: TaskMessage) => void;
  /** A worker became ready or exited; `failure` says why one failed. */
  readonly onChange: (worker: DemoWorker, failure?: string) => void;
  /** The Node binary the workers run on; default this process's. */
  readonly execPath?: string;
}

/** How long workers have to leave cleanly once told the job is finished, before SIGKILL. */
const FINISH_MS = 10_000;

export class Fleet {
  readonly workers: DemoWorker[] = [];
  readonly #byMember = new Map<string, DemoWorker>();
  #finishing = false;

  constructor(options: FleetOptions) {
    const launcher = launcherPath();
    // Workers run the same code as this process: the sources when it runs from them, even if a build exists.
    const env = import.meta.url.endsWith('.ts') ? { ...process.env, CONCORD_CLI_SOURCE: '1' } : process.env;
    const execPath = options.execPath ?? process.execPath;
    for (let index = 1; index <= options.count; index++) {
      const name = `worker-${index}`;
      const member = `${options.group}-${name}`;
      const child = fork(launcher, ['demo-worker', ...options.args, '--member', member], {
        stdio: ['ignore', 'ignore', process.env.CONCORD_DEMO_WORKER_STDERR === '1' ? 'inherit' : 'pipe', 'ipc'],
        execArgv: [],
        execPath,
        env,
      });
      const worker: DemoWorker = {
        name,
        member,
        process: child,
        status: 'starting',
        current: undefined,
        failure: undefined,
        stderr: '',
        ready: false,
      };
      this.workers.push(worker);
      this.#byMember.set(member, worker);
      child.stderr?.setEncoding('utf8');
      child.stderr?.on('data', (chunk: string) => {
        worker.stderr = (worker.stderr + chunk).slice(-2000);
      });
      child.on('message', (message: unknown) => {
        if (!isFromWorker(message)) return;
        if (message.type === 'ready') {
          worker.ready = true;
          options.onChange(worker);
        } else if (message.type === 'fail') {
          worker.failure = message.message;
        } else {
          options.onTask(worker, message);
        }
      });
      child.on('error', (error: NodeJS.ErrnoException) => {
        if (child.pid !== undefined) {
          worker.failure ??= error.message;
          return;
        }
        // The process never started (Node's binary missing or not executable): no exit event will come.
        worker.status = 'failed';
        worker.failure = `cannot start ${execPath}: ${spawnProblem(error)}`;
        options.onChange(worker, worker.failure);
      });
      child.on('exit', (code, signal) => {
        let failure: string | undefined;
        if (worker.status !== 'killed') {
          if (this.#finishing && code === 0) worker.status = 'finished';
          else if (options.interrupted.aborted) worker.status = 'stopped';
          else {
            worker.status = 'failed';
            failure = worker.failure ?? lastLine(worker.stderr) ?? (signal ? `killed by ${signal}` : `exit code ${code ?? '?'}`);
            worker.failure = failure;
          }
        }
        worker.current = undefined;
        options.onChange(worker, failure);
      });
    }
  }

  byMember(member: string): DemoWorker | undefined {
    return this.#byMember.get(member);
  }

  running(): DemoWorker[] {
    return this.workers.filter((worker) => worker.status === 'running');
  }

  send(worker: DemoWorker, message: ToWorker): void {
    if (worker.process.connected) worker.process.send(message, () => undefined);
  }

  /** Every worker still starting begins, told who the others are; returns their members. */
  start(): string[] {
    const starting = this.workers.filter((worker) => worker.status === 'starting');
    const members = starting.map((worker) => worker.member);
    for (const worker of starting) {
      worker.status = 'running';
      this.send(worker, { type: 'start', members });
    }
    return members;
  }

  kill(worker: DemoWorker): void {
    worker.status = 'killed';
    worker.process.kill('SIGKILL');
  }

  /** Tells every worker the job is finished and resolves once all have exited; any that will not go is killed. */
  async finish(): Promise<void> {
    this.#finishing = true;
    for (const worker of this.workers) this.send(worker, { type: 'finish' });
    const exited = this.workers.map((worker) =>
      exitedAlready(worker)
        ? Promise.resolve()
        : new Promise<void>((resolve) =>
            worker.process.once('exit', () => {
              resolve();
            }),
          ),
    );
    const force = setTimeout(() => {
      this.#killAll();
    }, FINISH_MS);
    await Promise.all(exited);
    clearTimeout(force);
  }

  /** Kills whatever still runs (the demo is ending early). */
  close(): void {
    this.#killAll();
    this.#finishing = true;
  }

  #killAll(): void {
    for (const worker of this.workers) if (!exitedAlready(worker)) worker.process.kill('SIGKILL');
  }
}

/** Exited, or never started. */
function exitedAlready(worker: DemoWorker): boolean {
  return worker.process.exitCode !== null || worker.process.signalCode !== null || worker.process.pid === undefined;
}

function spawnProblem(error: NodeJS.ErrnoException): string {
  if (error.code === 'ENOENT') return 'no such file';
  if (error.code === 'EACCES') return 'permission denied';
  return error.message;
}

function lastLine(text: string): string | undefined {
  const lines = text
    .split('\n')
    .map((line) => line.trim())
    .filter((line) => line !== '');
  return lines[lines.length - 1];
}
