/**
 * Holds a lock and writes to a shared log every 2 ms while the signal it stored right after acquiring says the lock
 * is held, as `refresh({ signal: held.signal })` would. Each line is `member hrtime`, the time read right after the
 * signal said held (CLOCK_MONOTONIC, comparable across processes): a pause that lands between that look and its write
 * delays the write, not the look. Prints {acquired} once it holds the lock and {lost: code}
 * once the stored signal says it lost it.
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
  if (!signal.aborted) {
    const lookedAt = process.hrtime.bigint();
    appendFileSync(log, `${member} ${String(lookedAt)}\n`);
    return;
  }
  clearInterval(timer);
  say({ lost: (signal.reason as ConcordError).code });
  void coordinator.close();
}, 2);
