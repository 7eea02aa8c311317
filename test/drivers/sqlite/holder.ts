/**
 * Takes one lock and holds it, reporting on stdout (one JSON object a line): {acquired, token, pid}; then, if the lock is
 * lost, {lost: code, at, lastHeldLook} as soon as this process notices (it looks every 5 ms, and the signal getter itself checks
 * the session); then {released} once its release call returned. With a group name, joins that group first.
 * Args: url member ttlMs lockName [group]
 */
import { connect, type ConcordError } from '../../../src/index.js';

const [url = '', member = '', ttl = '1000', name = 'l', group] = process.argv.slice(2);
const say = (message: Record<string, unknown>): void => {
  process.stdout.write(`${JSON.stringify(message)}\n`);
};

const coordinator = await connect(url, { member, sessionTtlMs: Number(ttl) });
if (group !== undefined) await coordinator.group(group).join({ create: true });
const held = await coordinator.lock(name).acquire();
// The last look that still found the lock held (process.hrtime, shared by the processes of the host; stamped
// before looking): after a SIGSTOP past the TTL it must predate the SIGCONT, as the first look after resuming
// finds the lock lost. The first look is here, before the parent hears of the lock and may stop this process.
let lastHeldLook = process.hrtime.bigint();
if (held.signal.aborted) throw new Error('lost at once');
say({ acquired: member, token: held.token.toString(), pid: process.pid });

const timer = setInterval(() => {
  // Stamped before looking: a stop between the two must not date a look from before the stop after the resume.
  const at = process.hrtime.bigint();
  if (!held.signal.aborted) {
    lastHeldLook = at;
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
