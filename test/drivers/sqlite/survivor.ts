/**
 * Joins a group, takes a lock and holds it; lives on after losing it. Reports on stdout (one JSON object a line):
 * {acquired, token, pid}; {lost: code, at} the moment the held lock's signal aborts (`at`: process.hrtime, shared by
 * the processes of the host); {sessionLost, at} when the coordinator reports `lost`; {restored, session} once a new
 * session is up. On SIGUSR1 it takes the lock again and reports {reacquired, token} (or {reacquireFailed: code}). On
 * SIGTERM it releases what it holds, closes and reports {closed}. Args: url member ttlMs lockName group
 */
import { connect, type ConcordError, type HeldLock } from '../../../src/index.js';

const [url = '', member = '', ttl = '3000', name = 'l', group = 'g'] = process.argv.slice(2);
const say = (message: Record<string, unknown>): void => {
  process.stdout.write(`${JSON.stringify(message)}\n`);
};
const hrtime = (): string => process.hrtime.bigint().toString();

const coordinator = await connect(url, { member, sessionTtlMs: Number(ttl) });
const stopping = new AbortController();
let held: HeldLock | undefined;

coordinator.on('lost', () => {
  say({ sessionLost: member, at: hrtime() });
});
coordinator.on('restored', () => {
  say({ restored: member, session: coordinator.session.id });
});
process.on('SIGUSR1', () => {
  void coordinator
    .lock(name)
    .acquire({ signal: stopping.signal })
    .then(
      (again) => {
        held = again;
        say({ reacquired: member, token: again.token.toString() });
      },
      (error: unknown) => {
        if (!stopping.signal.aborted) say({ reacquireFailed: (error as ConcordError).code });
      },
    );
});

await coordinator.group(group).join({ create: true });
held = await coordinator.lock(name).acquire();
const first = held;
first.signal.addEventListener('abort', () => {
  say({ lost: (first.signal.reason as ConcordError).code, at: hrtime() });
});
say({ acquired: member, token: held.token.toString(), pid: process.pid });

// Nothing else keeps a process whose only handles are unreferenced timers alive until SIGTERM.
const keepAlive = setInterval(() => undefined, 60_000);
process.once('SIGTERM', () => {
  stopping.abort();
  clearInterval(keepAlive);
  void (async () => {
    await held?.release().catch(() => undefined);
    await coordinator.close();
    say({ closed: member });
  })();
});
