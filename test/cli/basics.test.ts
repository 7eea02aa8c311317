/** The concord command without a shared backend: help, version, argument mistakes, ring, and lock, lock --shared and semaphore on memory://. */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { HashRing, Rendezvous, ToozHashRing } from '../../src/index.js';
import { record, ROOT, concord, lines, tempDb } from './run.js';

const KEYS = Array.from({ length: 25 }, (_, i) => `key-${i}`);
const NODES = { a: 1, b: 2, c: 1, 'node-d': 0.5 };
const NODE_LIST = 'a,b:2,c,node-d:0.5';

/** A user mistake: one line on stderr, prefixed, no stack, a non-zero code. */
function expectOneLineError(result: { code: number | null; stderr: string; stdout: string }, pattern: RegExp, code = 2): void {
  expect(result.code).toBe(code);
  const errorLines = lines(result.stderr);
  expect(errorLines).toHaveLength(1);
  expect(errorLines[0]).toMatch(/^concord: /);
  expect(errorLines[0]).toMatch(pattern);
  expect(result.stderr).not.toMatch(/\n\s+at /);
}

// Each test starts several processes: generous limits for a loaded machine.
describe('concord basics', { timeout: 90_000 }, () => {
  it('prints the version and the command list', async () => {
    const manifest = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string };
    const version = await concord(['--version']);
    expect(version).toMatchObject({ code: 0, stdout: `${manifest.version}\n` });
    const help = await concord(['--help']);
    expect(help.code).toBe(0);
    for (const command of [
      'demo',
      'lock',
      'semaphore',
      'elect',
      'groups',
      'members',
      'leader',
      'watch',
      'locks',
      'status',
      'dashboard',
      'ring',
    ])
      expect(help.stdout).toMatch(new RegExp(`^  ${command} `, 'm'));
    expect(help.stdout).not.toMatch(/demo-worker/);
  });

  it('has --help with an example on every command', async () => {
    const results = await Promise.all(
      ['demo', 'lock', 'semaphore', 'elect', 'groups', 'members', 'leader', 'watch', 'locks', 'status', 'dashboard', 'ring'].map(
        async (command) => [command, await concord([command, '--help'])] as const,
      ),
    );
    for (const [command, result] of results) {
      expect(result.code, command).toBe(0);
      expect(result.stdout, command).toMatch(new RegExp(`^usage: concord ${command}`));
      expect(result.stdout, command).toMatch(/^examples?:\n {2}concord /m);
    }
    const help = new Map(results);
    expect(help.get('lock')?.stdout).toMatch(/^ {2}--shared {2,}hold the lock shared/m);
    expect(help.get('semaphore')?.stdout).toMatch(/^ {2}--limit N {2,}the most commands holding a permit of NAME at once \(required\)$/m);
    for (const command of ['lock', 'semaphore']) expect(help.get(command)?.stdout).toMatch(/CONCORD_FENCING_TOKEN/);
  });

  it('reports argument mistakes as one line on stderr with exit code 2', async () => {
    const cases: Array<[string[], RegExp]> = [
      [['frobnicate'], /unknown command "frobnicate"/],
      [['groups', '--bogus'], /unknown option --bogus/],
      [['members'], /missing GROUP/],
      [['lock', 'name'], /missing the command to run/],
      [['lock', 'name', 'echo', 'hi'], /unexpected argument "echo" \(put the command to run after --\)/],
      [['lock', 'name', '--timeout', 'soon', '--', 'true'], /--timeout must be an integer/],
      [['lock', 'name', '--shared=maybe', '--', 'true'], /option --shared is a flag; it takes no value/],
      [['semaphore', 'name', '--', 'true'], /^concord: missing option --limit N: .* from 1 to 1000000 \(see concord semaphore --help\)$/],
      [['semaphore', 'name', '--limit', '0', '--', 'true'], /option --limit must be an integer from 1 to 1000000, got "0"/],
      [['semaphore', 'name', '--limit', '2'], /missing the command to run/],
      [['demo', '--workers', '0'], /--workers must be an integer from 1 to 32/],
      [['demo', '--url', 'memory://x'], /memory:\/\/ lives inside one process/],
      [['ring', 'k'], /--nodes is required/],
      [['ring', '--nodes', 'a,b:-1', 'k'], /weight of "b" must be a number > 0/],
      [['ring', '--nodes', 'a', '--algorithm', 'magic', 'k'], /--algorithm must be rendezvous, ring or tooz/],
      [['groups', '--url', 'nosuch://host'], /unknown scheme "nosuch:"/],
      [['groups', '--url', 'not a url'], /not a valid URL/],
    ];
    const results = await Promise.all(cases.map(([args]) => concord(args)));
    results.forEach((result, i) => {
      expectOneLineError(result, cases[i]?.[1] ?? /./);
    });
  });

  it('never prints a password from the URL', async () => {
    const result = await concord(['groups', '--url', 'nosuch://admin:hunter2@host/x']);
    expect(result.code).not.toBe(0);
    expect(result.stderr + result.stdout).not.toContain('hunter2');
  });

  it('ring prints the same owners as the library, for each algorithm', async () => {
    const placements = { rendezvous: new Rendezvous(NODES), ring: new HashRing(NODES), tooz: new ToozHashRing(NODES) };
    for (const [algorithm, placement] of Object.entries(placements)) {
      const result = await concord(['ring', '--nodes', NODE_LIST, '--algorithm', algorithm, '--replicas', '2', '--json', ...KEYS]);
      expect(result.code, result.stderr).toBe(0);
      const rows = JSON.parse(result.stdout) as Array<{ key: string; owners: string[] }>;
      expect(rows).toEqual(KEYS.map((key) => ({ key, owners: placement.getNodes(key, { replicas: 2 }) })));
    }
  });

  it('ring prints one line per key and reads keys from stdin', async () => {
    const placement = new Rendezvous(NODES);
    const result = await concord(['ring', '--nodes', NODE_LIST], { input: `${KEYS.slice(0, 5).join('\n')}\n` });
    expect(result.code, result.stderr).toBe(0);
    expect(lines(result.stdout)).toEqual(KEYS.slice(0, 5).map((key) => `${key}  ${placement.get(key) ?? ''}`));
  });

  it('lock runs the command with a fencing token and exits with its code (memory://, one process)', async () => {
    const db = tempDb();
    try {
      const file = join(db.dir, 'record.txt');
      const result = await concord(['lock', 'job', '--url', 'memory://cli', '--member', 'cli-test', '--', ...record(file, 7)]);
      expect(result.code, result.stderr).toBe(7);
      expect(readFileSync(file, 'utf8')).toMatch(/^start pid=\d+ token=\d+ term= member=cli-test$/m);
      expect(result.stderr).toMatch(/^concord: holding lock "job" \(fencing token \d+\)$/m);
    } finally {
      db.remove();
    }
  });

  it('lock --shared and semaphore run the command with the same variables and exit with its code (memory://, one process)', async () => {
    const db = tempDb();
    try {
      const file = join(db.dir, 'record.txt');
      const shared = await concord(['lock', 'job', '--shared', '--url', 'memory://cli', '--member', 'cli-test', '--', ...record(file, 7)]);
      expect(shared.code, shared.stderr).toBe(7);
      expect(shared.stderr).toMatch(/^concord: holding shared lock "job" \(fencing token \d+\)$/m);
      const permit = await concord([
        'semaphore',
        'job',
        '--limit',
        '3',
        '--url',
        'memory://cli',
        '--member',
        'cli-test',
        '--',
        ...record(file, 9),
      ]);
      expect(permit.code, permit.stderr).toBe(9);
      expect(permit.stderr).toMatch(/^concord: holding a permit of semaphore "job" \(fencing token \d+\)$/m);
      expect(lines(readFileSync(file, 'utf8'))).toEqual([
        expect.stringMatching(/^start pid=\d+ token=\d+ term= member=cli-test$/),
        expect.stringMatching(/^start pid=\d+ token=\d+ term= member=cli-test$/),
      ]);
      const named = await concord([
        'semaphore',
        'pool',
        '--limit',
        '1',
        '--url',
        'memory://cli',
        '--quiet',
        '--',
        'sh',
        '-c',
        'test "$CONCORD_LOCK" = pool',
      ]);
      expect(named).toMatchObject({ code: 0, stderr: '' });
      const missing = await concord([
        'semaphore',
        'job',
        '--limit',
        '1',
        '--url',
        'memory://cli',
        '--quiet',
        '--',
        'concord-no-such-command-xyz',
      ]);
      expect(missing.code).toBe(127);
    } finally {
      db.remove();
    }
  });

  it('lock reports a command that cannot be started', async () => {
    const result = await concord(['lock', 'job', '--url', 'memory://cli', '--quiet', '--', 'concord-no-such-command-xyz']);
    expect(result.code).toBe(127);
    expect(lines(result.stderr)).toEqual(['concord: cannot run "concord-no-such-command-xyz": command not found']);
  });
});
