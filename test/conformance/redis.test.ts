import { describe } from 'vitest';
import { connect } from '../../src/index.js';
import { FaultProxy } from '../support/proxy.js';
import { requireServer, startRedis, type ServerHandle } from '../support/servers.js';
import { describeConformance } from './suite.js';

const availability = requireServer('redis');
let server: ServerHandle | undefined;
const proxies: FaultProxy[] = [];

describe.skipIf(!availability.ok)(`redis${availability.ok ? '' : ` (skipped: ${availability.reason})`}`, () => {
  describeConformance({
    name: 'redis',
    async setup() {
      server = await startRedis();
    },
    async teardown() {
      await Promise.all(proxies.splice(0).map((p) => p.close()));
      await server?.stop();
    },
    url: () => {
      if (!server) throw new Error('redis is not running');
      return server.url;
    },
    shortTtlMs: 750,
    // Expired session keys are reaped on the keyspace notification (Redis expires keys within ~100 ms), or else by
    // a live coordinator's next renewal (a third of its TTL).
    detectionDelayMs: 500,
    async connectFaulty(options) {
      if (!server) throw new Error('redis is not running');
      // Each faulty coordinator talks to Redis through its own proxy, so cutting it cuts nobody else.
      const proxy = await FaultProxy.start({ host: server.host, port: server.port });
      proxies.push(proxy);
      const coordinator = await connect(`redis://127.0.0.1:${proxy.port}`, options);
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
