/**
 * Child process for the Redis fault tests: holds one lock and reports, one JSON object per stdout line.
 *   argv: URL NAMESPACE MEMBER TTL_MS LOCK
 *   out:  {"held": token} once acquired; {"lost": code} when the lock's signal aborts;
 *         {"touched": aborted, "code": reason code} after a `touch` command; {"released": true} after `release`.
 *   in:   `touch` (reads held.signal, as a holder does before using the resource), `release`, `exit`.
 */
import { createInterface } from 'node:readline';
import { ConcordError, connect } from '../../../src/index.js';

const [url, namespace, member, ttl, lock] = process.argv.slice(2);
if (url === undefined || namespace === undefined || member === undefined || ttl === undefined || lock === undefined) {
  throw new Error('usage: holder URL NAMESPACE MEMBER TTL_MS LOCK');
}
const say = (value: Record<string, unknown>): void => {
  process.stdout.write(`${JSON.stringify(value, (_k, v: unknown) => (typeof v === 'bigint' ? v.toString() : v))}\n`);
};
const codeOf = (reason: unknown): string => (reason instanceof ConcordError ? reason.code : String(reason));

const coordinator = await connect(url, { namespace, member, sessionTtlMs: Number(ttl) });
const held = await coordinator.lock(lock).acquire();
held.signal.addEventListener('abort', () => {
  say({ lost: codeOf(held.signal.reason) });
});
say({ held: held.token });

for await (const line of createInterface({ input: process.stdin })) {
  if (line === 'touch') {
    const signal = held.signal;
    say({ touched: signal.aborted, code: signal.aborted ? codeOf(signal.reason) : null });
  } else if (line === 'release') {
    await held.release();
    say({ released: true });
  } else if (line === 'exit') {
    break;
  }
}
process.stdin.destroy();
await coordinator.close();
