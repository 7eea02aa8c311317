/**
 * redis://, rediss:// and redis+sentinel:// URLs -> ioredis options.
 *
 *   redis://[user[:password]@]host[:port][/db]
 *   rediss://...?ca=/path/ca.pem&cert=/path/cert.pem&key=/path/key.pem&servername=x&rejectUnauthorized=false
 *   redis+sentinel://[user[:password]@]h:p[,h:p...]/MASTER[?db=N&sentinelPassword=...&sentinelUsername=...&tls=true]
 *   redis+cluster://[user[:password]@]h:p[,h:p...][?tls=true] (any nodes of the cluster; database 0 only, as Redis Cluster)
 *
 * Driver parameters (all optional): keyspaceEvents=false (never touch notify-keyspace-events), allowEviction=true
 * (connect even to a server that may evict any key; see index.ts), and on redis+sentinel:// and redis+cluster:// urls
 * replicas=N (a grant counts once N replicas have it; see index.ts). The core's connectTimeoutMs bounds connecting; it
 * also bounds each TCP connection attempt here.
 *
 * A parameter that would be ignored is refused: sentinelPassword and sentinelUsername only mean something on a
 * redis+sentinel:// url, tls on redis+sentinel:// and redis+cluster:// (rediss:// is TLS), and the TLS parameters need
 * rediss:// or tls=true; replicas on redis:// and rediss:// (a single server has no replica that could be promoted).
 */
import { readFileSync } from 'node:fs';
import type { ConnectionOptions } from 'node:tls';
import type { RedisOptions } from 'ioredis';
import { ConcordError } from '../../src/errors.js';
import { hostList } from '../../src/url.js';
import type { SlotLocator } from './cluster.js';

export interface RedisSettings {
  /** Options shared by every connection of a driver (each connection adds its own). */
  readonly base: RedisOptions;
  readonly db: number;
  readonly keyspaceEvents: boolean;
  /** Connect even when the server may evict any key (maxmemory with an allkeys-* policy). */
  readonly allowEviction: boolean;
  /** ?replicas=N: every grant and release waits (WAIT) until N replicas have it; 0 when not asked for. */
  readonly replicas: number;
  /** redis+cluster://: the nodes the url names, asked for the master of the namespace's slot (cluster.ts). */
  readonly clusterNodes?: ReadonlyArray<{ readonly host: string; readonly port: number }>;
  /** Set by the driver for redis+cluster://: where the namespace's slot is served. */
  readonly locator?: SlotLocator;
}

const TLS_PARAMS = ['ca', 'cert', 'key', 'servername', 'rejectUnauthorized'];
const SENTINEL_PARAMS = ['sentinelPassword', 'sentinelUsername', 'tls'];
const CLUSTER_REFUSED = ['sentinelPassword', 'sentinelUsername', 'db'];
const KNOWN = new Set([...TLS_PARAMS, ...SENTINEL_PARAMS, 'keyspaceEvents', 'db', 'allowEviction', 'replicas']);

function bad(message: string): ConcordError {
  return new ConcordError('ERR_INVALID_URL', message);
}

function flag(params: URLSearchParams, name: string, fallback: boolean): boolean {
  const raw = params.get(name);
  if (raw === null) return fallback;
  if (raw === 'true' || raw === '1') return true;
  if (raw === 'false' || raw === '0') return false;
  throw bad(`url parameter ${name} must be true or false, got ${JSON.stringify(raw)}`);
}

function integer(raw: string, name: string, min: number, max: number): number {
  const value = Number(raw);
  if (raw.trim() === '' || !Number.isInteger(value) || value < min || value > max) {
    throw bad(`url ${name} must be an integer from ${min} to ${max}, got ${JSON.stringify(raw)}`);
  }
  return value;
}

function readPem(params: URLSearchParams, name: string): Buffer | undefined {
  const file = params.get(name);
  if (file === null) return undefined;
  try {
    return readFileSync(file);
  } catch (cause) {
    throw new ConcordError('ERR_INVALID_ARGUMENT', `url parameter ${name}: cannot read ${JSON.stringify(file)}`, { cause });
  }
}

function tlsOptions(params: URLSearchParams): ConnectionOptions {
  const tls: ConnectionOptions = {};
  const ca = readPem(params, 'ca');
  const cert = readPem(params, 'cert');
  const key = readPem(params, 'key');
  if (ca) tls.ca = ca;
  if (cert) tls.cert = cert;
  if (key) tls.key = key;
  const servername = params.get('servername');
  if (servername !== null) tls.servername = servername;
  tls.rejectUnauthorized = flag(params, 'rejectUnauthorized', true);
  return tls;
}

function decode(part: string): string {
  try {
    return decodeURIComponent(part);
  } catch {
    throw bad('url has a malformed percent-encoding in its user or password');
  }
}

/** Parses the URL; `raw` is the URL as given (for the sentinel host list). Never puts the password in an error. */
export function redisSettings(url: URL, raw: string, params: URLSearchParams, ttlMs: number, connectTimeoutMs: number): RedisSettings {
  for (const key of params.keys()) {
    if (!KNOWN.has(key)) throw bad(`url has an unknown parameter "${key}" for redis (known: ${[...KNOWN].sort().join(', ')})`);
  }
  const scheme = url.protocol.slice(0, -1).toLowerCase();
  const username = url.username === '' ? undefined : decode(url.username);
  const password = url.password === '' ? undefined : decode(url.password);
  // Per TCP connection attempt (reconnections too): within the TTL, and never past the whole of connect().
  const connectTimeout = Math.max(1, Math.min(Math.max(1000, Math.min(ttlMs, 10_000)), connectTimeoutMs));
  const base: RedisOptions = {
    ...(username === undefined ? {} : { username }),
    ...(password === undefined ? {} : { password }),
    connectTimeout,
    keepAlive: 1000,
    noDelay: true,
  };
  let db = 0;
  let replicas = 0;
  let clusterNodes: RedisSettings['clusterNodes'];
  if (scheme === 'redis+cluster') {
    const refused = CLUSTER_REFUSED.find((p) => params.has(p));
    if (refused !== undefined) {
      throw bad(
        `url parameter ${refused} has no meaning on a redis+cluster url${refused === 'db' ? ' (a cluster has database 0 only)' : ''}`,
      );
    }
    const path = url.pathname.replace(/^\/+/, '').replace(/\/+$/, '');
    if (path !== '') throw bad('a redis+cluster url has no path (a cluster has database 0 only): redis+cluster://host:port[,host:port]');
    clusterNodes = hostList(raw, 6379);
    if (clusterNodes.length === 0) throw bad('a redis+cluster url lists nodes of the cluster: redis+cluster://host:port[,host:port]');
    const tls = flag(params, 'tls', false);
    const tlsParam = tls ? undefined : TLS_PARAMS.find((p) => params.has(p));
    if (tlsParam !== undefined) throw bad(`url parameter ${tlsParam} needs tls=true on a redis+cluster url`);
    if (tls) base.tls = tlsOptions(params);
    if (params.has('replicas')) replicas = integer(params.get('replicas') ?? '', 'parameter replicas', 1, 1000);
  } else if (scheme === 'redis+sentinel') {
    const master = decode(url.pathname.replace(/^\/+/, '').replace(/\/+$/, ''));
    if (master === '') throw bad('a redis+sentinel url names its master: redis+sentinel://host:port[,host:port]/MASTER');
    const hosts = hostList(raw, 26379);
    if (hosts.length === 0) throw bad('a redis+sentinel url lists its sentinels: redis+sentinel://host:port[,host:port]/MASTER');
    if (params.has('db')) db = integer(params.get('db') ?? '', 'parameter db', 0, 1_000_000);
    if (params.has('replicas')) replicas = integer(params.get('replicas') ?? '', 'parameter replicas', 1, 1000);
    const tls = flag(params, 'tls', false);
    const tlsParam = tls ? undefined : TLS_PARAMS.find((p) => params.has(p));
    if (tlsParam !== undefined) throw bad(`url parameter ${tlsParam} needs tls=true on a redis+sentinel url`);
    const sentinelPassword = params.get('sentinelPassword');
    const sentinelUsername = params.get('sentinelUsername');
    Object.assign(base, {
      sentinels: hosts,
      name: master,
      db,
      ...(sentinelPassword === null ? {} : { sentinelPassword }),
      ...(sentinelUsername === null ? {} : { sentinelUsername }),
      ...(tls ? { tls: tlsOptions(params), enableTLSForSentinelMode: true } : {}),
      // Short pauses when every sentinel failed: a pause under way when connecting is given up still runs its course
      // (ioredis cannot cancel it) and keeps the process alive that long.
      sentinelRetryStrategy: (times: number) => Math.min(50 * times, 250),
      // A sentinel that accepts and never answers would hold its lookup (and the process) open for good.
      sentinelCommandTimeout: Math.min(connectTimeout, 2000),
    });
  } else {
    const sentinelParam = SENTINEL_PARAMS.find((p) => params.has(p));
    if (sentinelParam !== undefined) {
      throw bad(
        `url parameter ${sentinelParam} is for redis+sentinel:// urls only${sentinelParam === 'tls' ? ' (use rediss:// for TLS)' : ''}`,
      );
    }
    if (params.has('replicas')) {
      throw bad(`url parameter replicas is for redis+sentinel:// and redis+cluster:// urls only (a ${scheme} url names one server)`);
    }
    if (url.hostname === 'multi-host.invalid') {
      throw bad(`a ${scheme} url has one host; use redis+sentinel:// or redis+cluster:// for several`);
    }
    const path = url.pathname.replace(/^\/+/, '').replace(/\/+$/, '');
    if (path !== '') db = integer(path, 'database index', 0, 1_000_000);
    if (params.has('db')) db = integer(params.get('db') ?? '', 'parameter db', 0, 1_000_000);
    const port = url.port === '' ? 6379 : Number(url.port);
    Object.assign(base, {
      host: url.hostname.replace(/^\[|\]$/g, '') || '127.0.0.1',
      port,
      db,
      ...(scheme === 'rediss' ? { tls: tlsOptions(params) } : {}),
    });
    const tlsParam = scheme === 'rediss' ? undefined : TLS_PARAMS.find((p) => params.has(p));
    if (tlsParam !== undefined) throw bad(`url parameter ${tlsParam} needs a rediss:// url`);
  }
  return {
    base,
    db,
    keyspaceEvents: flag(params, 'keyspaceEvents', true),
    allowEviction: flag(params, 'allowEviction', false),
    replicas,
    ...(clusterNodes ? { clusterNodes } : {}),
  };
}
