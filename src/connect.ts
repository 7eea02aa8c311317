/** connect(url): the URL's scheme picks the driver, imported only when used. */
import { ConcordError, abortedError } from './errors.js';
import { CoordinatorImpl } from './coordinator.js';
import type { DriverFactory } from './driver.js';
import {
  DEFAULTS,
  defaultMemberId,
  describe,
  validateName,
  validateOptionsObject,
  validateSignal,
  validateTtl,
  type ConnectOptions,
} from './options.js';
import type { Coordinator } from './types.js';
import { parseUrl, redact } from './url.js';

interface DriverEntry {
  readonly load: () => Promise<{ createDriver: DriverFactory }>;
}

/** Scheme -> driver module. Each module imports its client library itself (see client.ts). */
const DRIVERS = new Map<string, DriverEntry>([
  ['memory', { load: () => import('../drivers/memory/index.js') }],
  ['redis', { load: () => import('../drivers/redis/index.js') }],
  ['rediss', { load: () => import('../drivers/redis/index.js') }],
  ['redis+sentinel', { load: () => import('../drivers/redis/index.js') }],
  ['sqlite', { load: () => import('../drivers/sqlite/index.js') }],
  ['etcd', { load: () => import('../drivers/etcd/index.js') }],
  ['etcds', { load: () => import('../drivers/etcd/index.js') }],
]);

/** The schemes connect() understands. */
export function schemes(): string[] {
  return [...DRIVERS.keys()].sort();
}

const CORE_PARAMS = new Set(['member', 'sessionTtlMs', 'namespace', 'rejoin']);

export async function connect(url: string, options?: ConnectOptions): Promise<Coordinator> {
  validateOptionsObject(options, 'options');
  const parsed = parseUrl(url);
  const scheme = parsed.protocol.slice(0, -1).toLowerCase();
  const entry = DRIVERS.get(scheme);
  if (!entry) {
    throw new ConcordError(
      'ERR_UNKNOWN_DRIVER',
      `url has an unknown scheme "${scheme}:" (known: ${schemes()
        .map((s) => `${s}:`)
        .join(', ')})`,
    );
  }
  const query = parsed.searchParams;
  const member = validateName(
    options?.member ?? query.get('member') ?? defaultMemberId(),
    options?.member !== undefined ? 'options.member' : 'member',
  );
  const sessionTtlMs = validateTtl(
    options?.sessionTtlMs ?? numberParam(query, 'sessionTtlMs') ?? DEFAULTS.sessionTtlMs,
    options?.sessionTtlMs !== undefined ? 'options.sessionTtlMs' : 'sessionTtlMs',
  );
  const namespace = validateName(
    options?.namespace ?? query.get('namespace') ?? DEFAULTS.namespace,
    options?.namespace !== undefined ? 'options.namespace' : 'namespace',
  );
  const rejoin = options?.rejoin ?? booleanParam(query, 'rejoin') ?? DEFAULTS.rejoin;
  if (typeof rejoin !== 'boolean')
    throw new ConcordError('ERR_INVALID_ARGUMENT', `options.rejoin must be a boolean, got ${describe(rejoin)}`);
  const signal = validateSignal(options?.signal, 'options.signal');
  if (signal?.aborted) throw abortedError(signal, 'connecting');

  const params = new URLSearchParams([...query].filter(([key]) => !CORE_PARAMS.has(key)));
  const module = await entry.load();
  const coordinator = new CoordinatorImpl({ member, url: redact(url), sessionTtlMs, rejoin });
  const driver = await module.createDriver({
    url: parsed,
    rawUrl: url,
    params,
    namespace,
    member,
    sessionTtlMs,
    signal,
    events: coordinator.driverEvents,
  });
  try {
    if (signal?.aborted) throw abortedError(signal, 'connecting');
    await coordinator.start(driver);
    if (signal?.aborted) throw abortedError(signal, 'connecting');
  } catch (error) {
    await coordinator.close();
    throw error;
  }
  return coordinator;
}

function numberParam(query: URLSearchParams, name: string): number | undefined {
  const raw = query.get(name);
  if (raw === null) return undefined;
  const value = Number(raw);
  if (raw.trim() === '' || !Number.isFinite(value)) {
    throw new ConcordError('ERR_INVALID_URL', `url parameter ${name} must be a number, got ${JSON.stringify(raw)}`);
  }
  return value;
}

function booleanParam(query: URLSearchParams, name: string): boolean | undefined {
  const raw = query.get(name);
  if (raw === null) return undefined;
  if (raw === 'true' || raw === '1') return true;
  if (raw === 'false' || raw === '0') return false;
  throw new ConcordError('ERR_INVALID_URL', `url parameter ${name} must be true or false, got ${JSON.stringify(raw)}`);
}
