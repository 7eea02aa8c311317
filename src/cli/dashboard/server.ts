/**
 * The dashboard's HTTP server: the page and its script and style, the state as JSON, and /events, a server-sent event
 * stream that starts with the whole state and log and then carries each change. Read-only: GET and HEAD only.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { PAGE_CSS, PAGE_HTML, PAGE_JS } from './page.js';
import type { Entry, LiveView, State } from './view.js';

const HEADERS = {
  // The page loads only its own script and style, and talks only to its own server.
  'content-security-policy':
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
  'cache-control': 'no-store',
};

const ASSETS: Readonly<Record<string, { type: string; body: string }>> = {
  '/': { type: 'text/html; charset=utf-8', body: PAGE_HTML },
  '/dashboard.js': { type: 'text/javascript; charset=utf-8', body: PAGE_JS },
  '/dashboard.css': { type: 'text/css; charset=utf-8', body: PAGE_CSS },
};

const LOOPBACK = new Set(['127.0.0.1', '::1', 'localhost']);

/** Host names a request may name: on loopback only loopback names, so a rebound DNS name cannot read the page. */
function hostAllowed(request: IncomingMessage, bound: string): boolean {
  if (!LOOPBACK.has(bound)) return true;
  const host = request.headers.host ?? '';
  const name = host.startsWith('[') ? host.slice(1, host.indexOf(']')) : host.replace(/:\d+$/, '');
  return LOOPBACK.has(name);
}

function sse(state: State, extra: { log?: readonly Entry[]; entries?: readonly Entry[] }): string {
  return `data: ${JSON.stringify({ state, ...extra })}\n\n`;
}

export interface DashboardServer {
  /** The page's address, e.g. http://127.0.0.1:7070/. */
  readonly url: string;
  /** Ends every event stream and stops listening. */
  close(): Promise<void>;
}

export async function serve(view: LiveView, host: string, port: number): Promise<DashboardServer> {
  const streams = new Set<ServerResponse>();

  const handle = (request: IncomingMessage, response: ServerResponse): void => {
    if (!hostAllowed(request, host)) {
      response.writeHead(403, HEADERS).end('forbidden host\n');
      return;
    }
    if (request.method !== 'GET' && request.method !== 'HEAD') {
      response.writeHead(405, { ...HEADERS, allow: 'GET, HEAD' }).end('read-only\n');
      return;
    }
    const path = new URL(request.url ?? '/', 'http://dashboard').pathname;
    const asset = ASSETS[path];
    if (asset) {
      response.writeHead(200, { ...HEADERS, 'content-type': asset.type }).end(request.method === 'HEAD' ? undefined : asset.body);
    } else if (path === '/state.json') {
      response.writeHead(200, { ...HEADERS, 'content-type': 'application/json' }).end(JSON.stringify({ state: view.state, log: view.log }));
    } else if (path === '/events') {
      response.writeHead(200, { ...HEADERS, 'content-type': 'text/event-stream', connection: 'keep-alive' });
      response.write(sse(view.state, { log: view.log }));
      streams.add(response);
      response.on('close', () => streams.delete(response));
    } else {
      response.writeHead(404, HEADERS).end('not found\n');
    }
  };

  const unsubscribe = view.subscribe((state, entries) => {
    const message = sse(state, { entries });
    for (const stream of streams) stream.write(message);
  });
  const server: Server = createServer(handle);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const address = server.address() as AddressInfo;
  const shown = address.family === 'IPv6' ? `[${address.address}]` : address.address;
  return {
    url: `http://${shown}:${address.port}/`,
    close: async () => {
      unsubscribe();
      for (const stream of streams) stream.end();
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeAllConnections();
      await closed;
    },
  };
}
