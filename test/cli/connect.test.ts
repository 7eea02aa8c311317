/**
 * A backend that cannot be reached: every command that connects says so in one line and exits 1, whether nothing
 * listens (the refusal is immediate) or a server accepts TCP connections and never answers (given up after
 * --connect-timeout).
 */
import { createServer, type Server, type Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { concord, lines, type Result } from './run.js';

/** One line on stderr, prefixed, no stack, nothing on stdout, exit code 1. */
function expectOneLineFailure(result: Result, pattern: RegExp): void {
  expect(result.code, result.stderr).toBe(1);
  const said = lines(result.stderr);
  expect(said, result.stderr).toHaveLength(1);
  expect(said[0]).toMatch(/^concord: /);
  expect(said[0]).toMatch(pattern);
  expect(result.stdout).toBe('');
}

/** Every command that connects, with the arguments it needs. */
const CONNECTING: readonly (readonly string[])[] = [
  ['groups'],
  ['members', 'g'],
  ['leader', 'g'],
  ['watch', 'g'],
  ['lock', 'job', '--', 'true'],
  ['elect', 'g', '--', 'true'],
  ['demo', '--workers', '2', '--tasks', '4'],
];

describe('concord and an unreachable backend', { timeout: 120_000 }, () => {
  let silent: Server;
  let port = 0;
  const sockets = new Set<Socket>();
  let accepted = 0;

  beforeAll(async () => {
    // Accepts connections, reads what it is sent, and never answers.
    silent = createServer((socket) => {
      accepted++;
      sockets.add(socket);
      socket.on('error', () => undefined);
      socket.on('close', () => sockets.delete(socket));
      socket.resume();
    });
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    const address = silent.address();
    if (address === null || typeof address === 'string') throw new Error('no port');
    port = address.port;
  });

  afterAll(async () => {
    for (const socket of sockets) socket.destroy();
    await new Promise((resolve) => silent.close(resolve));
  });

  it('nothing listening: one line naming the address, exit code 1 (etcd and Redis)', async () => {
    const [etcd, redis] = await Promise.all([
      concord(['groups', '--url', 'etcd://127.0.0.1:1']),
      concord(['groups', '--url', 'redis://127.0.0.1:1']),
    ]);
    expectOneLineFailure(etcd, /127\.0\.0\.1:1\b/);
    expectOneLineFailure(redis, /127\.0\.0\.1:1\b/);
  });

  it('a server that never answers: given up after --connect-timeout, in one line, exit code 1 (etcd and Redis)', async () => {
    const silentUrl = (scheme: string): string => `${scheme}://127.0.0.1:${String(port)}`;
    const [etcd, redis] = await Promise.all([
      concord(['groups', '--url', silentUrl('etcd'), '--connect-timeout', '700']),
      concord(['groups', '--url', silentUrl('redis'), '--connect-timeout', '700']),
    ]);
    const timedOut = new RegExp(`could not connect to 127\\.0\\.0\\.1:${String(port)} within 700 ms`);
    expectOneLineFailure(etcd, timedOut);
    expectOneLineFailure(redis, timedOut);
    // They did reach the server: it is the silence that was given up on.
    expect(accepted).toBeGreaterThanOrEqual(2);
  });

  it('every command that connects takes --connect-timeout, and lists it in its help', async () => {
    const url = `redis://127.0.0.1:${String(port)}`;
    const results = await Promise.all(
      CONNECTING.map(async (args) => {
        const [name = '', ...rest] = args;
        const [failed, help] = await Promise.all([
          concord([name, '--url', url, '--connect-timeout', '500', ...rest]),
          concord([name, '--help']),
        ]);
        return { name, failed, help };
      }),
    );
    for (const { name, failed, help } of results) {
      expectOneLineFailure(failed, new RegExp(`could not connect to 127\\.0\\.0\\.1:${String(port)} within 500 ms`));
      expect(help.stdout, name).toMatch(
        /^ {2}--connect-timeout MS +give up connecting to the backend after MS milliseconds \(default 10000\)$/m,
      );
    }
  });
});
