/** Watch a group: the current members first, then every join, update and leave. `npx tsx examples/watchers.ts [URL]` */
import { connect } from '../src/index.js';

const url = process.argv[2] ?? process.env.CONCORD_URL ?? 'memory://example';
await using watcher = await connect(url, { member: 'watcher' });
await using worker = await connect(url, { member: 'worker' });
await watcher.group('jobs').join({ create: true });

const controller = new AbortController();
const printing = (async () => {
  for await (const event of watcher.group('jobs').watch({ signal: controller.signal })) {
    console.log(event.type, event.member, 'capabilities' in event ? JSON.stringify(event.capabilities) : '');
    if (event.type === 'leave') controller.abort();
  }
})();

await worker.group('jobs').join({ capabilities: { busy: false } });
await worker.group('jobs').updateCapabilities({ busy: true });
await worker.group('jobs').leave();
await printing;
