/**
 * Child process for the Redis connect tests: only calls connect(), reports the outcome as one JSON line, and then
 * leaves the event loop alone, so the process exits by itself once nothing keeps it alive.
 *   argv: URL CONNECT_TIMEOUT_MS
 *   out:  {"connected": true, "ms": n} or {"code": "ERR_...", "message": "...", "ms": n}; exit code 0, or 3 from the catch
 */
import { ConcordError, connect } from '../../../src/index.js';

const [url, timeout] = process.argv.slice(2);
if (url === undefined || timeout === undefined) throw new Error('usage: connect-child URL CONNECT_TIMEOUT_MS');
const startedAt = performance.now();
const elapsed = (): number => Math.round(performance.now() - startedAt);
try {
  const coordinator = await connect(url, { member: 'connect-child', namespace: 'connect', connectTimeoutMs: Number(timeout) });
  process.stdout.write(`${JSON.stringify({ connected: true, ms: elapsed() })}\n`);
  await coordinator.close();
} catch (error) {
  const code = error instanceof ConcordError ? error.code : 'not a ConcordError';
  process.stdout.write(`${JSON.stringify({ code, message: (error as Error).message, ms: elapsed() })}\n`);
  process.exitCode = 3;
}
