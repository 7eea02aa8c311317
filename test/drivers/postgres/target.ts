/**
 * The conformance target for PostgreSQL: the machine's own server (or CONCORD_TEST_POSTGRES_URL); the suite keeps
 * tests apart by namespace. Each faulty coordinator reaches the server through a fault proxy of its own.
 */
import { connect } from '../../../src/index.js';
import { driver } from '../../../drivers/postgres/index.js';
import type { ConformanceTarget } from '../../conformance/target.js';
import { FaultProxy } from '../../support/proxy.js';

export function sharedServerTarget(options: {
  readonly name: string;
  readonly url: string;
  readonly defaultPort: number;
  readonly descriptor?: ConformanceTarget['descriptor'];
  readonly shortTtlMs: number;
  readonly detectionDelayMs: number;
}): ConformanceTarget {
  const proxies: FaultProxy[] = [];
  return {
    name: options.name,
    ...(options.descriptor ? { descriptor: options.descriptor } : {}),
    shortTtlMs: options.shortTtlMs,
    detectionDelayMs: options.detectionDelayMs,
    setup: () => Promise.resolve(),
    async teardown() {
      await Promise.all(proxies.splice(0).map((p) => p.close()));
    },
    url: () => options.url,
    async connectFaulty(connectOptions) {
      const url = new URL(options.url);
      const proxy = await FaultProxy.start({ host: url.hostname, port: Number(url.port || options.defaultPort) });
      proxies.push(proxy);
      url.hostname = '127.0.0.1';
      url.port = String(proxy.port);
      const coordinator = await connect(url.href, connectOptions);
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
  };
}

export const postgresDescriptor = driver;
