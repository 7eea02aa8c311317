/**
 * The guard: a small process between `concord lock`/`elect` and the command they run. It starts the command in a
 * session (and so a process group) of its own, signals that whole group when concord asks, and, when concord dies in
 * any way (SIGKILL and the OOM killer included), SIGKILLs the group at once: the kernel closes concord's end of the
 * IPC channel as the process dies, which the guard reads as end-of-file. The guard runs in a session of its own too,
 * so a signal to concord's process group does not reach it, and it ignores the signals it can, so only concord (or
 * concord's death) ends it.
 *
 * Started as `node guard.js -- CMD [ARGS...]` with an IPC channel; never by a user.
 */
import { spawn } from 'node:child_process';
import type { GuardReport, GuardRequest } from './guard-protocol.js';
import { endGroup, signalGroup } from './process-group.js';

function report(message: GuardReport): void {
  if (process.connected) process.send?.(message);
}

function main(): void {
  if (!process.send) {
    process.stderr.write('concord: the guard is started by concord lock and concord elect, not by hand\n');
    process.exit(2);
  }
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.on(signal, () => undefined);
  const argv = process.argv.slice(process.argv.indexOf('--') + 1);
  const [file = '', ...args] = argv;

  // detached: setsid(2), so the command leads a new session and process group whose id is its pid.
  const command = spawn(file, args, { stdio: 'inherit', detached: true });
  const pgid = command.pid;
  let gone = false;
  let stopping: Promise<void> | undefined;
  const exited = new Promise<void>((resolve) => {
    command.once('exit', (code, signal) => {
      report({ type: 'exit', code, signal });
      resolve();
    });
  });

  // Registered right after spawn(), which forks synchronously: there is no moment with a command and no watch.
  process.on('disconnect', () => {
    if (pgid !== undefined && !gone) signalGroup(pgid, 'SIGKILL');
    process.exit(0);
  });

  if (pgid === undefined) {
    command.once('error', (error: NodeJS.ErrnoException) => {
      report({ type: 'error', code: error.code ?? '', message: error.message });
      process.exit(0);
    });
    return;
  }
  // Later errors (a signal that cannot be delivered) change nothing: the exit event tells the outcome.
  command.on('error', () => undefined);
  report({ type: 'spawned', pid: pgid });

  process.on('message', (request: GuardRequest) => {
    if (gone) return;
    if (request.type === 'signal') {
      signalGroup(pgid, request.signal);
      return;
    }
    stopping ??= (async () => {
      await endGroup(pgid, {
        graceMs: request.graceMs,
        first: request.first,
        slow: (pids) => {
          process.stderr.write(`concord: processes ${pids.join(', ')} of the command outlived SIGKILL; waiting for them\n`);
        },
      });
      await exited;
      gone = true;
      report({ type: 'stopped' });
    })();
  });
}

main();
