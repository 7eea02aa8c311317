/**
 * Holds a lock and writes to a shared log every 2 ms while the signal it stored right after acquiring says the lock
 * is held, as `refresh({ signal: held.signal })` would. Each line is `member hrtime`, the time read just before the
 * look at the signal (CLOCK_MONOTONIC, comparable across processes): a pause that lands between that look and its
 * write delays the write, not the time written. Prints {acquired} once it holds the lock and {lost: code} once the
 * stored signal says it lost it.
 * Args: url member ttlMs lockName logFile
 */
import { appendFileSync } from 'node:fs';
import { connect, type ConcordError } from '../../../src/index.js';

const [url = '', member = '', ttl = '600', name = 'L', log = ''] = process.argv.slice(2);
const say = (message: Record<string, unknown>): void => {
  process.stdout.write(`${JSON.stringify(message)}\n`);
};

const coordinator = await connect(url, { member, sessionTtlMs: Number(ttl) });
const held = await coordinator.lock(name).acquire();
const signal = held.signal;
appendFileSync(log, `${member} ${String(process.hrtime.bigint())}\n`);
say({ acquired: member, token: held.token.toString() });
const timer = setInterval(() => {
  // Read before the look: a pause landing between the look and this reading would date a look made before the pause
  // after it (a preempted process stops exactly there, on a loaded machine).
  const lookedAt = process.hrtime.bigint();
  if (!signal.aborted) {
    appendFileSync(log, `${member} ${String(lookedAt)}\n`);
    return;
  }
  clearInterval(timer);
  say({ lost: (signal.reason as ConcordError).code });
  void coordinator.close();
}, 2);
