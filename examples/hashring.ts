/** Place keys on nodes with a hash ring, with weights and replicas. `npx tsx examples/hashring.ts` */
import { HashRing, Rendezvous, ToozHashRing } from '../src/index.js';

const nodes = { 'cache-a': 1, 'cache-b': 1, 'cache-c': 2 };
for (const placement of [new Rendezvous(nodes), new HashRing(nodes), new ToozHashRing(nodes)]) {
  const name = placement.constructor.name;
  console.log(
    `${name}: user:42 -> ${placement.get('user:42')}; two replicas -> ${placement.getNodes('user:42', { replicas: 2 }).join(', ')}`,
  );
  placement.remove('cache-c');
  console.log(`${name} without cache-c: user:42 -> ${placement.get('user:42')}`);
}
