/** Take a lock, use its fencing token, release it. `npx tsx examples/lock.ts [URL]` */
import { connect } from '../src/index.js';

const url = process.argv[2] ?? process.env.CONCORD_URL ?? 'memory://example';
const coordinator = await connect(url);
const lock = coordinator.lock('invoice-run');

const held = await lock.acquire({ timeoutMs: 10_000 });
console.log(`holding ${held.name} with fencing token ${held.token}; holder is ${await lock.holder()}`);
// Pass held.token to the storage you write to, so it can refuse a writer whose lock has since moved on.
await held.release();
console.log(`released; holder is ${String(await lock.holder())}`);
await coordinator.close();
