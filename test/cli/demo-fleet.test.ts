/**
 * The demo's workers when their Node binary cannot be started (missing, or not executable): each is reported failed at
 * once with the reason, none stays "starting", and finishing the fleet does not wait for exits that will never come.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { Fleet, type DemoWorker } from '../../src/cli/demo/fleet.js';
import { deadline } from '../support/wait.js';

const dir = mkdtempSync(join(tmpdir(), 'concord-fleet-'));

afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

/** A fleet of `count` workers on `execPath`; resolves with the failures reported, once every worker has one. */
function failingFleet(execPath: string, count: number): { fleet: Fleet; failures: Promise<Map<string, string>> } {
  const failures = new Map<string, string>();
  let allFailed: () => void = () => undefined;
  const reported = new Promise<void>((resolve) => {
    allFailed = resolve;
  });
  const fleet = new Fleet({
    count,
    group: 'demo-spawn',
    args: ['--url', 'sqlite:///nowhere.db'],
    interrupted: new AbortController().signal,
    execPath,
    onTask: () => {
      throw new Error('a worker that never started asked about a task');
    },
    onChange: (worker: DemoWorker, failure?: string) => {
      if (failure !== undefined) failures.set(worker.name, failure);
      if (failures.size === count) allFailed();
    },
  });
  return { fleet, failures: deadline(reported, 10_000, 'every worker to be reported failed').then(() => failures) };
}

describe('the demo fleet, when the Node binary cannot be started', () => {
  it.each([
    ['missing', join(dir, 'no-such-node'), 'no such file'],
    ['not executable', join(dir, 'not-executable-node'), 'permission denied'],
    ['a directory', dir, 'permission denied'],
  ])('reports each worker failed at once, with the reason, when the binary is %s', async (_what, execPath, reason) => {
    if (execPath.endsWith('not-executable-node')) writeFileSync(execPath, '#!/bin/sh\n', { mode: 0o644 });
    const { fleet, failures } = failingFleet(execPath, 2);
    try {
      expect(await failures).toEqual(
        new Map([
          ['worker-1', `cannot start ${execPath}: ${reason}`],
          ['worker-2', `cannot start ${execPath}: ${reason}`],
        ]),
      );
      expect(fleet.workers.map((worker) => worker.status)).toEqual(['failed', 'failed']);
      expect(fleet.running()).toEqual([]);
      // Nothing to wait for: no worker process exists.
      await deadline(fleet.finish(), 5000, 'the fleet to finish');
    } finally {
      fleet.close();
    }
  });
});
