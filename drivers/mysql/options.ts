/**
 * What a mysql:// URL says: user, password (never printed), host, port, database, and TLS with the MySQL client's
 * parameters (`ssl-mode`, `ssl-ca`, `ssl-cert`, `ssl-key`; `sslmode`, `sslca`... and `_` for `-` are accepted too).
 *
 * - `ssl-mode`: `DISABLED` (the default) and `PREFERRED` connect without TLS (`mysql2` cannot fall back between the
 *   two); `REQUIRED` encrypts without checking the certificate, unless `ssl-ca` is given (then as `VERIFY_CA`);
 *   `VERIFY_CA` checks the certificate against the CA; `VERIFY_IDENTITY` checks the host name too (`mysql2` checks
 *   it only when told to: `verifyIdentity`). Values are case-insensitive.
 * - `ssl=true` is `VERIFY_IDENTITY` (`sslverify=false` makes it `REQUIRED`), `ssl=false` is `DISABLED`.
 */
import { readFileSync } from 'node:fs';
import type { PoolOptions, SslOptions } from 'mysql2';
import { ConcordError } from '../../src/errors.js';
import type { DriverContext } from '../../src/driver.js';

export const SSL_MODES = ['disabled', 'preferred', 'required', 'verify_ca', 'verify_identity'] as const;
export type SslMode = (typeof SSL_MODES)[number];

/** At most this many connections per coordinator. */
export const POOL_MAX = 3;

export interface MysqlTls {
  readonly mode: SslMode;
  readonly ca?: string;
  readonly cert?: string;
  readonly key?: string;
}

function invalid(message: string): ConcordError {
  return new ConcordError('ERR_INVALID_URL', `url: ${message}`);
}

/** A parameter under any of its spellings: ssl-ca, ssl_ca, sslca. */
function param(params: URLSearchParams, name: string): string | undefined {
  for (const spelling of [`ssl-${name}`, `ssl_${name}`, `ssl${name}`]) {
    const value = params.get(spelling);
    if (value !== null) return value;
  }
  return undefined;
}

/** Validates the TLS parameters (no I/O). */
export function parseTls(params: URLSearchParams): MysqlTls {
  const raw = param(params, 'mode');
  let mode: string;
  if (raw !== undefined) mode = raw.toLowerCase().replace(/-/g, '_');
  else {
    const ssl = params.get('ssl');
    const verify = params.get('sslverify');
    if (verify !== null && verify !== 'true' && verify !== 'false') throw invalid(`sslverify must be true or false, got "${verify}"`);
    if (ssl === null || ssl === 'false' || ssl === '0') mode = 'disabled';
    else if (ssl === 'true' || ssl === '1') mode = verify === 'false' ? 'required' : 'verify_identity';
    else throw invalid(`ssl must be true or false, got "${ssl}"`);
  }
  if (!(SSL_MODES as readonly string[]).includes(mode)) {
    throw invalid(`ssl-mode must be one of ${SSL_MODES.map((m) => m.toUpperCase()).join(', ')}, got "${raw ?? ''}"`);
  }
  const ca = param(params, 'ca');
  const cert = param(params, 'cert');
  const key = param(params, 'key');
  if ((cert === undefined) !== (key === undefined)) throw invalid('ssl-cert and ssl-key go together (a client certificate and its key)');
  // As the MySQL client does: a CA given with REQUIRED is checked.
  if (mode === 'required' && ca !== undefined) mode = 'verify_ca';
  return {
    mode: mode as SslMode,
    ...(ca !== undefined ? { ca } : {}),
    ...(cert !== undefined ? { cert } : {}),
    ...(key !== undefined ? { key } : {}),
  };
}

function readPem(path: string, name: string, read: (path: string) => string): string {
  try {
    return read(path);
  } catch (error) {
    throw new ConcordError('ERR_INVALID_URL', `url: ssl-${name} "${path}" cannot be read (${(error as Error).message})`, { cause: error });
  }
}

/** The `ssl` option of `mysql2`, or undefined for a plain connection. */
export function sslOptions(tls: MysqlTls, read: (path: string) => string = (path) => readFileSync(path, 'utf8')): SslOptions | undefined {
  if (tls.mode === 'disabled' || tls.mode === 'preferred') return undefined;
  return {
    ...(tls.ca !== undefined ? { ca: readPem(tls.ca, 'ca', read) } : {}),
    ...(tls.cert !== undefined && tls.key !== undefined
      ? { cert: readPem(tls.cert, 'cert', read), key: readPem(tls.key, 'key', read) }
      : {}),
    rejectUnauthorized: tls.mode !== 'required',
    // Without it mysql2 accepts a certificate the CA signed for any other host.
    ...(tls.mode === 'verify_identity' ? { verifyIdentity: true } : {}),
  };
}

/** The mysql2 pool options of a URL. */
export function poolOptions(context: Pick<DriverContext, 'url' | 'params' | 'connectTimeoutMs'>): PoolOptions {
  const { url, params } = context;
  const database = decodeURIComponent(url.pathname.replace(/^\//, ''));
  if (database === '') throw invalid('the path must name the database: mysql://user@host:3306/DATABASE');
  const ssl = sslOptions(parseTls(params));
  return {
    host: url.hostname || '127.0.0.1',
    port: url.port === '' ? 3306 : Number(url.port),
    user: decodeURIComponent(url.username) || 'root',
    password: decodeURIComponent(url.password),
    database,
    ...(ssl ? { ssl } : {}),
    connectionLimit: POOL_MAX,
    maxIdle: POOL_MAX,
    idleTimeout: 30_000,
    connectTimeout: Math.max(1000, Math.min(context.connectTimeoutMs, 30_000)),
    enableKeepAlive: true,
    // The release and the uncontended acquire are one round trip of several statements (driver.ts); values are still
    // escaped by the client, never pasted in.
    multipleStatements: true,
    supportBigNumbers: true,
    bigNumberStrings: true,
    dateStrings: true,
    timezone: 'Z',
  };
}
