/**
 * A lock client in a process of its own, for fault tests on any backend; talks JSON lines on stdout, takes commands on stdin.
 *
 *   hold URL NAMESPACE MEMBER LOCK TTL_MS [HOW]   acquire LOCK, print {acquired, token} (with HOW also `at`, the
 *                                                 hrtime of the grant, and as below);
 *                                                 then on stdin:
 *                                                 "touch"   -> {touched, aborted, code} (what a holder checks before acting)
 *                                                 "release" -> {released, holder} after HeldLock.release()
 *   work URL NAMESPACE MEMBER LOCK COUNT [HOW]    acquire and release COUNT times, print one {start, end, token} per hold
 *                                                 (process.hrtime.bigint(): comparable across processes), then {done}
 *
 * HOW (absent: the exclusive lock): `shared` holds LOCK shared; `mixed` (work only) takes each hold shared or
 * exclusive at random, about two in three shared; `semaphore:N` takes permits of semaphore LOCK of limit N. With HOW,
 * each hold printed also says whether it was `shared` (permits are) and when it was `asked` for (hrtime, as `start`;
 * see HoldInterval.asked).
 */
import { createInterface } from 'node:readline';
import { connect, type ConcordError, type Coordinator, type HeldLock } from '../../src/index.js';

const [mode, url, namespace, member, lock, arg, how] = process.argv.slice(2);
if (!mode || !url || !namespace || !member || !lock || !arg)
  throw new Error('usage: faults-child hold|work URL NAMESPACE MEMBER LOCK N [HOW]');
const limit = how?.startsWith('semaphore:') ? Number(how.slice('semaphore:'.length)) : undefined;
if (how !== undefined && how !== 'shared' && how !== 'mixed' && !(limit !== undefined && Number.isInteger(limit) && limit > 0)) {
  throw new Error(`unknown HOW ${how}: shared, mixed or semaphore:N`);
}

/** One hold of LOCK as HOW says, and whether it is shared. */
async function take(c: Coordinator): Promise<{ held: HeldLock; shared: boolean }> {
  if (limit !== undefined) return { held: await c.semaphore(lock as string, { limit }).acquire(), shared: true };
  const shared = how === 'shared' || (how === 'mixed' && Math.random() < 2 / 3);
  return { held: await c.lock(lock as string).acquire(shared ? { shared } : undefined), shared };
}

const say = (message: Record<string, unknown>): void => {
  process.stdout.write(`${JSON.stringify(message, (_k, v: unknown) => (typeof v === 'bigint' ? v.toString() : v))}\n`);
};

if (mode === 'hold') {
  const c = await connect(url, { namespace, member, sessionTtlMs: Number(arg) });
  const asked = process.hrtime.bigint();
  const { held, shared } = await take(c);
  const at = process.hrtime.bigint();
  say(how === undefined ? { acquired: true, token: held.token } : { acquired: true, token: held.token, shared, asked, at });
  const lines = createInterface({ input: process.stdin });
  for await (const line of lines) {
    if (line === 'touch') {
      // Reading the signal first is what a careful holder does before touching the protected resource.
      const aborted = held.signal.aborted;
      say({ touched: true, aborted, code: aborted ? (held.signal.reason as ConcordError).code : undefined });
    } else if (line === 'release') {
      await held.release();
      const holder = limit === undefined ? await c.lock(lock).holder() : (await c.semaphore(lock, { limit }).holders())[0]?.member;
      say({ released: true, holder });
    } else if (line === 'exit') {
      break;
    }
  }
  lines.close();
  await c.close();
} else if (mode === 'work') {
  const c = await connect(url, { namespace, member, sessionTtlMs: 10_000 });
  const count = Number(arg);
  for (let i = 0; i < count; i++) {
    const asked = process.hrtime.bigint();
    const { held, shared } = await take(c);
    const start = process.hrtime.bigint();
    // A turn of the event loop inside the critical section, so overlapping holders would be caught.
    await new Promise((resolve) => setImmediate(resolve));
    const end = process.hrtime.bigint();
    say(how === undefined ? { start, end, token: held.token } : { start, end, token: held.token, shared, asked });
    await held.release();
  }
  say({ done: true });
  await c.close();
} else {
  throw new Error(`unknown mode ${mode}`);
}
