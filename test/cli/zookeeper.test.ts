/** The concord demo on zookeeper://, against a ZooKeeper server the test starts. */
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { requireServer, startZooKeeper, type ServerHandle } from '../support/servers.js';
import { concord } from './run.js';

const availability = requireServer('zookeeper');

describe.skipIf(!availability.ok)(
  `concord demo on zookeeper${availability.ok ? '' : ` (skipped: ${availability.reason})`}`,
  { timeout: 120_000 },
  () => {
    let server: ServerHandle | undefined;
    beforeAll(async () => {
      server = await startZooKeeper();
    });
    afterAll(async () => {
      await server?.stop();
    });

    it('kills a worker midway, the survivors take over, and every task completes exactly once', async () => {
      if (!server) throw new Error('zookeeper is not running');
      const namespace = `demo${randomBytes(4).toString('hex')}`;
      const result = await concord([
        'demo',
        '--workers',
        '3',
        '--tasks',
        '30',
        '--work-ms',
        '2',
        '--url',
        server.url,
        '--namespace',
        namespace,
      ]);
      expect(result.code, `${result.stdout}\n${result.stderr}`).toBe(0);
      expect(result.stdout).toMatch(/^concord demo: 3 workers, 30 tasks, on zookeeper:\/\//);
      expect(result.stdout).toMatch(/killed worker-\d \(pid \d+, SIGKILL\)/);
      expect(result.stdout).toMatch(/^ {2}verdict {3}PASS: every one of the 30 tasks completed exactly once$/m);
    });
  },
);
