/** connect(url): the URL's scheme picks the driver, imported only when used. */
import { ConcordError, abortedError } from './errors.js';
import { CoordinatorImpl } from './coordinator.js';
import { driverFor, schemes } from './registry.js';
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

const CORE_PARAMS = new Set(['member', 'sessionTtlMs', 'namespace', 'rejoin', 'connectTimeoutMs']);

/**
 * Connects to the backend the URL names and opens a session. The scheme picks the driver (`memory://NAME`,
 * `sqlite:///ABS/PATH.db`, `redis://`, `rediss://`, `redis+sentinel://`, `etcd://`, `etcds://`); query parameters set
 * the same options as `options` (which win) plus driver-specific ones. Always settles: rejects with ERR_CONNECTION
 * naming the host when the backend has not answered within `connectTimeoutMs`, ERR_INVALID_URL,
 * ERR_UNKNOWN_DRIVER, ERR_DRIVER_UNAVAILABLE, ERR_INVALID_ARGUMENT, ERR_REFUSED or ERR_ABORTED.
 *
 * @example
 * ```ts
 * await using coordinator = await connect('etcd://10.0.0.5:2379,10.0.0.6:2379', { member: 'worker-1', sessionTtlMs: 5000 });
 * ```
 */
export async function connect(url: string, options?: ConnectOptions): Promise<Coordinator> {
  validateOptionsObject(options, 'options');
  const parsed = parseUrl(url);
  const scheme = parsed.protocol.slice(0, -1).toLowerCase();
  const descriptor = driverFor(scheme);
  if (!descriptor) {
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
    Math.max(DEFAULTS.minSessionTtlMs, descriptor.minSessionTtlMs ?? 0),
    (descriptor.minSessionTtlMs ?? 0) > DEFAULTS.minSessionTtlMs ? ` (the shortest session ${descriptor.name} can keep)` : '',
  );
  const namespace = validateName(
    options?.namespace ?? query.get('namespace') ?? DEFAULTS.namespace,
    options?.namespace !== undefined ? 'options.namespace' : 'namespace',
  );
  const rejoin = options?.rejoin ?? booleanParam(query, 'rejoin') ?? DEFAULTS.rejoin;
  if (typeof rejoin !== 'boolean')
    throw new ConcordError('ERR_INVALID_ARGUMENT', `options.rejoin must be a boolean, got ${describe(rejoin)}`);
  const connectTimeoutMs = validateTtl(
    options?.connectTimeoutMs ?? numberParam(query, 'connectTimeoutMs') ?? DEFAULTS.connectTimeoutMs,
    options?.connectTimeoutMs !== undefined ? 'options.connectTimeoutMs' : 'connectTimeoutMs',
  );
  const userSignal = validateSignal(options?.signal, 'options.signal');
  if (userSignal?.aborted) throw abortedError(userSignal, 'connecting');

  const params = new URLSearchParams([...query].filter(([key]) => !CORE_PARAMS.has(key)));
  const redacted = redact(url);
  const deadline = new AbortController();
  // Referenced on purpose: while a driver retries on unreferenced timers, this keeps the process alive until connect()
  // settles, so a script whose only work is connecting hears the outcome instead of exiting silently.
  const timer = setTimeout(() => {
    deadline.abort(new ConcordError('ERR_CONNECTION', `could not connect to ${target(redacted)} within ${connectTimeoutMs} ms`));
  }, connectTimeoutMs);
  const signal = userSignal ? AbortSignal.any([userSignal, deadline.signal]) : deadline.signal;
  try {
    const coordinator = new CoordinatorImpl({ member, url: redacted, sessionTtlMs, rejoin });
    const driver = await unlessAborted(
      descriptor.create({
        url: parsed,
        rawUrl: url,
        params,
        namespace,
        member,
        sessionTtlMs,
        connectTimeoutMs,
        signal,
        events: coordinator.driverEvents,
      }),
      signal,
      (late) => {
        // Connected after connect() gave up: let it go again.
        late.close().catch(() => {
          late.destroy();
        });
      },
    );
    try {
      await unlessAborted(coordinator.start(driver, descriptor.name), signal);
    } catch (error) {
      await coordinator.close();
      throw error;
    }
    return coordinator;
  } finally {
    clearTimeout(timer);
  }
}

/** What a connection error names: the URL's hosts or path, without credentials or parameters. */
function target(redacted: string): string {
  const match = /^[a-z][a-z0-9+.-]*:\/\/(?:[^@/?#]*@)?([^?#]*)/i.exec(redacted);
  const rest = match?.[1] ?? '';
  return rest === '' ? redacted : rest;
}

/** `promise`, unless `signal` aborts first (rejecting with its reason); `late` receives a value that lands after. */
function unlessAborted<T>(promise: Promise<T>, signal: AbortSignal, late?: (value: T) => void): Promise<T> {
  if (signal.aborted) {
    promise.then(late, () => undefined);
    return Promise.reject(abortedError(signal, 'connecting'));
  }
  return new Promise<T>((resolve, reject) => {
    let settled = false;
    const onAbort = (): void => {
      settled = true;
      reject(abortedError(signal, 'connecting'));
    };
    signal.addEventListener('abort', onAbort, { once: true });
    promise.then(
      (value) => {
        signal.removeEventListener('abort', onAbort);
        if (settled) late?.(value);
        else resolve(value);
      },
      (error: unknown) => {
        signal.removeEventListener('abort', onAbort);
        if (!settled) reject(error instanceof Error ? error : new ConcordError('ERR_CONNECTION', String(error)));
      },
    );
  });
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
