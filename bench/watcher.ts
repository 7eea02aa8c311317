/** Child of watchLatency(): prints `TYPE MEMBER HRTIME` for every event of group g until stdin speaks. */
import { connect } from '../src/index.js';

const [url, namespace] = process.argv.slice(2);
const c = await connect(url ?? '', { namespace: namespace ?? '', member: 'watcher' });
const watch = c.group('g').watch({ initial: false });
process.stdin.once('data', () => {
  void watch.close();
});
// Its own join coming back proves the watch is live: only then is the parent told to start measuring.
void c.group('g').join();
for await (const event of watch) {
  if (event.member === 'watcher') {
    if (event.type === 'join') process.stdout.write('ready\n');
    continue;
  }
  process.stdout.write(`${event.type} ${event.member} ${process.hrtime.bigint()}\n`);
}
await c.close();
process.exit(0);
