/**
 * A separate process for the ZooKeeper fault tests; prints JSON lines on stdout, takes commands on stdin.
 *
 *   hold URL NAMESPACE MEMBER LOCK TTL_MS   acquire LOCK, print {acquired, token}; then on stdin:
 *                                           "touch"   -> {touched, aborted, code} (what a holder checks before acting)
 *                                           "release" -> {released, holder} after HeldLock.release()
 *                                           "exit"    -> close and exit
 *   work URL NAMESPACE MEMBER LOCK COUNT    acquire and release COUNT times, print one {start, end, token} per hold
 *                                           (process.hrtime.bigint(): comparable across processes), then {done}
 */
import { createInterface } from 'node:readline';
import { connect, type ConcordError } from '../../../src/index.js';

const [mode, url, namespace, member, lock, arg] = process.argv.slice(2);
if (!mode || !url || !namespace || !member || !lock || !arg) throw new Error('usage: faults-child hold|work URL NAMESPACE MEMBER LOCK N');

const say = (message: Record<string, unknown>): void => {
  process.stdout.write(`${JSON.stringify(message, (_k, v: unknown) => (typeof v === 'bigint' ? v.toString() : v))}\n`);
};

if (mode === 'hold') {
  const c = await connect(url, { namespace, member, sessionTtlMs: Number(arg) });
  const held = await c.lock(lock).acquire();
  say({ acquired: true, token: held.token });
  const lines = createInterface({ input: process.stdin });
  for await (const line of lines) {
    if (line === 'touch') {
      // Reading the signal first is what a careful holder does before touching the protected resource.
      const aborted = held.signal.aborted;
      say({ touched: true, aborted, code: aborted ? (held.signal.reason as ConcordError).code : undefined });
    } else if (line === 'release') {
      await held.release();
      say({ released: true, holder: await c.lock(lock).holder() });
    } else if (line === 'exit') {
      break;
    }
  }
  lines.close();
  await c.close();
} else if (mode === 'work') {
  const c = await connect(url, { namespace, member, sessionTtlMs: 10_000 });
  for (let i = 0; i < Number(arg); i++) {
    const held = await c.lock(lock).acquire();
    const start = process.hrtime.bigint();
    // A turn of the event loop inside the critical section, so overlapping holders would be caught.
    await new Promise((resolve) => setImmediate(resolve));
    const end = process.hrtime.bigint();
    say({ start, end, token: held.token });
    await held.release();
  }
  say({ done: true });
  await c.close();
} else {
  throw new Error(`unknown mode ${mode}`);
}
