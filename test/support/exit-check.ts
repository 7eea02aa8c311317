/** A process that uses every primitive, then only calls close(): it must exit by itself (no stray timers or sockets). */
import { connect } from '../../src/index.js';

const [url, namespace] = process.argv.slice(2);
if (url === undefined || namespace === undefined) throw new Error('usage: exit-check URL NAMESPACE');
const c = await connect(url, { namespace, member: 'exit-check' });
await c.group('g').join({ create: true, capabilities: { x: 1 } });
const watch = c.group('g').watch();
const iterator = watch[Symbol.asyncIterator]();
await iterator.next();
const leaders = c.group('g').watchLeader()[Symbol.asyncIterator]();
await leaders.next();
const held = await c.lock('l').acquire();
await c.group('g').campaign();
await held.release();
await c.lock('l').acquire();
await c.close();
console.log('closed');
