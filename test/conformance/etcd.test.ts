import { describe } from 'vitest';
import { connect } from '../../src/index.js';
import { FaultProxy } from '../support/proxy.js';
import { requireServer, startEtcd, type ServerHandle } from '../support/servers.js';
import { describeConformance } from './suite.js';

const availability = requireServer('etcd');
let server: ServerHandle | undefined;
const proxies: FaultProxy[] = [];

describe.skipIf(!availability.ok)(`etcd${availability.ok ? '' : ` (skipped: ${availability.reason})`}`, () => {
  describeConformance({
    name: 'etcd',
    async setup() {
      server = await startEtcd();
    },
    async teardown() {
      await Promise.all(proxies.splice(0).map((p) => p.close()));
      await server?.stop();
    },
    url: () => {
      if (!server) throw new Error('etcd is not running');
      return server.url;
    },
    // etcd's minimum lease.
    shortTtlMs: 2000,
    // Lease expiry is checked every 500 ms by etcd's lessor; the deletions are then pushed to watchers.
    detectionDelayMs: 1000,
    async connectFaulty(options) {
      if (!server) throw new Error('etcd is not running');
      // Each faulty coordinator talks to etcd through its own proxy, so cutting it cuts nobody else.
      const proxy = await FaultProxy.start({ host: server.host, port: server.port });
      proxies.push(proxy);
      const coordinator = await connect(`etcd://127.0.0.1:${proxy.port}`, options);
      return {
        coordinator,
        disconnect: () => {
          proxy.cut();
        },
        reconnect: () => {
          proxy.pass();
        },
      };
    },
  });
});
