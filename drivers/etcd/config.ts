/**
 * etcd://h:p[,h:p...] and etcds:// URLs -> etcd3 client options.
 *
 *   etcds://user:pw@h1:2379,h2:2379?ca=/path/ca.pem&cert=/path/client.pem&key=/path/client-key.pem
 *
 * ca, cert and key are PEM file paths (etcds only). Without ca, the system's root certificates are trusted.
 */
import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { rootCertificates } from 'node:tls';
import type { IOptions } from 'etcd3';
import { ConcordError } from '../../src/errors.js';
import type { DriverContext } from '../../src/driver.js';
import { hostList } from '../../src/url.js';

export const DEFAULT_PORT = 2379;

/**
 * The etcd client (grpc-js) sends a host as the TLS server name, IP address or not; Node 26 refuses an IP address
 * there (RFC 6066; a deprecation warning before), so every connection attempt to it would fail.
 */
const IP_SERVER_NAME_REFUSED = Number(process.versions.node.split('.')[0]) >= 26;

export interface EtcdConfig {
  /** `http://h:p` / `https://h:p`, the form the etcd3 client wants. */
  readonly hosts: string[];
  readonly tls: boolean;
  readonly credentials: IOptions['credentials'];
  readonly auth: { readonly username: string; readonly password: string } | undefined;
}

export function etcdConfig(context: DriverContext): EtcdConfig {
  const scheme = context.url.protocol.slice(0, -1).toLowerCase();
  const tls = scheme === 'etcds';
  const listed = hostList(context.rawUrl, DEFAULT_PORT);
  const ip = tls && IP_SERVER_NAME_REFUSED ? listed.find(({ host }) => isIP(host) !== 0) : undefined;
  if (ip) {
    throw new ConcordError(
      'ERR_INVALID_URL',
      `etcds:// needs host names on Node ${process.versions.node}: the etcd client would send ${ip.host} as the TLS server name, which this Node refuses for an IP address; use a name the server's certificate carries (such as localhost)`,
    );
  }
  const hosts = (listed.length > 0 ? listed : [{ host: '127.0.0.1', port: DEFAULT_PORT }]).map(
    ({ host, port }) => `${tls ? 'https' : 'http'}://${host.includes(':') ? `[${host}]` : host}:${port}`,
  );
  if (context.url.pathname !== '' && context.url.pathname !== '/') {
    throw new ConcordError(
      'ERR_INVALID_URL',
      `url for etcd takes no path (use the namespace option for a key prefix), got "${context.url.pathname}"`,
    );
  }

  const file = (name: string): Buffer | undefined => {
    const path = context.params.get(name);
    if (path === null) return undefined;
    if (!tls) throw new ConcordError('ERR_INVALID_URL', `url parameter ${name} needs the etcds: scheme`);
    try {
      return readFileSync(path);
    } catch (cause) {
      throw new ConcordError('ERR_INVALID_URL', `url parameter ${name}: cannot read ${JSON.stringify(path)}`, { cause });
    }
  };
  const ca = file('ca');
  const cert = file('cert');
  const key = file('key');
  if ((cert === undefined) !== (key === undefined)) {
    throw new ConcordError('ERR_INVALID_URL', 'url parameters cert and key go together: give both or neither');
  }
  const credentials =
    ca !== undefined || cert !== undefined
      ? { rootCertificate: ca ?? Buffer.from(rootCertificates.join('\n')), certChain: cert, privateKey: key }
      : undefined;

  const username = decodeURIComponent(context.url.username);
  const password = decodeURIComponent(context.url.password);
  if (username === '' && password !== '') throw new ConcordError('ERR_INVALID_URL', 'url has a password but no user name');
  return { hosts, tls, credentials, auth: username === '' ? undefined : { username, password } };
}
