/**
 * What a postgres:// URL says beyond host, user and database: TLS with libpq's parameters and meanings, parsed here
 * (not by `pg`, whose reading of `sslmode=require` differs from libpq's) and removed from the string `pg` sees.
 *
 * - `sslmode`: `disable` (the default), `allow` and `prefer` connect without TLS (`pg` cannot fall back between the
 *   two); `require` encrypts without checking the certificate, unless `sslrootcert` is given (then as `verify-ca`);
 *   `verify-ca` checks the certificate against the CA; `verify-full` checks the CA and the host name.
 * - `sslrootcert=/path/ca.pem` (or `system`: the system's CAs, and verify-full), `sslcert` + `sslkey` for a client
 *   certificate. `ssl=true` is `sslmode=require`, `ssl=false` is `sslmode=disable`.
 */
import { readFileSync } from 'node:fs';
import type { ConnectionOptions } from 'node:tls';
import type { PoolConfig } from 'pg';
import { ConcordError } from '../../src/errors.js';
import type { DriverContext } from '../../src/driver.js';

export const SSL_MODES = ['disable', 'allow', 'prefer', 'require', 'verify-ca', 'verify-full'] as const;
export type SslMode = (typeof SSL_MODES)[number];
const TLS_PARAMS = ['ssl', 'sslmode', 'sslrootcert', 'sslcert', 'sslkey'];

/** TLS as the URL asks for it; file paths are read at connect time. */
export interface PostgresTls {
  readonly mode: SslMode;
  /** A CA file, 'system', or undefined (Node's default CAs). */
  readonly rootCert?: string;
  readonly cert?: string;
  readonly key?: string;
}

function invalid(message: string): ConcordError {
  return new ConcordError('ERR_INVALID_URL', `url: ${message}`);
}

/** Validates the TLS parameters (no I/O). */
export function parseTls(params: URLSearchParams): PostgresTls {
  const ssl = params.get('ssl');
  let mode: string | null = params.get('sslmode');
  if (mode === null && ssl !== null) {
    if (ssl === 'true' || ssl === '1') mode = 'require';
    else if (ssl === 'false' || ssl === '0') mode = 'disable';
    else throw invalid(`ssl must be true or false, got "${ssl}"`);
  }
  const rootCert = params.get('sslrootcert') ?? undefined;
  if (mode === null) mode = rootCert === 'system' ? 'verify-full' : 'disable';
  if (!(SSL_MODES as readonly string[]).includes(mode)) throw invalid(`sslmode must be one of ${SSL_MODES.join(', ')}, got "${mode}"`);
  const cert = params.get('sslcert') ?? undefined;
  const key = params.get('sslkey') ?? undefined;
  if ((cert === undefined) !== (key === undefined)) throw invalid('sslcert and sslkey go together (a client certificate and its key)');
  if (rootCert === 'system' && mode !== 'verify-full') throw invalid(`sslrootcert=system needs sslmode=verify-full, got "${mode}"`);
  return {
    mode: mode as SslMode,
    ...(rootCert !== undefined ? { rootCert } : {}),
    ...(cert !== undefined ? { cert } : {}),
    ...(key !== undefined ? { key } : {}),
  };
}

function readPem(path: string, param: string, read: (path: string) => string): string {
  try {
    return read(path);
  } catch (error) {
    throw new ConcordError('ERR_INVALID_URL', `url: ${param} "${path}" cannot be read (${(error as Error).message})`, { cause: error });
  }
}

/** The `ssl` option of `pg`: false, or Node TLS options. */
export function tlsOptions(
  tls: PostgresTls,
  read: (path: string) => string = (path) => readFileSync(path, 'utf8'),
): false | ConnectionOptions {
  if (tls.mode === 'disable' || tls.mode === 'allow' || tls.mode === 'prefer') return false;
  const ca = tls.rootCert !== undefined && tls.rootCert !== 'system' ? readPem(tls.rootCert, 'sslrootcert', read) : undefined;
  const client =
    tls.cert !== undefined && tls.key !== undefined
      ? { cert: readPem(tls.cert, 'sslcert', read), key: readPem(tls.key, 'sslkey', read) }
      : {};
  const base = { ...(ca !== undefined ? { ca } : {}), ...client };
  // libpq: require with a root certificate verifies the CA, as verify-ca does.
  const mode = tls.mode === 'require' && ca !== undefined ? 'verify-ca' : tls.mode;
  if (mode === 'require') return { ...base, rejectUnauthorized: false };
  if (mode === 'verify-ca') return { ...base, rejectUnauthorized: true, checkServerIdentity: () => undefined };
  return { ...base, rejectUnauthorized: true };
}

/** The pg configuration of a URL: a libpq connection string without concord's own parameters, and TLS made explicit. */
export function poolConfig(context: Pick<DriverContext, 'url' | 'params' | 'sessionTtlMs' | 'connectTimeoutMs'>): PoolConfig {
  const tls = parseTls(context.params);
  const params = new URLSearchParams(context.params);
  for (const name of TLS_PARAMS) params.delete(name);
  const url = new URL(context.url.href);
  url.search = params.toString();
  const ttl = context.sessionTtlMs;
  return {
    connectionString: url.href,
    ssl: tlsOptions(tls),
    connectionTimeoutMillis: Math.max(1000, Math.min(context.connectTimeoutMs, 30_000)),
    // A statement that takes longer than a session lives is as good as lost.
    query_timeout: Math.max(2000, Math.min(ttl, 30_000)),
    keepAlive: true,
    keepAliveInitialDelayMillis: 10_000,
    application_name: 'concord',
  };
}
