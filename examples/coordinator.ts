/** Get a coordinator, look at it, close it. `npx tsx examples/coordinator.ts [URL]` */
import { connect } from '../src/index.js';

const url = process.argv[2] ?? process.env.CONCORD_URL ?? 'memory://example';
await using coordinator = await connect(url, { member: 'example-1', sessionTtlMs: 5_000 });
console.log(`connected to ${coordinator.url} as ${coordinator.member}`);
console.log('features:', coordinator.features);
console.log('session:', coordinator.session);
