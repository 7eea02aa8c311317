/**
 * Spread page fetches over the members of a group with the partitioner: every page is fetched by exactly one member.
 * Serves its own pages on loopback, so it runs anywhere. `npx tsx examples/fetch-pages.ts [URL]`
 */
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { connect } from '../src/index.js';

const url = process.argv[2] ?? process.env.CONCORD_URL ?? 'memory://example';
const server = createServer((req, res) => res.end(`<title>${req.url ?? ''}</title>`));
await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
const pages = Array.from({ length: 9 }, (_v, i) => `${base}/page-${i}`);

const fetchers = await Promise.all(['fetcher-1', 'fetcher-2', 'fetcher-3'].map((member) => connect(url, { member })));
const partitioners = await Promise.all(fetchers.map((c) => c.group('fetchers').partitioner()));
for (const p of partitioners) if (p.members().length < 3) for await (const change of p.changes()) if (change.members.length === 3) break;

const fetched = await Promise.all(
  partitioners.map(async (p, i) => {
    const mine = pages.filter((page) => p.isMine(page));
    const titles = await Promise.all(mine.map(async (page) => (await (await fetch(page)).text()).replace(/<\/?title>/g, '')));
    console.log(`${fetchers[i]?.member ?? ''} fetched ${titles.join(', ')}`);
    return mine.length;
  }),
);
console.log(`${fetched.reduce((a, b) => a + b, 0)} of ${pages.length} pages fetched, each once`);
await Promise.all(fetchers.map((c) => c.close()));
server.close();
