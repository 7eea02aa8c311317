/**
 * connect() to etcd always settles, in a process that does nothing else (issue: an unreachable or refusing backend
 * fails loudly). Each case runs a child process whose only work is connecting: nothing listening, a server that
 * accepts and never answers, a dead port listed before a live one, and users whose role lacks the namespace's keys.
 * The child must end through its own catch (exit code 3) or by connecting (0), soon after, and print no warnings.
 */
import { execFileSync, spawn } from 'node:child_process';
import * as net from 'node:net';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { etcdctlBinary, freePort, requireServer, startEtcd, type ServerHandle } from '../../support/servers.js';
import { deadline } from '../../support/wait.js';

const CHILD = fileURLToPath(new URL('./connect-child.ts', import.meta.url));
const availability = requireServer('etcd');

interface Outcome {
  readonly exitCode: number | null;
  readonly stderr: string;
  /** What connect() did: {connected, ms} or {code, message, ms}. */
  readonly result: { connected?: boolean; code?: string; message?: string; ms: number };
  /** ms from the child's start to its 'exit' event, by its own clock. */
  readonly exitMs: number;
  /** ms from the child's start to close() settling, when it was asked to close after a while. */
  readonly closedMs: number | undefined;
}

async function connectInChild(url: string, connectTimeoutMs?: number, closeAfterMs?: number): Promise<Outcome> {
  const args = ['--import', 'tsx', CHILD, url, connectTimeoutMs === undefined ? '-' : String(connectTimeoutMs)];
  if (closeAfterMs !== undefined) args.push(String(closeAfterMs));
  const env = Object.fromEntries(Object.entries(process.env).filter(([key]) => key !== 'NODE_DEBUG' && !key.startsWith('GRPC_')));
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'], env });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const exited = new Promise<number | null>((resolve) => child.on('close', resolve));
  let exitCode: number | null;
  try {
    exitCode = await deadline(exited, 60_000, `the child connecting to ${url} to exit (stdout: ${stdout}, stderr: ${stderr})`);
  } finally {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  }
  const lines = stdout
    .trim()
    .split('\n')
    .filter((line) => line.startsWith('{'))
    .map((line) => JSON.parse(line) as Record<string, unknown>);
  const result = lines.find((line) => 'ms' in line) as Outcome['result'] | undefined;
  const exit = lines.find((line) => 'exit' in line);
  const closed = lines.find((line) => 'closed' in line);
  if (!result || !exit) throw new Error(`the child said ${JSON.stringify(stdout)} (stderr: ${stderr}, exit code ${exitCode})`);
  return { exitCode, stderr, result, exitMs: Number(exit.exit), closedMs: closed ? Number(closed.closed) : undefined };
}

/** How long a child that has settled connect() may take to end: no timer or socket of the driver may keep it. */
const EXIT_WITHIN_MS = 500;

describe.skipIf(!availability.ok)(
  `etcd: connect() settles in a process that only connects${availability.ok ? '' : ` (skipped: ${availability.reason})`}`,
  () => {
    it('nothing listening: rejects with ERR_CONNECTION naming the host, from the script’s own catch', async () => {
      const port = await freePort();
      const outcome = await connectInChild(`etcd://127.0.0.1:${port}`);
      expect(outcome.result).toMatchObject({ code: 'ERR_CONNECTION' });
      expect(outcome.result.message).toContain(`127.0.0.1:${port}`);
      expect(outcome.exitCode).toBe(3);
      // Refused connections fail fast: no waiting for the 10 s connect timeout.
      expect(outcome.result.ms).toBeLessThan(5000);
      expect(outcome.exitMs - outcome.result.ms).toBeLessThan(EXIT_WITHIN_MS);
      expect(outcome.stderr).toBe('');
    });

    describe('a server that accepts connections and never answers', () => {
      let server: net.Server;
      const sockets = new Set<net.Socket>();
      let port = 0;
      beforeAll(async () => {
        server = net.createServer((socket) => {
          sockets.add(socket);
          socket.on('close', () => sockets.delete(socket));
          socket.on('error', () => undefined);
        });
        await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
        port = (server.address() as net.AddressInfo).port;
      });
      afterAll(async () => {
        for (const socket of sockets) socket.destroy();
        await new Promise((resolve) => server.close(resolve));
      });

      it('rejects with ERR_CONNECTION naming the host once connectTimeoutMs runs out, and the process ends at once', async () => {
        const outcome = await connectInChild(`etcd://127.0.0.1:${port}`, 1500);
        expect(outcome.result).toMatchObject({ code: 'ERR_CONNECTION' });
        expect(outcome.result.message).toContain(`127.0.0.1:${port}`);
        expect(outcome.exitCode).toBe(3);
        expect(outcome.result.ms).toBeGreaterThanOrEqual(1400);
        expect(outcome.result.ms).toBeLessThan(1500 + 3000);
        // Neither the call still waiting on its deadline nor a channel still connecting keeps the process.
        expect(outcome.exitMs - outcome.result.ms).toBeLessThan(EXIT_WITHIN_MS);
        expect(outcome.stderr).toBe('');
      });

      it('with a user and password: the authentication call (which cannot be cancelled) does not outlive connect() either', async () => {
        const outcome = await connectInChild(`etcd://user:secret-pw@127.0.0.1:${port}`, 1500);
        expect(outcome.result).toMatchObject({ code: 'ERR_CONNECTION' });
        expect(outcome.result.message).not.toContain('secret-pw');
        expect(outcome.exitCode).toBe(3);
        expect(outcome.result.ms).toBeLessThan(1500 + 3000);
        expect(outcome.exitMs - outcome.result.ms).toBeLessThan(EXIT_WITHIN_MS);
        expect(outcome.stderr).toBe('');
      });

      it('the same as the query parameter ?connectTimeoutMs=', async () => {
        const outcome = await connectInChild(`etcd://127.0.0.1:${port}?connectTimeoutMs=1000`);
        expect(outcome.result).toMatchObject({ code: 'ERR_CONNECTION' });
        expect(outcome.result.ms).toBeGreaterThanOrEqual(900);
        expect(outcome.result.ms).toBeLessThan(1000 + 3000);
        expect(outcome.exitCode).toBe(3);
      });
    });

    describe('against a live etcd', () => {
      let etcd: ServerHandle | undefined;
      beforeAll(async () => {
        etcd = await startEtcd();
      });
      afterAll(async () => {
        await etcd?.stop();
      });

      it('a dead port listed before the live one: connects to the live one', async () => {
        if (!etcd) throw new Error('etcd is not running');
        const dead = await freePort();
        const outcome = await connectInChild(`etcd://127.0.0.1:${dead},127.0.0.1:${etcd.port}`);
        expect(outcome.result).toMatchObject({ connected: true });
        expect(outcome.exitCode).toBe(0);
        expect(outcome.exitMs - outcome.result.ms).toBeLessThan(EXIT_WITHIN_MS);
        expect(outcome.stderr).toBe('');
      });

      it('close() that meets the dead host and retries on the live one settles, and the process exits cleanly', async () => {
        if (!etcd) throw new Error('etcd is not running');
        const dead = await freePort();
        // The dead host is tried first by every call: connect() opens its circuit breaker (for 1 s); closing 1.5 s
        // later, the lease revoke fails on it and is retried after a pause, in which nothing else holds the process.
        const outcome = await connectInChild(`etcd://127.0.0.1:${etcd.port},127.0.0.1:${dead}`, undefined, 1500);
        expect(outcome.result).toMatchObject({ connected: true });
        // Exit code 13 and a warning on stderr: the process ended while close() was still pending.
        expect(outcome.stderr).toBe('');
        expect(outcome.exitCode).toBe(0);
        expect(outcome.closedMs).toBeDefined();
        expect(outcome.exitMs - (outcome.closedMs ?? 0)).toBeLessThan(EXIT_WITHIN_MS);
      });
    });

    describe('a user whose role lacks what the driver needs', () => {
      let etcd: ServerHandle | undefined;
      const passwords = { full: 'full-pw-91', reader: 'reader-pw-27', partial: 'partial-pw-53', root: 'root-pw-66' };
      beforeAll(async () => {
        etcd = await startEtcd();
        const ctl = etcdctlBinary();
        if (!ctl) throw new Error('etcdctl not found: apt-get install -y etcd-client');
        const run = (...args: string[]): void => {
          execFileSync(ctl, ['--endpoints', `http://127.0.0.1:${etcd?.port ?? 0}`, ...args], { stdio: 'ignore' });
        };
        run('user', 'add', `root:${passwords.root}`, '--interactive=false');
        run('user', 'grant-role', 'root', 'root');
        // full: everything under app/; reader: only reads there; partial: writes only its locks.
        run('role', 'add', 'app-full');
        run('role', 'grant-permission', 'app-full', 'readwrite', '--prefix=true', 'app/');
        run('role', 'add', 'app-read');
        run('role', 'grant-permission', 'app-read', 'read', '--prefix=true', 'app/');
        run('role', 'add', 'app-partial');
        run('role', 'grant-permission', 'app-partial', 'read', '--prefix=true', 'app/');
        run('role', 'grant-permission', 'app-partial', 'readwrite', '--prefix=true', 'app/locks/');
        for (const [user, role] of [
          ['full', 'app-full'],
          ['reader', 'app-read'],
          ['partial', 'app-partial'],
        ] as const) {
          run('user', 'add', `${user}:${passwords[user]}`, '--interactive=false');
          run('user', 'grant-role', user, role);
        }
        run('auth', 'enable');
      });
      afterAll(async () => {
        await etcd?.stop();
      });
      const url = (user: keyof typeof passwords | undefined): string =>
        `etcd://${user ? `${user}:${passwords[user]}@` : ''}127.0.0.1:${etcd?.port ?? 0}?namespace=app`;

      it('a role with read and write on the namespace connects', async () => {
        const outcome = await connectInChild(url('full'));
        expect(outcome.result).toMatchObject({ connected: true });
        expect(outcome.exitCode).toBe(0);
        expect(outcome.stderr).toBe('');
      });

      for (const user of ['reader', 'partial'] as const) {
        it(`a role that cannot write every key of the namespace (${user}) is refused at connect, naming what is missing`, async () => {
          const outcome = await connectInChild(url(user));
          expect(outcome.result).toMatchObject({ code: 'ERR_REFUSED' });
          expect(outcome.result.message).toContain(`user "${user}"`);
          expect(outcome.result.message).toContain('read and write');
          expect(outcome.result.message).toContain('"app/"');
          expect(outcome.result.message).not.toContain(passwords[user]);
          expect(outcome.exitCode).toBe(3);
          expect(outcome.stderr).toBe('');
        });
      }

      it('no user at all, and a wrong password: refused at connect', async () => {
        const anonymous = await connectInChild(url(undefined));
        expect(anonymous.result).toMatchObject({ code: 'ERR_REFUSED' });
        expect(anonymous.result.message).toMatch(/names no user/);
        expect(anonymous.exitCode).toBe(3);
        const wrong = await connectInChild(`etcd://full:not-${passwords.full}@127.0.0.1:${etcd?.port ?? 0}?namespace=app`);
        expect(wrong.result).toMatchObject({ code: 'ERR_REFUSED' });
        expect(wrong.result.message).not.toContain(passwords.full);
        expect(wrong.exitCode).toBe(3);
        expect(anonymous.stderr + wrong.stderr).toBe('');
      });
    });
  },
);
