/**
 * concord demo-worker (internal): one worker process of `concord demo`. Joins the demo's group through a partitioner,
 * and processes the tasks whose keys it owns, each under the task's lock, until the parent says the job is finished.
 */
import { createHash } from 'node:crypto';
import { debug } from '../../debug.js';
import type { Coordinator, HeldLock, Partitioner } from '../../types.js';
import type { CommandSpec, Parsed } from '../args.js';
import { BACKEND_OPTIONS, open, type Context } from '../context.js';
import { isToWorker, taskKey, taskLock, type FromWorker, type ToWorker } from './protocol.js';
import { CliError, EXIT } from '../output.js';

export const spec: CommandSpec = {
  name: 'demo-worker',
  summary: 'One worker process of concord demo (started by concord demo).',
  hidden: true,
  positionals: [],
  options: [
    { name: 'group', type: 'string', value: 'NAME', description: 'the demo group' },
    { name: 'tasks', type: 'integer', value: 'N', min: 1, description: 'number of tasks' },
    { name: 'work-ms', type: 'integer', value: 'MS', min: 0, default: 20, description: 'average CPU time per task' },
    { name: 'algorithm', type: 'string', value: 'NAME', default: 'rendezvous', description: 'placement algorithm' },
    {
      name: 'unsafe-no-locks',
      type: 'boolean',
      description: 'skip the task locks, the partition and the completion check (a negative control)',
    },
    ...BACKEND_OPTIONS,
  ],
  examples: [],
};

/** The task's CPU job: hashing for between 0.5x and 1.5x the average time, depending on the key. */
function work(key: string, averageMs: number): string {
  let digest = createHash('sha256').update(key).digest();
  const end = performance.now() + averageMs * (0.5 + (digest[0] ?? 0) / 255);
  do {
    for (let i = 0; i < 50; i++) digest = createHash('sha256').update(digest).digest();
  } while (performance.now() < end);
  return digest.toString('hex').slice(0, 16);
}

class Parent {
  readonly #pending = new Map<number, { resolve: (message: ToWorker) => void; reject: (error: Error) => void }>();
  #next = 1;
  #listeners: Array<(message: ToWorker) => void> = [];

  constructor() {
    process.on('message', (message: unknown) => {
      if (!isToWorker(message)) return;
      if (message.type === 'claimed' || message.type === 'recorded') {
        const pending = this.#pending.get(message.id);
        this.#pending.delete(message.id);
        pending?.resolve(message);
        return;
      }
      for (const listener of this.#listeners) listener(message);
    });
    process.on('disconnect', () => {
      for (const pending of this.#pending.values()) pending.reject(new CliError('the demo has gone away'));
      this.#pending.clear();
    });
  }

  on(listener: (message: ToWorker) => void): void {
    this.#listeners.push(listener);
  }

  send(message: FromWorker): void {
    if (process.connected) process.send?.(message);
  }

  request(message: (id: number) => FromWorker): Promise<ToWorker> {
    const id = this.#next++;
    return new Promise((resolve, reject) => {
      if (!process.connected) {
        reject(new CliError('the demo has gone away'));
        return;
      }
      this.#pending.set(id, { resolve, reject });
      process.send?.(message(id));
    });
  }
}

export async function run(args: Parsed, context: Context): Promise<number> {
  if (!process.send) throw new CliError('demo-worker is started by concord demo, not by hand', EXIT.usage);
  const group = args.string('group');
  const tasks = args.integer('tasks');
  if (group === undefined || tasks === undefined) throw new CliError('demo-worker needs --group and --tasks', EXIT.usage);
  const workMs = args.integer('work-ms') ?? 20;
  const algorithm = args.string('algorithm') ?? 'rendezvous';
  const unsafe = args.flag('unsafe-no-locks');
  if (algorithm !== 'rendezvous' && algorithm !== 'ring' && algorithm !== 'tooz')
    throw new CliError(`unknown algorithm ${algorithm}`, EXIT.usage);

  const parent = new Parent();
  const stop = new AbortController();
  const onStop = (): void => {
    stop.abort();
    wake();
  };
  let wakeUp: (() => void) | undefined;
  const wake = (): void => {
    const resolve = wakeUp;
    wakeUp = undefined;
    resolve?.();
  };
  // Woken by a change of membership or a message; the timer is only a backstop.
  const sleepUntilWoken = (): Promise<void> =>
    new Promise((resolve) => {
      const timer = setTimeout(wake, 250);
      wakeUp = () => {
        clearTimeout(timer);
        resolve();
      };
    });
  let members: readonly string[] | undefined;
  parent.on((message) => {
    if (message.type === 'start') members = message.members;
    if (message.type === 'finish') onStop();
    wake();
  });
  process.on('disconnect', onStop);
  context.interrupted.addEventListener('abort', onStop);

  let coordinator: Coordinator | undefined;
  let partitioner: Partitioner | undefined;
  try {
    coordinator = await open(args, context);
    partitioner = await coordinator.group(group).partitioner({ algorithm });
    const changes = partitioner.changes();
    void (async () => {
      for await (const _change of changes) wake();
    })().catch(() => undefined);
    parent.send({ type: 'ready', member: coordinator.member, pid: process.pid, scope: coordinator.features.scope });

    // Start together, each worker seeing every other, so no one grabs keys that are only briefly its own. The locks
    // keep the tasks safe regardless: after a while, go ahead with the view we have.
    let seeAll = Infinity;
    while (
      !stop.signal.aborted &&
      performance.now() < seeAll &&
      (members === undefined || !members.every((member) => partitioner?.members().includes(member)))
    ) {
      if (members !== undefined && seeAll === Infinity) seeAll = performance.now() + 5000;
      await sleepUntilWoken();
    }
    debug('demo worker: members %j', partitioner.members());

    debug('demo worker: started');
    const done = new Set<number>();
    while (!stop.signal.aborted) {
      let next: number | undefined;
      for (let task = 1; task <= tasks; task++) {
        if (!done.has(task) && (unsafe || partitioner.isMine(taskKey(task)))) {
          next = task;
          break;
        }
      }
      if (next === undefined) {
        await sleepUntilWoken();
        continue;
      }
      if (unsafe) {
        // No lock, no question to the ledger, no owner: every worker runs every task, so the check must see doubles
        // (with views that agree at once, trusting the partition alone could hide them).
        debug('demo worker: unsafe task %d with view %j', next, partitioner.members());
        const digest = work(taskKey(next), workMs);
        await parent.request((id) => ({ type: 'done', id, task: next, token: '0', digest }));
        done.add(next);
        continue;
      }
      await runTask(coordinator, partitioner, parent, group, next, done, { workMs, signal: stop.signal });
    }
    return EXIT.ok;
  } catch (error) {
    // Told to stop (finished, interrupted, or the demo went away) while a call was under way.
    if (stop.signal.aborted) return EXIT.ok;
    parent.send({ type: 'fail', message: error instanceof Error ? error.message : String(error) });
    throw error;
  } finally {
    await partitioner?.close().catch(() => undefined);
    await coordinator?.close();
    if (process.connected) process.disconnect();
  }
}

async function runTask(
  coordinator: Coordinator,
  partitioner: Partitioner,
  parent: Parent,
  group: string,
  task: number,
  done: Set<number>,
  options: { workMs: number; signal: AbortSignal },
): Promise<void> {
  const peek = await parent.request((id) => ({ type: 'peek', id, task }));
  if (peek.type === 'claimed' && peek.done) {
    done.add(task);
    return;
  }
  let held: HeldLock;
  debug('demo worker: task %d', task);
  try {
    held = await coordinator.lock(taskLock(group, task)).acquire({ signal: options.signal });
  } catch (error) {
    if (options.signal.aborted) return;
    throw error;
  }
  try {
    // The key may have moved while we waited: its new owner does it.
    if (!partitioner.isMine(taskKey(task))) return;
    const token = held.token.toString();
    debug('demo worker: task %d locked', task);
    const claim = await parent.request((id) => ({ type: 'claim', id, task, token }));
    if (claim.type === 'claimed' && claim.done) {
      done.add(task);
      return;
    }
    const digest = work(taskKey(task), options.workMs);
    // Lost the lock meanwhile: the result is not ours to record; the next holder redoes the task.
    if (held.signal.aborted) return;
    await parent.request((id) => ({ type: 'done', id, task, token, digest }));
    done.add(task);
  } finally {
    await held.release();
  }
}
