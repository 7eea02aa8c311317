/**
 * The default database is private to the user: in $XDG_RUNTIME_DIR/concord when that folder is the user's own, else in
 * concord-UID in the temp directory, created with mode 0700; a folder or file that is a link, another user's, or open
 * to others is refused. Two users of one host (the second one run through setpriv, as root) each get their own.
 */
import { execFileSync } from 'node:child_process';
import { chmodSync, chownSync, existsSync, mkdirSync, mkdtempSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { deadline, eventually } from '../support/wait.js';
import { family, familyPids, killSurvivors, survivors, type Family } from './processes.js';
import { Running, SQLITE_SKIP, concord, lines, sqliteAvailable, type Result } from './run.js';

const UID = process.getuid?.() ?? -1;
/** A uid no test machine gives anyone: the second user of the host. */
const OTHER_UID = 61_234;

function hasSetpriv(): boolean {
  try {
    execFileSync('setpriv', ['--version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

const secondUser = UID === 0 && hasSetpriv() ? undefined : 'needs root and setpriv(1) to run a second user';

/** Whether the second user can start this Node from its own processes (the demo forks workers): not one under /root. */
function secondUserStartsNode(): boolean {
  const start = `require('node:child_process').execFileSync(process.execPath, ['-e', ''])`;
  try {
    execFileSync(
      'setpriv',
      [`--reuid=${String(OTHER_UID)}`, `--regid=${String(OTHER_UID)}`, '--clear-groups', process.execPath, '-e', start],
      {
        stdio: 'ignore',
      },
    );
    return true;
  } catch {
    return false;
  }
}

/** Why the second user cannot run concord's demo here, if it cannot. */
const secondUserRuns = secondUser ?? (secondUserStartsNode() ? undefined : `the second user cannot start ${process.execPath}`);

const dirs: string[] = [];
const running: Running[] = [];
const families: Family[] = [];

/** A fresh folder; `shared`: open to every user with the sticky bit, like /tmp. */
function folder(shared = false): string {
  const dir = mkdtempSync(join(tmpdir(), 'concord-default-'));
  if (shared) chmodSync(dir, 0o1777);
  dirs.push(dir);
  return dir;
}

/** The environment for a run whose default database is decided by these folders only. */
function env(tmp: string, runtime = ''): Record<string, string> {
  return { TMPDIR: tmp, XDG_RUNTIME_DIR: runtime, HOME: tmp };
}

function mode(path: string): number {
  return statSync(path).mode & 0o7777;
}

function expectRefusal(result: Result, pattern: RegExp): void {
  expect(result.code, result.stderr).toBe(1);
  const said = lines(result.stderr);
  expect(said).toHaveLength(1);
  expect(said[0]).toMatch(/^concord: refusing the default database /);
  expect(said[0]).toMatch(pattern);
  expect(said[0]).toMatch(/\(pass --url to choose a database\)$/);
}

describe.skipIf(!sqliteAvailable)(
  `the default database${sqliteAvailable ? '' : ` (skipped: ${SQLITE_SKIP})`}`,
  { timeout: 120_000 },
  () => {
    afterEach(async () => {
      for (const run of running.splice(0)) {
        if (run.child.exitCode === null && run.child.signalCode === null) run.child.kill('SIGKILL');
        await run.exited;
      }
      for (const left of families.splice(0)) killSurvivors(left);
      for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
    });

    it('is concord-UID/concord.db in the temp directory, in a folder created with mode 0700, as the help says', async () => {
      const tmp = folder();
      const result = await concord(['groups', '--json'], { env: env(tmp) });
      expect(result).toMatchObject({ code: 0, stdout: '[]\n' });
      const dir = join(tmp, `concord-${String(UID)}`);
      expect(existsSync(join(dir, 'concord.db'))).toBe(true);
      expect(mode(dir)).toBe(0o700);
      const [general, lockHelp] = await Promise.all([
        concord(['--help'], { env: env(tmp) }),
        concord(['lock', '--help'], { env: env(tmp) }),
      ]);
      expect(general.stdout).toContain(join(dir, 'concord.db'));
      expect(lockHelp.stdout).toContain(join(dir, 'concord.db'));
    });

    it("is in $XDG_RUNTIME_DIR/concord when that folder is the user's own and closed to others; else in the temp directory", async () => {
      const tmp = folder();
      const runtime = folder();
      const inRuntime = await concord(['groups'], { env: env(tmp, runtime) });
      expect(inRuntime.code, inRuntime.stderr).toBe(0);
      expect(existsSync(join(runtime, 'concord', 'concord.db'))).toBe(true);
      expect(mode(join(runtime, 'concord'))).toBe(0o700);
      expect(existsSync(join(tmp, `concord-${String(UID)}`))).toBe(false);

      chmodSync(runtime, 0o755);
      const openRuntime = await concord(['groups'], { env: env(tmp, runtime) });
      expect(openRuntime.code, openRuntime.stderr).toBe(0);
      expect(existsSync(join(tmp, `concord-${String(UID)}`, 'concord.db'))).toBe(true);
    });

    it('refuses a folder that is a symbolic link or open to other users, and a database file that is a link', async () => {
      const linked = folder();
      const target = folder();
      symlinkSync(target, join(linked, `concord-${String(UID)}`));
      const open = folder();
      mkdirSync(join(open, `concord-${String(UID)}`), { mode: 0o700 });
      chmodSync(join(open, `concord-${String(UID)}`), 0o755);
      const linkedFile = folder();
      mkdirSync(join(linkedFile, `concord-${String(UID)}`), { mode: 0o700 });
      const elsewhere = join(folder(), 'elsewhere.db');
      symlinkSync(elsewhere, join(linkedFile, `concord-${String(UID)}`, 'concord.db'));

      const refused = (tmp: string): Promise<Result> => concord(['lock', 'job', '--', 'true'], { env: env(tmp) });
      const [link, loose, fileLink] = await Promise.all([refused(linked), refused(open), refused(linkedFile)]);
      expectRefusal(link, /folder .*: it is a symbolic link/);
      expectRefusal(loose, /folder .*: other users may use it \(mode 0755; chmod 700 it\)/);
      expectRefusal(fileLink, /file .*concord\.db: it is a symbolic link/);
      expect(existsSync(join(target, 'concord.db'))).toBe(false);
      expect(existsSync(elsewhere)).toBe(false);
    });

    it.skipIf(secondUser !== undefined)(
      `refuses a folder or file that belongs to another user${secondUser === undefined ? '' : ` (skipped: ${secondUser})`}`,
      async () => {
        const theirs = folder();
        mkdirSync(join(theirs, `concord-${String(UID)}`), { mode: 0o700 });
        chownSync(join(theirs, `concord-${String(UID)}`), OTHER_UID, OTHER_UID);
        const theirFile = folder();
        mkdirSync(join(theirFile, `concord-${String(UID)}`), { mode: 0o700 });
        writeFileSync(join(theirFile, `concord-${String(UID)}`, 'concord.db'), '');
        chownSync(join(theirFile, `concord-${String(UID)}`, 'concord.db'), OTHER_UID, OTHER_UID);
        const [dirResult, fileResult] = await Promise.all([
          concord(['groups'], { env: env(theirs) }),
          concord(['groups'], { env: env(theirFile) }),
        ]);
        expectRefusal(dirResult, new RegExp(`folder .*: it belongs to uid ${String(OTHER_UID)}, not to uid ${String(UID)}`));
        expectRefusal(fileResult, new RegExp(`file .*: it belongs to uid ${String(OTHER_UID)}, not to uid ${String(UID)}`));
      },
    );

    it.skipIf(secondUserRuns !== undefined)(
      `two users of one host each run lock and the demo on their own default database${secondUserRuns === undefined ? '' : ` (skipped: ${secondUserRuns})`}`,
      async () => {
        const tmp = folder(true);
        // This user holds "shared" in its default database for as long as the test needs.
        const file = join(tmp, 'holder.pids');
        const holder = new Running(['lock', 'shared', '--', ...family(file)], { env: env(tmp) });
        running.push(holder);
        const pids = await eventually(
          () => {
            if (holder.child.exitCode !== null) throw new Error(`the holder exited: ${holder.stderr}`);
            return familyPids(file);
          },
          (seen) => seen !== undefined,
          30_000,
          'the first user to hold the lock',
        );
        if (pids === undefined) throw new Error('unreachable');
        families.push(pids);

        // The other user takes the same lock name at once, with no permission error: it is another database.
        const other = { env: env(tmp), asUid: OTHER_UID };
        const [otherLock, otherDemo, ownDemo] = await Promise.all([
          concord(['lock', 'shared', '--timeout', '0', '--', 'true'], other),
          concord(['demo', '--workers', '2', '--tasks', '10', '--work-ms', '1'], other),
          concord(['demo', '--workers', '2', '--tasks', '10', '--work-ms', '1'], { env: env(tmp) }),
        ]);
        expect(otherLock.code, otherLock.stderr).toBe(0);
        expect(otherDemo.code, `${otherDemo.stdout}\n${otherDemo.stderr}`).toBe(0);
        expect(ownDemo.code, `${ownDemo.stdout}\n${ownDemo.stderr}`).toBe(0);
        // The demo says where the database is.
        expect(otherDemo.stdout).toContain(`on sqlite://${join(tmp, `concord-${String(OTHER_UID)}`, 'concord.db')}`);
        expect(ownDemo.stdout).toContain(`on sqlite://${join(tmp, `concord-${String(UID)}`, 'concord.db')}`);

        for (const [uid, dir] of [
          [UID, join(tmp, `concord-${String(UID)}`)],
          [OTHER_UID, join(tmp, `concord-${String(OTHER_UID)}`)],
        ] as const) {
          expect(statSync(dir).uid).toBe(uid);
          expect(mode(dir)).toBe(0o700);
          expect(statSync(join(dir, 'concord.db')).uid).toBe(uid);
        }

        holder.child.kill('SIGTERM');
        await deadline(holder.exited, 30_000, 'the holder to exit');
        expect(survivors(pids)).toEqual([]);
      },
    );
  },
);
