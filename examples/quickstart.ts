/**
 * A short tour on the in-memory driver: three members join a group, elect a leader, and take turns on a lock.
 * Run it with `npx tsx examples/quickstart.ts`.
 */
import { connect } from '../src/index.js';

const url = process.argv[2] ?? 'memory://quickstart';
const members = await Promise.all(['ada', 'brian', 'cleo'].map((member) => connect(url, { member })));
const [first] = members;
if (!first) throw new Error('no members');

const watch = first.group('workers').watch();
const seen: string[] = [];
const watching = (async () => {
  for await (const event of watch) seen.push(`${event.type} ${event.member}`);
})();

for (const c of members) await c.group('workers').join({ create: true, capabilities: { role: 'worker' } });
console.log('members:', (await first.group('workers').members()).map((m) => m.id).join(', '));

const leadership = await Promise.race(members.map((c) => c.group('workers').campaign()));
console.log(`leader: ${await first.group('workers').leader()} (term ${leadership.term})`);

let total = 0;
await Promise.all(
  members.map((c) =>
    c.withLock('counter', async (held) => {
      const before = total;
      await new Promise((resolve) => setImmediate(resolve));
      total = before + 1;
      console.log(`${c.member} holds the lock with fencing token ${held.token}; total = ${total}`);
    }),
  ),
);

await Promise.all(members.map((c) => c.close()));
await watching;
console.log('watch saw:', seen.join('; '));
console.log(total === members.length ? 'ok: every increment happened under the lock' : 'lost an update');
