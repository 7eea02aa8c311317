/**
 * Takes one lock and holds it, reporting on stdout (one JSON object a line): {acquired, token}; then, if the lock is
 * lost, {lost: code, at, lastHeldLook} as soon as this process notices (it looks every 5 ms, and the signal getter itself checks
 * the session); then {released} once its release call returned. With a group name, joins that group first.
 * Args: url member ttlMs lockName [group]
 */
import { connect, type ConcordError } from '../../src/index.js';

const [url = '', member = '', ttl = '1000', name = 'l', group] = process.argv.slice(2);
const say = (message: Record<string, unknown>): void => {
  process.stdout.write(`${JSON.stringify(message)}\n`);
};

const coordinator = await connect(url, { member, sessionTtlMs: Number(ttl) });
if (group !== undefined) await coordinator.group(group).join({ create: true });
const held = await coordinator.lock(name).acquire();
say({ acquired: member, token: held.token.toString() });

// The last look that still found the lock held (process.hrtime, shared by the processes of the host): after a
// SIGSTOP past the TTL, it must be from before the SIGCONT — the first look after resuming finds the lock lost.
let lastHeldLook = process.hrtime.bigint();
const timer = setInterval(() => {
  if (!held.signal.aborted) {
    lastHeldLook = process.hrtime.bigint();
    return;
  }
  clearInterval(timer);
  say({ lost: (held.signal.reason as ConcordError).code, at: process.hrtime.bigint().toString(), lastHeldLook: lastHeldLook.toString() });
  void (async () => {
    await held.release();
    say({ released: member });
    await coordinator.close();
  })();
}, 5);
