/**
 * connect() on Redis, each in a child process that does nothing else: it always settles (nothing listening, a server
 * that accepts and never answers, all sentinels dead), the process then exits by itself, a dead sentinel in the list
 * is skipped, an ACL user missing a permission the driver needs is refused at once with one error naming what is
 * missing, and ioredis never prints anything of its own.
 */
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FaultProxy } from '../../support/proxy.js';
import { freePort, requireServer, startRedis, startSentinel, type ServerHandle } from '../../support/servers.js';
import { deadline } from '../../support/wait.js';

const CHILD = fileURLToPath(new URL('./connect-child.ts', import.meta.url));

interface Outcome {
  readonly exitCode: number | null;
  readonly stdout: string;
  readonly stderr: string;
  /** What the child reported (parsed from its one JSON line). */
  readonly report: { connected?: boolean; code?: string; message?: string; ms: number };
  /** Parent's view: from the child's report arriving to the child's exit. */
  readonly exitAfterReportMs: number;
}

/** Runs the child with URL and connectTimeoutMs; resolves once it has exited. */
async function connectInChild(url: string, connectTimeoutMs: number): Promise<Outcome> {
  const child = spawn(process.execPath, ['--import', 'tsx', CHILD, url, String(connectTimeoutMs)], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  let reportedAt: number | undefined;
  child.stdout.on('data', (d: Buffer) => {
    stdout += d.toString();
    if (reportedAt === undefined && stdout.includes('\n')) reportedAt = performance.now();
  });
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const exitCode = await deadline(
    new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code))),
    connectTimeoutMs + 30_000,
    `the child to exit (stdout: ${stdout}, stderr: ${stderr.slice(-500)})`,
  ).catch((error: unknown) => {
    child.kill('SIGKILL');
    throw error;
  });
  const exitedAt = performance.now();
  const line = stdout.split('\n')[0] ?? '';
  let report: Outcome['report'];
  try {
    report = JSON.parse(line) as Outcome['report'];
  } catch {
    throw new Error(`the child reported nothing readable (exit ${String(exitCode)}; stdout: ${stdout}; stderr: ${stderr.slice(-1000)})`);
  }
  return { exitCode, stdout, stderr, report, exitAfterReportMs: exitedAt - (reportedAt ?? exitedAt) };
}

const availability = requireServer('redis');

describe.skipIf(!availability.ok)(`redis connect${availability.ok ? '' : ` (skipped: ${availability.reason})`}`, () => {
  let server: ServerHandle;
  let admin: Redis;

  beforeAll(async () => {
    server = await startRedis();
    admin = new Redis({ host: server.host, port: server.port, lazyConnect: true });
    await admin.connect();
  });
  afterAll(async () => {
    admin.disconnect();
    await server.stop();
  });

  it('nothing listening: connect() rejects with ERR_CONNECTION naming the host, caught by the script, which then exits', async () => {
    const port = await freePort();
    const outcome = await connectInChild(`redis://127.0.0.1:${port}`, 10_000);
    expect(outcome.report.code).toBe('ERR_CONNECTION');
    expect(outcome.report.message).toContain(`127.0.0.1:${port}`);
    expect(outcome.report.ms).toBeLessThan(10_000);
    expect(outcome.exitCode).toBe(3);
    expect(outcome.stderr).toBe('');
    expect(outcome.exitAfterReportMs, `exited ${outcome.exitAfterReportMs.toFixed(0)} ms after its report`).toBeLessThan(1000);
  });

  it('a server that accepts and never answers: connect() rejects within connectTimeoutMs, and the process exits', async () => {
    const proxy = await FaultProxy.start({ host: server.host, port: server.port });
    try {
      proxy.blackhole();
      const timeoutMs = 1500;
      const outcome = await connectInChild(`redis://127.0.0.1:${proxy.port}`, timeoutMs);
      expect(outcome.report.code).toBe('ERR_CONNECTION');
      expect(outcome.report.message).toContain(`127.0.0.1:${proxy.port}`);
      expect(outcome.report.ms).toBeGreaterThanOrEqual(timeoutMs - 50);
      expect(outcome.report.ms).toBeLessThan(timeoutMs + 1500);
      expect(outcome.exitCode).toBe(3);
      expect(outcome.stderr).toBe('');
      expect(outcome.exitAfterReportMs, `exited ${outcome.exitAfterReportMs.toFixed(0)} ms after its report`).toBeLessThan(1000);
    } finally {
      await proxy.close();
    }
  });

  describe('through Sentinel', () => {
    let sentinel: ServerHandle;
    beforeAll(async () => {
      sentinel = await startSentinel('m', { host: server.host, port: server.port });
    });
    afterAll(async () => {
      await sentinel.stop();
    });

    it('a dead sentinel first in the list: connects through the live one', async () => {
      const dead = await freePort();
      const outcome = await connectInChild(`redis+sentinel://127.0.0.1:${dead},127.0.0.1:${sentinel.port}/m`, 10_000);
      expect(outcome.report).toMatchObject({ connected: true });
      expect(outcome.exitCode).toBe(0);
      expect(outcome.stderr).toBe('');
    });

    it('every sentinel dead: connect() rejects within connectTimeoutMs naming the hosts, and the process exits', async () => {
      const [a, b] = [await freePort(), await freePort()];
      const outcome = await connectInChild(`redis+sentinel://127.0.0.1:${a},127.0.0.1:${b}/m`, 1500);
      expect(outcome.report.code).toBe('ERR_CONNECTION');
      expect(outcome.report.message).toContain(`127.0.0.1:${a}`);
      expect(outcome.report.ms).toBeLessThan(1500 + 1500);
      expect(outcome.exitCode).toBe(3);
      expect(outcome.stderr).toBe('');
      expect(outcome.exitAfterReportMs, `exited ${outcome.exitAfterReportMs.toFixed(0)} ms after its report`).toBeLessThan(1000);
    });
  });

  describe('ACL users', () => {
    const user = async (name: string, ...rules: string[]): Promise<string> => {
      await admin.call('ACL', 'SETUSER', name, 'reset', 'on', `>${name}-secret`, '~*', '&*', '+@all', ...rules);
      return `redis://${name}:${name}-secret@127.0.0.1:${server.port}`;
    };

    it('a user that may not SUBSCRIBE is refused at connect() with one ERR_REFUSED naming it, and nothing printed', async () => {
      const outcome = await connectInChild(await user('nosub', '-subscribe'), 10_000);
      expect(outcome.report.code).toBe('ERR_REFUSED');
      expect(outcome.report.message).toContain('SUBSCRIBE');
      expect(outcome.report.message).toContain('nosub');
      expect(outcome.report.message).not.toContain('nosub-secret');
      expect(outcome.exitCode).toBe(3);
      expect(outcome.stderr).toBe('');
    });

    it('several missing permissions are named together in the one error', async () => {
      const outcome = await connectInChild(await user('partial', '-evalsha', '-xread', '-time'), 10_000);
      expect(outcome.report.code).toBe('ERR_REFUSED');
      for (const command of ['EVALSHA', 'XREAD', 'TIME']) expect(outcome.report.message).toContain(command);
      expect(outcome.report.message).not.toContain('SUBSCRIBE');
      expect(outcome.exitCode).toBe(3);
      expect(outcome.stderr).toBe('');
    });

    it('a user that may only touch another namespace is refused, naming the key pattern it needs', async () => {
      await admin.call('ACL', 'SETUSER', 'elsewhere', 'reset', 'on', '>elsewhere-secret', '~{other}:*', '&*', '+@all');
      const outcome = await connectInChild(`redis://elsewhere:elsewhere-secret@127.0.0.1:${server.port}`, 10_000);
      expect(outcome.report.code).toBe('ERR_REFUSED');
      expect(outcome.report.message).toContain('{connect}:*');
      expect(outcome.exitCode).toBe(3);
      expect(outcome.stderr).toBe('');
    });

    it('a user that may not run INFO connects, and ioredis prints no warning of its own', async () => {
      const outcome = await connectInChild(await user('noinfo', '-info'), 10_000);
      expect(outcome.report).toMatchObject({ connected: true });
      expect(outcome.exitCode).toBe(0);
      expect(outcome.stderr).toBe('');
    });

    it('a password given to a server that needs none connects without a warning on the terminal', async () => {
      const outcome = await connectInChild(`redis://:unneeded@127.0.0.1:${server.port}`, 10_000);
      expect(outcome.report).toMatchObject({ connected: true });
      expect(outcome.exitCode).toBe(0);
      expect(outcome.stderr).toBe('');
    });
  });
});
