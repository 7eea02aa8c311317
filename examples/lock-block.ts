/** A lock around a block: released when the block ends, however it ends. `npx tsx examples/lock-block.ts [URL]` */
import { connect } from '../src/index.js';

const url = process.argv[2] ?? process.env.CONCORD_URL ?? 'memory://example';
await using coordinator = await connect(url);

{
  await using held = await coordinator.lock('migrations').acquire();
  console.log(`migrating under token ${held.token}`);
  if (held.signal.aborted) throw new Error('lost the lock: stop before touching anything');
}

// The same with a callback; the work gets the lock's signal, aborted if the lock is lost.
const rows = await coordinator.withLock('migrations', async (held) => {
  await new Promise((resolve) => setTimeout(resolve, 10, undefined));
  return held.signal.aborted ? 0 : 42;
});
console.log(`migrated ${rows} rows`);
