/**
 * A process whose only work is connecting: an unreachable or refusing etcd must make connect() settle, whatever else
 * the process has open (here: nothing), and nothing may keep the process alive afterwards.
 *
 *   connect-child URL [CONNECT_TIMEOUT_MS|-] [CLOSE_AFTER_MS]
 *
 * Prints one JSON line, {connected, ms} or {code, message, ms}, and on exit {exit: ms}. Its own catch sets exit code
 * 3, so a process that ends any other way (Node's exit code 13 for an unsettled top-level await) is told apart.
 *
 * With CLOSE_AFTER_MS, etcd3 tries the hosts in a fixed order (the last listed first) and close() is called that long
 * after connecting, then {closed: ms} is printed: a host that failed during connect() is tried again once its circuit
 * breaker lets a call through (after 1 s), so close() meets the failure and retries on another host.
 */
import { createRequire } from 'node:module';
import { connect, type ConcordError } from '../../../src/index.js';

const [url, timeout, closeAfter] = process.argv.slice(2);
if (!url) throw new Error('usage: connect-child URL [CONNECT_TIMEOUT_MS|-] [CLOSE_AFTER_MS]');
const started = performance.now();
const elapsed = (): number => Math.round(performance.now() - started);
const say = (message: Record<string, unknown>): void => {
  process.stdout.write(`${JSON.stringify(message)}\n`);
};
process.on('exit', () => {
  say({ exit: elapsed() });
});
if (closeAfter !== undefined) {
  // etcd3's own switch for its tests: no shuffling of the host list.
  const pool = createRequire(import.meta.url)('etcd3/lib/connection-pool.js') as { ConnectionPool: { deterministicOrder: boolean } };
  pool.ConnectionPool.deterministicOrder = true;
}
try {
  const coordinator = await connect(url, timeout === undefined || timeout === '-' ? {} : { connectTimeoutMs: Number(timeout) });
  say({ connected: true, ms: elapsed() });
  if (closeAfter !== undefined) await new Promise((resolve) => setTimeout(resolve, Number(closeAfter)));
  await coordinator.close();
  if (closeAfter !== undefined) say({ closed: elapsed() });
} catch (error) {
  const { code, message } = error as ConcordError;
  say({ code, message, ms: elapsed() });
  process.exitCode = 3;
}
