/**
 * concord dashboard in a real browser: the machine's Chromium (Debian's chromium package), driven by puppeteer-core,
 * on SQLite (changes polled) and on a Redis the test starts (changes pushed). A member joining from another process shows up, a lock hand-off shows the new
 * holder and token, a semaphore shows its permits held out of its limit, a SIGKILLed member goes once its TTL runs out, and the page is saved as a screenshot. Without
 * Chromium the browser tests skip with a message; under CI=true they fail instead. The server's own rules (read-only,
 * loopback host names, ending on SIGTERM) are checked without a browser.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import puppeteer, { type Browser, type Page } from 'puppeteer-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connect, type Coordinator } from '../../src/index.js';
import { requireServer, startRedis, type ServerHandle } from '../support/servers.js';
import { deadline } from '../support/wait.js';
import { BACKENDS } from './backends.js';
import { ROOT, Running } from './run.js';

const CHROMIUM = process.env.CONCORD_CHROMIUM ?? '/usr/bin/chromium';
const chromium = existsSync(CHROMIUM);
const redis = requireServer('redis');
const MEMBER = join(ROOT, 'test', 'cli', 'dashboard-member.ts');
// Refresh docs/dashboard.png (the README's picture) only when asked, so a test run leaves the work tree alone.
const UPDATE_SCREENSHOT = process.env.CONCORD_UPDATE_SCREENSHOT === '1';

/** Resolves with the first line `child` prints that satisfies `accept`. */
function line(child: ChildProcess, accept: (line: string) => boolean, what: string): Promise<string> {
  let buffered = '';
  let listener: (chunk: Buffer) => void = () => undefined;
  const found = new Promise<string>((resolve, reject) => {
    listener = (chunk) => {
      buffered += chunk.toString('utf8');
      const match = buffered.split('\n').find(accept);
      if (match !== undefined) resolve(match);
    };
    child.stdout?.on('data', listener);
    child.once('exit', (code) => {
      reject(new Error(`exited with code ${code} before ${what}`));
    });
  });
  return deadline(found, 30_000, what).finally(() => child.stdout?.off('data', listener));
}

/** The dashboard on a free port of 127.0.0.1, and its address once it listens. */
async function dashboard(url: string, namespace: string): Promise<{ run: Running; address: string }> {
  const run = new Running(['dashboard', '--url', url, '--namespace', namespace, '--port', '0', '--refresh', '250']);
  const address = await line(run.child, (text) => text.startsWith('http://'), 'the dashboard address').catch((error: unknown) => {
    throw new Error(`${String(error)}: ${run.stderr}`);
  });
  return { run, address };
}

async function stop(run: Running, signal: NodeJS.Signals): Promise<number | null> {
  run.child.kill(signal);
  return (await deadline(run.done, 30_000, `the dashboard to end on ${signal}`)).code;
}

describe.skipIf(!redis.ok)(`concord dashboard server${redis.ok ? '' : ` (skipped: ${redis.reason})`}`, { timeout: 120_000 }, () => {
  let server: ServerHandle;

  beforeAll(async () => {
    server = await startRedis();
  });

  afterAll(async () => {
    await server.stop();
  });

  function get(address: string, path: string, options: { method?: string; host?: string } = {}): Promise<{ status: number; body: string }> {
    return new Promise((resolve, reject) => {
      const target = new URL(path, address);
      const req = request(target, { method: options.method ?? 'GET', headers: options.host ? { host: options.host } : {} }, (response) => {
        let body = '';
        response.setEncoding('utf8').on('data', (chunk: string) => {
          body += chunk;
          // An event stream never ends: its first message is enough.
          if (path === '/events' && body.includes('\n\n')) response.destroy();
        });
        response.on('close', () => resolve({ status: response.statusCode ?? 0, body }));
      });
      req.on('error', reject).end();
    });
  }

  it('serves the page, the state and an event stream; refuses writes and foreign host names; ends on SIGTERM', async () => {
    const member = await connect(server.url, { namespace: 'plain', member: 'node-a' });
    try {
      await member.group('workers').join({ create: true, capabilities: { weight: 3 } });
      const { run, address } = await dashboard(server.url, 'plain');
      expect(address).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/$/);
      const [page, script, events, post, foreign] = await Promise.all([
        get(address, '/'),
        get(address, '/dashboard.js'),
        get(address, '/events'),
        get(address, '/', { method: 'POST' }),
        get(address, '/', { host: 'attacker.example:80' }),
      ]);
      expect(page.status).toBe(200);
      expect(page.body).toContain('<script src="dashboard.js"');
      expect(page.body + script.body).not.toMatch(/https?:\/\//);
      const first = JSON.parse(events.body.replace(/^data: /, '')) as { state: { groups: unknown[] } };
      expect(first.state.groups).toEqual([
        {
          name: 'workers',
          leader: undefined,
          members: [{ id: 'node-a', capabilities: { weight: 3 }, weight: 3, share: 1 }],
        },
      ]);
      expect(post.status).toBe(405);
      expect(foreign.status).toBe(403);
      expect(await stop(run, 'SIGTERM')).toBe(0);
    } finally {
      await member.close();
    }
  });
});

for (const backend of BACKENDS) {
  const browserSkip = !backend.availability.ok || (!chromium && process.env.CI !== 'true');
  const reason = !backend.availability.ok ? backend.availability.reason : `${CHROMIUM} not found (apt-get install chromium)`;

  describe.skipIf(browserSkip)(
    `concord dashboard on ${backend.name} in Chromium${browserSkip ? ` (skipped: ${reason})` : ''}`,
    { timeout: 120_000 },
    () => {
      const namespace = 'browser';
      const children: ChildProcess[] = [];
      const open: Coordinator[] = [];
      let url: string;
      let stopBackend: (() => Promise<void>) | undefined;
      let run: Running;
      let browser: Browser;
      let page: Page;
      let shots: string;

      async function member(id: string): Promise<Coordinator> {
        const coordinator = await connect(url, { namespace, member: id });
        open.push(coordinator);
        return coordinator;
      }

      /** A member in a process of its own; resolves once it has joined "workers", with the time it said so. */
      async function child(id: string, ttlMs: number, capabilities: object): Promise<{ process: ChildProcess; joinedAt: number }> {
        const proc = spawn(process.execPath, ['--import', 'tsx', MEMBER, url, namespace, id, String(ttlMs), JSON.stringify(capabilities)], {
          cwd: ROOT,
          stdio: ['ignore', 'pipe', 'inherit'],
        });
        children.push(proc);
        await line(proc, (text) => text === 'joined', `${id} to join`);
        return { process: proc, joinedAt: performance.now() };
      }

      const row = (group: string, id: string): string => `[data-group="${group}"] tr[data-member="${id}"]`;

      function text(selector: string): Promise<unknown> {
        return page.evaluate(`document.querySelector(${JSON.stringify(selector)})?.textContent ?? null`);
      }

      function lockShows(name: string, holder: string, token: bigint): Promise<unknown> {
        const check = `(() => {
      const row = document.querySelector('tr[data-lock=${JSON.stringify(name)}]');
      return row?.querySelector('.holder')?.textContent === ${JSON.stringify(holder)} &&
        row.querySelector('.token')?.textContent === ${JSON.stringify(String(token))};
    })()`;
        return page.waitForFunction(check, { timeout: 20_000 });
      }

      function logShows(text: string): Promise<unknown> {
        return page.waitForFunction(
          `[...document.querySelectorAll('#log li')].some((li) => li.textContent.includes(${JSON.stringify(text)}))`,
          {
            timeout: 20_000,
          },
        );
      }

      beforeAll(async () => {
        if (!chromium) throw new Error(`${CHROMIUM} not found: the browser tests need Chromium (apt-get install chromium)`);
        shots = mkdtempSync(join(tmpdir(), 'concord-dashboard-'));
        ({ url, stop: stopBackend } = await backend.start());
        const first = await member('node-a');
        await first.group('workers').join({ create: true, capabilities: { zone: 'eu-1', weight: 2 } });
        ({ run } = await dashboard(url, namespace));
        const address = (run.stdout.split('\n').find((text) => text.startsWith('http://')) ?? '').trim();
        browser = await puppeteer.launch({ executablePath: CHROMIUM, headless: true, args: ['--no-sandbox'] });
        page = await browser.newPage();
        await page.setViewport({ width: 1200, height: 900 });
        await page.goto(address);
        await page.waitForSelector('#link.live', { timeout: 20_000 });
        await page.waitForSelector(row('workers', 'node-a'), { timeout: 20_000 });
      });

      afterAll(async () => {
        for (const proc of children) if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL');
        await browser?.close();
        // SIGINT ends the dashboard cleanly.
        if (run) expect(await stop(run, 'SIGINT')).toBe(0);
        await Promise.all(open.splice(0).map((coordinator) => coordinator.close()));
        await stopBackend?.();
        if (shots) rmSync(shots, { recursive: true, force: true });
      });

      it('shows a member that joins from another process as soon as it is pushed', async () => {
        const { joinedAt } = await child('child-1', 10_000, { zone: 'us-2' });
        await page.waitForSelector(row('workers', 'child-1'), { timeout: 20_000 });
        const ms = performance.now() - joinedAt;
        // Recorded rather than asserted tightly (a loaded machine must not fail the test): typically tens of ms.
        console.log(`dashboard on ${backend.name}: child-1 on the page ${ms.toFixed(0)} ms after its join returned`);
        expect(ms).toBeLessThan(20_000);
        await logShows('workers: child-1 joined');
        // Weights 2 and 1 (none published counts as 1): rendezvous gives two thirds and one third.
        expect(await text(`${row('workers', 'node-a')} .share`)).toBe('66.7%');
        expect(await text(`${row('workers', 'child-1')} .share`)).toBe('33.3%');
      });

      it('shows a lock hand-off with the new holder and its token', async () => {
        const [a, b] = [await member('locker-a'), await member('locker-b')];
        const held = await a.lock('jobs/nightly').acquire();
        await lockShows('jobs/nightly', 'locker-a', held.token);
        const next = b.lock('jobs/nightly').acquire();
        await page.waitForFunction(`document.querySelector('tr[data-lock="jobs/nightly"] .waiting')?.textContent === '1'`, {
          timeout: 20_000,
        });
        // The waiter is named, with how long it has waited.
        expect(await text('tr[data-lock="jobs/nightly"] .oldest')).toMatch(/^locker-b \(\d+(\.\d)? m?s\)$/);
        await held.release();
        const taken = await next;
        expect(taken.token).toBeGreaterThan(held.token);
        await lockShows('jobs/nightly', 'locker-b', taken.token);
        await logShows(`jobs/nightly: locker-a #${held.token} → locker-b #${taken.token}`);
        await taken.release();
      });

      it('shows a semaphore with its permits held out of its limit, and each holder as shared', async () => {
        const [a, b] = [await member('permit-a'), await member('permit-b')];
        const permits = [await a.semaphore('transcode', { limit: 3 }).acquire(), await b.semaphore('transcode', { limit: 3 }).acquire()];
        const rows = `[...document.querySelectorAll('tr[data-lock="transcode"][data-kind="semaphore"]')]`;
        const held = (text: string): Promise<unknown> =>
          page.waitForFunction(`${rows}[0]?.querySelector('.held')?.textContent === ${JSON.stringify(text)}`, { timeout: 20_000 });
        await held('2/3');
        expect(await page.evaluate(`${rows}.map((row) => [...row.querySelectorAll('td')].map((cell) => cell.textContent))`)).toEqual([
          ['transcode', 'semaphore', 'permit-a', 'shared', String(permits[0]?.token), '2/3', '0', ''],
          ['transcode', 'semaphore', 'permit-b', 'shared', String(permits[1]?.token), '', '', ''],
        ]);
        await permits[0]?.release();
        await held('1/3');
        await logShows(`transcode (semaphore): released by permit-a #${permits[0]?.token ?? 0n}`);
        await permits[1]?.release();
        await page.waitForFunction(`${rows}.length === 0`, { timeout: 20_000 });
      });

      it('drops a SIGKILLed member once its session TTL runs out', async () => {
        const { process: proc } = await child('doomed', 1500, { zone: 'eu-1' });
        await page.waitForSelector(row('workers', 'doomed'), { timeout: 20_000 });
        proc.kill('SIGKILL');
        await page.waitForSelector(row('workers', 'doomed'), { hidden: true, timeout: 30_000 });
        await logShows('workers: doomed left');
      });

      it('saves a screenshot of a busy picture', async () => {
        const [b, c] = [await member('node-b'), await member('node-c')];
        await b.group('workers').join({ capabilities: { zone: 'us-2', weight: 1 } });
        await c.group('workers').join({ capabilities: { zone: 'eu-1', weight: 1 } });
        await b.group('indexers').join({ create: true, capabilities: { shards: [1, 2] } });
        await c.group('indexers').join({ capabilities: { shards: [3] } });
        const a = open[0];
        if (!a) throw new Error('node-a is not connected');
        const leadership = await a.group('workers').campaign();
        await c.group('indexers').campaign();
        const nightly = await b.lock('jobs/nightly').acquire();
        const waiter = new AbortController();
        const queued = c
          .lock('jobs/nightly')
          .acquire({ signal: waiter.signal })
          .catch(() => undefined);
        await a.lock('cache/refresh').acquire();
        await page.waitForSelector(row('indexers', 'node-c'), { timeout: 20_000 });
        await page.waitForFunction(
          `document.querySelector('[data-group="workers"] .leader')?.textContent.includes('term ${leadership.term}')`,
          {
            timeout: 20_000,
          },
        );
        await lockShows('jobs/nightly', 'node-b', nightly.token);
        await page.waitForFunction(`document.querySelector('tr[data-lock="jobs/nightly"] .waiting')?.textContent === '1'`, {
          timeout: 20_000,
        });
        await page.waitForSelector('tr[data-lock="cache/refresh"]', { timeout: 20_000 });
        const file = join(shots, `dashboard-${backend.name}.png`);
        await page.screenshot({ path: file, fullPage: true });
        expect(existsSync(file)).toBe(true);
        if (UPDATE_SCREENSHOT && backend.name === 'redis')
          await page.screenshot({ path: join(ROOT, 'docs', 'dashboard.png'), fullPage: true });
        waiter.abort();
        await queued;
      });
    },
  );
}
