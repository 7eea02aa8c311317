/**
 * A conformance target for a driver whose server the tests start: every faulty coordinator reaches it through its
 * own fault proxy, so cutting one link cuts nobody else.
 */
import { connect } from '../../src/index.js';
import { FaultProxy } from '../support/proxy.js';
import type { ServerHandle } from '../support/servers.js';
import type { ConformanceTarget } from './target.js';

export interface ServedOptions {
  readonly name: string;
  readonly scheme: string;
  readonly start: () => Promise<ServerHandle>;
  readonly shortTtlMs: number;
  readonly detectionDelayMs: number;
}

export function servedTarget(options: ServedOptions): ConformanceTarget {
  let server: ServerHandle | undefined;
  const proxies: FaultProxy[] = [];
  const running = (): ServerHandle => {
    if (!server) throw new Error(`${options.name} is not running`);
    return server;
  };
  return {
    name: options.name,
    shortTtlMs: options.shortTtlMs,
    detectionDelayMs: options.detectionDelayMs,
    async setup() {
      server = await options.start();
    },
    async teardown() {
      await Promise.all(proxies.splice(0).map((p) => p.close()));
      await server?.stop();
    },
    url: () => running().url,
    async connectFaulty(connectOptions) {
      const { host, port } = running();
      const proxy = await FaultProxy.start({ host, port });
      proxies.push(proxy);
      const coordinator = await connect(`${options.scheme}://127.0.0.1:${proxy.port}`, connectOptions);
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
