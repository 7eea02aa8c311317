/**
 * `concord lock` and `concord elect` on a real host: the command runs in a process group of its own, and no process of
 * that group (a shell's grandchild included) outlives concord's hold: not on SIGTERM, SIGINT or SIGHUP of concord,
 * not when the lock or leadership is lost, not when the command leaves a background job, and not when concord
 * itself is SIGKILLed. Processes are checked with `ps`, independently of the code under test.
 */
import { constants } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { connect, type Coordinator } from '../../src/index.js';
import { requireServer, startRedis, type ServerHandle } from '../support/servers.js';
import { deadline, eventually } from '../support/wait.js';
import { family, familyPids, killSurvivors, processOf, survivors, type Family, type FamilyOptions } from './processes.js';
import { Running, SQLITE_SKIP, sqliteAvailable, tempDb, type RunOptions } from './run.js';

interface Backend {
  readonly name: string;
  readonly skip: string | undefined;
  /** Whether a SIGKILLed holder keeps its lock until its TTL (false: the backend sees the process die). */
  readonly holdsUntilTtl: boolean;
  start(): Promise<{ url: string; stop: () => Promise<void> }>;
}

const redis = requireServer('redis');

const BACKENDS: readonly Backend[] = [
  {
    name: 'sqlite',
    skip: sqliteAvailable ? undefined : SQLITE_SKIP,
    holdsUntilTtl: false,
    start: () => {
      const db = tempDb();
      return Promise.resolve({
        url: db.url,
        stop: () => {
          db.remove();
          return Promise.resolve();
        },
      });
    },
  },
  {
    name: 'redis',
    skip: redis.ok ? undefined : redis.reason,
    holdsUntilTtl: true,
    start: async () => {
      const server: ServerHandle = await startRedis();
      return { url: server.url, stop: () => server.stop() };
    },
  },
];

/** Long enough that, on a loaded machine, the lock cannot pass before the group is seen gone, unless it is not killed. */
const KILL_TTL_MS = 5000;

for (const backend of BACKENDS) {
  describe.skipIf(backend.skip !== undefined)(
    `the command's process group, on ${backend.name}${backend.skip === undefined ? '' : ` (skipped: ${backend.skip})`}`,
    { timeout: 90_000 },
    () => {
      let url = '';
      let stop: () => Promise<void> = () => Promise.resolve();
      let files: ReturnType<typeof tempDb> | undefined;
      let dir = '';
      const open: Coordinator[] = [];
      const running: Running[] = [];
      const families: Family[] = [];

      beforeAll(async () => {
        ({ url, stop } = await backend.start());
        files = tempDb();
        dir = files.dir;
      });

      afterEach(async () => {
        for (const run of running.splice(0)) {
          if (run.child.exitCode === null && run.child.signalCode === null) {
            run.child.kill('SIGCONT');
            run.child.kill('SIGKILL');
          }
          await run.exited;
        }
        // A failed test may leave a command's processes behind: end them, by pid.
        for (const left of families.splice(0)) killSurvivors(left);
        await Promise.all(open.splice(0).map((coordinator) => coordinator.close()));
      });

      afterAll(async () => {
        await stop();
        files?.remove();
      });

      async function member(name: string): Promise<Coordinator> {
        const coordinator = await connect(url, { member: name });
        open.push(coordinator);
        return coordinator;
      }

      function start(args: readonly string[], options?: RunOptions): Running {
        const run = new Running(args, options);
        running.push(run);
        return run;
      }

      /** The pids `family` wrote to `file`; fails at once, with what concord said, if concord exits first. */
      async function startedOrExited(run: Running, file: string): Promise<Family> {
        const exited = run.exited.then(() => {
          throw new Error(`concord exited before the command started: ${run.stderr}`);
        });
        const pids = await Promise.race([
          eventually(
            () => familyPids(file),
            (seen) => seen !== undefined,
            30_000,
            `the command and its grandchild (${run.stderr})`,
          ),
          exited,
        ]);
        exited.catch(() => undefined);
        if (pids === undefined) throw new Error('unreachable');
        families.push(pids);
        return pids;
      }

      /** Starts concord with the `family` command; resolves once the shell and its grandchild run. */
      async function startFamily(
        args: readonly string[],
        file: string,
        options?: FamilyOptions,
        runOptions?: RunOptions,
      ): Promise<{ run: Running; family: Family }> {
        const run = start([...args, '--url', url, '--', ...family(file, options)], runOptions);
        return { run, family: await startedOrExited(run, file) };
      }

      /**
       * Freezes concord (SIGSTOP) the moment it prints `text` on stderr: right after it holds the lock or leads, before
       * it has seen its command start, the window in which a loaded machine may stall it.
       */
      async function freezeOn(run: Running, text: string): Promise<void> {
        const stream = run.child.stderr;
        if (stream === null) throw new Error('concord has no stderr pipe');
        let onData: () => void = () => undefined;
        const frozen = new Promise<void>((resolve) => {
          // Registered after Running's own listener, so run.stderr already holds the chunk.
          onData = () => {
            if (!run.stderr.includes(text)) return;
            run.child.kill('SIGSTOP');
            resolve();
          };
          stream.on('data', onData);
        });
        const exited = run.exited.then(() => {
          throw new Error(`concord exited before it printed "${text}": ${run.stderr}`);
        });
        exited.catch(() => undefined);
        try {
          await deadline(Promise.race([frozen, exited]), 30_000, `concord to print "${text}"`);
        } finally {
          stream.off('data', onData);
        }
      }

      it('the command leads a process group of its own, which holds its grandchild and not concord', async () => {
        const { run, family: pids } = await startFamily(['lock', 'structure'], join(dir, 'structure.pids'));
        expect(processOf(pids.shell)?.pgid).toBe(pids.shell);
        expect(processOf(pids.grandchild)?.pgid).toBe(pids.shell);
        expect(processOf(run.pid)?.pgid).not.toBe(pids.shell);
        run.child.kill('SIGTERM');
        await deadline(run.exited, 30_000, 'concord lock to exit');
      });

      it.each(['SIGTERM', 'SIGINT', 'SIGHUP'] as const)(
        'lock: %s to concord reaches the whole group, and nothing of it outlives concord',
        async (signal) => {
          const name = `signal-${signal}`;
          const { run, family: pids } = await startFamily(['lock', name], join(dir, `${name}.pids`));
          run.child.kill(signal);
          const exit = await deadline(run.exited, 30_000, 'concord lock to exit');
          expect(survivors(pids), run.stderr).toEqual([]);
          // The shell died of the signal; concord reports it as a shell would.
          expect(exit.code, run.stderr).toBe(128 + constants.signals[signal]);
          const next = await (await member(`after-${signal}`)).lock(name).tryAcquire();
          expect(next).toBeDefined();
          await next?.release();
        },
      );

      it('lock: what the command leaves running is ended before the lock is released', async () => {
        const file = join(dir, 'leave.pids');
        const run = start(['lock', 'leave', '--url', url, '--', ...family(file, { leave: true })]);
        const exit = await deadline(run.exited, 30_000, 'concord lock to exit');
        const pids = familyPids(file);
        if (pids === undefined) throw new Error(`the command did not start: ${run.stderr}`);
        families.push(pids);
        expect(exit.code, run.stderr).toBe(0);
        expect(survivors(pids), run.stderr).toEqual([]);
      });

      it('lock: a lost lock ends the whole group (SIGTERM, then SIGKILL after --grace) before concord exits 4', async () => {
        const name = 'lost';
        const { run, family: pids } = await startFamily(
          ['lock', name, '--session-ttl', '1000', '--grace', '500'],
          join(dir, 'lost.pids'),
          // The grandchild ignores SIGTERM: only the SIGKILL after --grace ends it.
          { ignoreTerm: true },
        );
        // Frozen past its TTL, concord loses the lock (its session expires); the group keeps running meanwhile.
        run.child.kill('SIGSTOP');
        const thief = await member('thief');
        const held = await deadline(thief.lock(name).acquire(), 30_000, 'the session to expire');
        run.child.kill('SIGCONT');
        const exit = await deadline(run.exited, 30_000, 'concord lock to notice the loss');
        expect(exit.code, run.stderr).toBe(4);
        expect(survivors(pids), run.stderr).toEqual([]);
        expect(held.signal.aborted).toBe(false);
        await held.release();
      });

      it('lock: a lock lost while the command starts still ends the whole group, and concord exits 4', async () => {
        const name = 'lost-starting';
        const file = join(dir, 'lost-starting.pids');
        const run = start([
          'lock',
          name,
          '--session-ttl',
          '1000',
          '--grace',
          '500',
          '--url',
          url,
          '--',
          ...family(file, { ignoreTerm: true }),
        ]);
        await freezeOn(run, `holding lock "${name}"`);
        const thief = await member('thief-starting');
        const held = await deadline(thief.lock(name).acquire(), 30_000, 'the session to expire');
        run.child.kill('SIGCONT');
        const exit = await deadline(run.exited, 30_000, 'concord lock to notice the loss');
        expect(exit.code, run.stderr).toBe(4);
        expect(run.stderr).toMatch(/lost lock "lost-starting" while the command ran/);
        // The command may have been stopped before it wrote its pids; what it did start is gone.
        const pids = familyPids(file);
        if (pids !== undefined) {
          families.push(pids);
          expect(survivors(pids), run.stderr).toEqual([]);
        }
        expect(held.signal.aborted).toBe(false);
        await held.release();
      });

      it(`lock: SIGKILL of concord kills the whole group${backend.holdsUntilTtl ? ', before the lock could pass' : ' within the TTL'}`, async () => {
        const name = 'sigkill';
        const { run, family: pids } = await startFamily(
          ['lock', name, '--session-ttl', String(KILL_TTL_MS), '--member', 'doomed'],
          join(dir, 'sigkill.pids'),
        );
        const observer = await member('observer');
        run.child.kill('SIGKILL');
        await run.exited;
        await eventually(
          () => survivors(pids),
          (left) => left.length === 0,
          KILL_TTL_MS,
          'the group to be killed within the TTL',
        );
        // Still the dead holder's: the group was gone before anyone else could hold the lock.
        if (backend.holdsUntilTtl) expect(await observer.lock(name).holder()).toBe('doomed');
      });

      it("lock: SIGKILL of concord's whole process group (a shell's kill -9 %1) still kills the command's group", async () => {
        const { run, family: pids } = await startFamily(['lock', 'job-kill'], join(dir, 'job-kill.pids'), {}, { detached: true });
        process.kill(-run.pid, 'SIGKILL');
        await run.exited;
        await eventually(
          () => survivors(pids),
          (left) => left.length === 0,
          KILL_TTL_MS,
          'the group to be killed',
        );
      });

      it('lock: if the guard dies, concord kills the group itself and releases the lock only then', async () => {
        const name = 'guard-killed';
        const { run, family: pids } = await startFamily(['lock', name], join(dir, 'guard-killed.pids'));
        const guard = processOf(pids.shell)?.ppid ?? 0;
        expect(processOf(guard)?.args).toMatch(/guard\.(ts|js) -- sh -c/);
        process.kill(guard, 'SIGKILL');
        const exit = await deadline(run.exited, 30_000, 'concord lock to exit');
        expect(survivors(pids), run.stderr).toEqual([]);
        expect(exit.code).toBe(1);
        expect(run.stderr).toMatch(/^concord: the guard process of the command \(pid \d+\) ended unexpectedly; killing the command$/m);
        const next = await (await member('after-guard')).lock(name).tryAcquire();
        expect(next).toBeDefined();
        await next?.release();
      });

      it('elect: lost leadership ends the whole group before concord campaigns again', async () => {
        const group = 'elect-lost';
        const { run, family: pids } = await startFamily(
          ['elect', group, '--session-ttl', '1000', '--grace', '500', '--member', 'elector'],
          join(dir, 'elect-lost.pids'),
          { ignoreTerm: true },
        );
        run.child.kill('SIGSTOP');
        const rival = await member('rival');
        const leadership = await deadline(rival.group(group).campaign(), 30_000, 'the rival to be elected');
        run.child.kill('SIGCONT');
        // concord notes its next campaign only once the group is gone.
        await eventually(
          () => run.stderr,
          (text) => text.split('campaigning for leadership').length >= 3,
          30_000,
          'concord to campaign again',
        );
        expect(run.stderr).toMatch(/lost leadership of "elect-lost"/);
        expect(survivors(pids), run.stderr).toEqual([]);
        // Ends concord while the rival still leads, so that it starts no second command.
        run.child.kill('SIGTERM');
        await deadline(run.exited, 30_000, 'concord elect to exit');
        await leadership.resign();
      });

      it('elect: leadership lost while the command starts still ends the whole group before concord campaigns again', async () => {
        const group = 'elect-lost-starting';
        const file = join(dir, 'elect-lost-starting.pids');
        const run = start([
          'elect',
          group,
          '--session-ttl',
          '1000',
          '--grace',
          '500',
          '--member',
          'elector-starting',
          '--url',
          url,
          '--',
          ...family(file, { ignoreTerm: true }),
        ]);
        await freezeOn(run, `elected leader of "${group}"`);
        const rival = await member('rival-starting');
        const leadership = await deadline(rival.group(group).campaign(), 30_000, 'the rival to be elected');
        run.child.kill('SIGCONT');
        await eventually(
          () => run.stderr,
          (text) => text.split('campaigning for leadership').length >= 3,
          30_000,
          'concord to campaign again',
        );
        expect(run.stderr).toMatch(/lost leadership of "elect-lost-starting"/);
        const pids = familyPids(file);
        if (pids !== undefined) {
          families.push(pids);
          expect(survivors(pids), run.stderr).toEqual([]);
        }
        run.child.kill('SIGTERM');
        await deadline(run.exited, 30_000, 'concord elect to exit');
        await leadership.resign();
      });

      it("elect: SIGKILL of the leader's concord kills its group before another leader's command starts", async () => {
        const group = 'elect-kill';
        const ttl = ['--session-ttl', String(KILL_TTL_MS)];
        const first = await startFamily(['elect', group, ...ttl, '--member', 'first'], join(dir, 'elect-first.pids'));
        const firstPids = first.family;
        const secondFile = join(dir, 'elect-second.pids');
        const second = start(['elect', group, ...ttl, '--member', 'second', '--url', url, '--', ...family(secondFile)]);
        await eventually(
          () => second.stderr,
          (text) => text.includes('campaigning for leadership'),
          30_000,
          'the second to campaign',
        );
        first.run.child.kill('SIGKILL');
        const gone = eventually(
          () => survivors(firstPids),
          (left) => left.length === 0,
          KILL_TTL_MS,
          "the first leader's group to be killed within the TTL",
        );
        gone.catch(() => undefined); // awaited below; a failure meanwhile must not go unhandled
        const pids = await startedOrExited(second, secondFile);
        expect(survivors(firstPids)).toEqual([]);
        await gone;
        second.child.kill('SIGTERM');
        const exit = await deadline(second.exited, 30_000, 'the second concord elect to exit');
        expect(exit.code, second.stderr).toBe(128 + constants.signals.SIGTERM);
        expect(survivors(pids), second.stderr).toEqual([]);
      });
    },
  );
}
