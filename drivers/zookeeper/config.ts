/**
 * zookeeper://[user:password@]h:p[,h:p...][/chroot] -> what the client needs.
 *
 * The chroot is applied by the driver as a path prefix (created on first use), not by the client, so it need not
 * exist beforehand. user:password authenticates with ZooKeeper's digest scheme; nodes are then created readable and
 * writable by that user only.
 */
import { ConcordError } from '../../src/errors.js';
import type { DriverContext } from '../../src/driver.js';
import { hostList } from '../../src/url.js';

export const DEFAULT_PORT = 2181;

export interface ZooKeeperConfig {
  /** `h:p,h:p` as the client wants it, without a chroot. */
  readonly connectionString: string;
  readonly hostCount: number;
  /** '' or '/a/b': the prefix every path of the driver lives under. */
  readonly chroot: string;
  /** `user:password` for the digest scheme. Never printed. */
  readonly digest: Buffer | undefined;
}

export function zookeeperConfig(context: DriverContext): ZooKeeperConfig {
  const listed = hostList(context.rawUrl, DEFAULT_PORT);
  const hosts = listed.length > 0 ? listed : [{ host: '127.0.0.1', port: DEFAULT_PORT }];
  const connectionString = hosts.map(({ host, port }) => `${host.includes(':') ? `[${host}]` : host}:${port}`).join(',');
  const chroot = context.url.pathname.replace(/\/+$/, '');
  if (
    chroot !== '' &&
    (!chroot.startsWith('/') ||
      chroot
        .split('/')
        .slice(1)
        .some((part) => part === '' || part === '.' || part === '..'))
  ) {
    throw new ConcordError('ERR_INVALID_URL', `url has a malformed ZooKeeper chroot "${chroot}"`);
  }
  let decoded: string;
  try {
    decoded = decodeURIComponent(chroot);
  } catch {
    throw new ConcordError('ERR_INVALID_URL', `url has a malformed ZooKeeper chroot "${chroot}"`);
  }
  const username = decodeURIComponent(context.url.username);
  const password = decodeURIComponent(context.url.password);
  if (username === '' && password !== '') throw new ConcordError('ERR_INVALID_URL', 'url has a password but no user name');
  for (const key of context.params.keys()) {
    throw new ConcordError('ERR_INVALID_URL', `url parameter ${key} is not known to the ZooKeeper driver`);
  }
  return {
    connectionString,
    hostCount: hosts.length,
    chroot: decoded,
    digest: username === '' ? undefined : Buffer.from(`${username}:${password}`),
  };
}
