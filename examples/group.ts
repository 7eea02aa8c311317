/** Join a group, list its members, leave. `npx tsx examples/group.ts [URL]` */
import { connect } from '../src/index.js';

const url = process.argv[2] ?? process.env.CONCORD_URL ?? 'memory://example';
await using a = await connect(url, { member: 'indexer-a' });
await using b = await connect(url, { member: 'indexer-b' });

await a.group('indexers').join({ create: true });
await b.group('indexers').join();
console.log('groups:', await a.groups());
console.log(
  'members:',
  (await a.group('indexers').members()).map((m) => m.id),
);
await b.group('indexers').leave();
console.log(
  'after b left:',
  (await a.group('indexers').members()).map((m) => m.id),
);
