/**
 * Child process for the Redis fault tests: acquires one lock COUNT times and prints its holding intervals as one
 * JSON line, times from process.hrtime.bigint() (CLOCK_MONOTONIC, comparable across the processes of one host).
 *   argv: URL NAMESPACE MEMBER COUNT LOCK
 */
import { connect } from '../../../src/index.js';

const [url, namespace, member, count, lock] = process.argv.slice(2);
if (url === undefined || namespace === undefined || member === undefined || count === undefined || lock === undefined) {
  throw new Error('usage: contender URL NAMESPACE MEMBER COUNT LOCK');
}
const coordinator = await connect(url, { namespace, member, sessionTtlMs: 5000 });
const intervals: Array<{ client: string; token: string; start: string; end: string }> = [];
// Start together: the parent releases every child at once through stdin.
process.stdout.write('ready\n');
await new Promise<void>((resolve) => process.stdin.once('data', () => resolve()));
for (let i = 0; i < Number(count); i++) {
  const held = await coordinator.lock(lock).acquire();
  const start = process.hrtime.bigint();
  // Hold across an event-loop turn, so an overlap would have time to show.
  await new Promise((resolve) => setImmediate(resolve));
  const end = process.hrtime.bigint();
  intervals.push({ client: member, token: held.token.toString(), start: start.toString(), end: end.toString() });
  await held.release();
}
process.stdout.write(`${JSON.stringify(intervals)}\n`);
process.stdin.destroy();
await coordinator.close();
