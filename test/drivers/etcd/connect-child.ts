/**
 * A process whose only work is connecting: an unreachable or refusing etcd must make connect() settle, whatever else
 * the process has open (here: nothing), and nothing may keep the process alive afterwards.
 *
 *   connect-child URL [CONNECT_TIMEOUT_MS]
 *
 * Prints one JSON line, {connected, ms} or {code, message, ms}, and on exit {exit: ms}. Its own catch sets exit code
 * 3, so a process that ends any other way (Node's exit code 13 for an unsettled top-level await) is told apart.
 */
import { connect, type ConcordError } from '../../../src/index.js';

const [url, timeout] = process.argv.slice(2);
if (!url) throw new Error('usage: connect-child URL [CONNECT_TIMEOUT_MS]');
const started = performance.now();
const elapsed = (): number => Math.round(performance.now() - started);
const say = (message: Record<string, unknown>): void => {
  process.stdout.write(`${JSON.stringify(message)}\n`);
};
process.on('exit', () => {
  say({ exit: elapsed() });
});
try {
  const coordinator = await connect(url, timeout === undefined ? {} : { connectTimeoutMs: Number(timeout) });
  say({ connected: true, ms: elapsed() });
  await coordinator.close();
} catch (error) {
  const { code, message } = error as ConcordError;
  say({ code, message, ms: elapsed() });
  process.exitCode = 3;
}
