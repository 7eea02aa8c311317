/** A partitioned group: each member takes the keys it owns and follows membership changes. `npx tsx examples/partitioner.ts [URL]` */
import { connect } from '../src/index.js';

const url = process.argv[2] ?? process.env.CONCORD_URL ?? 'memory://example';
const keys = Array.from({ length: 12 }, (_v, i) => `order-${i}`);
await using a = await connect(url, { member: 'shard-a' });
await using b = await connect(url, { member: 'shard-b' });

await using pa = await a.group('orders').partitioner();
await using pb = await b.group('orders').partitioner({ weight: 2 });
// Wait until a has seen b join (changes() yields on every membership change).
if (pa.members().length < 2) for await (const change of pa.changes()) if (change.members.length === 2) break;

console.log('shard-a takes:', keys.filter((k) => pa.isMine(k)).join(' '));
console.log('shard-b takes:', keys.filter((k) => pb.isMine(k)).join(' '));
console.log(
  'both agree:',
  keys.every((k) => pa.owners(k)[0] === pb.owners(k)[0]),
);
