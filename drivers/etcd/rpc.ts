/**
 * Calls to etcd: each with a deadline, retried on another host when that cannot apply a write twice, and its failure
 * turned into a ConcordError (a refusal, a lost lease, or a connection error the core may retry).
 *
 * cockatiel serves here as etcd3 wants it, for host failover: a per-host circuit breaker handed to the client. The
 * retry loop stays our own: whether a call may be retried depends on the call (a write only when it never left this
 * process), and its pause must end at once when connect() is aborted, which cockatiel's retry delay does not.
 */
import type { Etcd3, ITxnResponse } from 'etcd3';
import { ConsecutiveBreaker, circuitBreaker, handleWhen, noop } from 'cockatiel';
import { sleep, unlessAborted } from '../../src/clock.js';
import { debug } from '../../src/debug.js';
import type { DriverContext } from '../../src/driver.js';
import { ConcordError, abortedError } from '../../src/errors.js';
import { connectionClosed } from '../../src/kit/index.js';
import type { TxnRequest } from './txn.js';

export type Etcd3Module = typeof import('etcd3');
export type CallOptions = NonNullable<Parameters<Etcd3['kv']['range']>[1]>;
/** How far a failed call may be retried: reads and idempotent writes always; others only when nothing was sent. */
export type Retry = 'always' | 'unsent';

/**
 * Deadlines of calls (gRPC takes them on the wall clock): a call that hangs is given up within the session's TTL and
 * never waits past 10 s; while connecting, never past connect()'s own deadline either, so no call still waiting (the
 * client library's authentication, which cannot be cancelled, included) keeps a process alive after connect() failed.
 */
export class Deadlines {
  readonly callTimeoutMs: number;
  /** Wall-clock ms at which connect() gives up; undefined once connected. */
  connectBy: number | undefined;

  constructor(context: DriverContext) {
    this.callTimeoutMs = Math.min(Math.max(context.sessionTtlMs, 2000), 10_000);
    this.connectBy = Date.now() + context.connectTimeoutMs;
  }

  next(): number {
    const now = Date.now();
    const deadline = now + this.callTimeoutMs;
    // Past connect()'s deadline, a connecting call is refused by the aborted signal before it starts.
    return this.connectBy === undefined || this.connectBy <= now ? deadline : Math.min(deadline, this.connectBy);
  }
}

/**
 * etcd3's fault handling for several hosts. Retries are decided per call (only when they cannot apply a write twice).
 * The package's default circuit breaker would refuse every call to a host for 5 s after three failures, far longer
 * than a session may be suspended; with several hosts, one that just failed to answer is skipped for a second
 * instead, so the next attempt goes to another.
 */
export function hostFailover(mod: Etcd3Module, hosts: number): NonNullable<import('etcd3').IOptions['faultHandling']> {
  return {
    host: () =>
      hosts > 1
        ? circuitBreaker(
            handleWhen((error) => error instanceof mod.GRPCUnavailableError || error instanceof mod.GRPCDeadlineExceededError),
            { halfOpenAfter: 1000, breaker: new ConsecutiveBreaker(1) },
          )
        : noop,
    global: noop,
  };
}

/** One driver's calls to etcd. */
export class Rpc {
  readonly #mod: Etcd3Module;
  readonly #client: Etcd3;
  readonly #deadlines: Deadlines;
  /** One try per host, and one more: a call whose host failed is tried on the next. */
  readonly #attempts: number;
  /** Who we are to etcd, for refusals: never the password. */
  readonly user: string | undefined;
  /** The core's connect signal, until the first session is open: calls give up when it aborts. */
  #connecting: AbortSignal | undefined;
  /** The newest etcd revision seen in any answer. */
  #revision = 0n;
  #closed = false;

  constructor(mod: Etcd3Module, client: Etcd3, hosts: number, user: string | undefined, deadlines: Deadlines, connecting: AbortSignal) {
    this.#mod = mod;
    this.#client = client;
    this.#attempts = hosts + 1;
    this.user = user;
    this.#deadlines = deadlines;
    this.#connecting = connecting;
  }

  /** The newest revision any answer carried: a lower bound of etcd's current revision. */
  get revision(): bigint {
    return this.#revision;
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** The connect signal while connecting, else undefined. */
  get connecting(): AbortSignal | undefined {
    return this.#connecting;
  }

  /** The first session is open: calls no longer end with connect()'s signal or deadline. */
  connected(): void {
    this.#connecting = undefined;
    this.#deadlines.connectBy = undefined;
  }

  /** Every later call fails with ERR_CONNECTION, and none is retried. */
  close(): void {
    this.#closed = true;
  }

  /** Whether `error` (a cause kept by a ConcordError) is etcd refusing a permission. */
  isPermissionDenied(error: unknown): boolean {
    return error instanceof this.#mod.EtcdPermissionDeniedError;
  }

  /** "user "x"" or "anonymous access", for messages. */
  get who(): string {
    return this.user === undefined ? 'anonymous access' : `user "${this.user}"`;
  }

  /**
   * One RPC with a deadline, retried on another host when that is safe; failures become ConcordErrors. While
   * connecting, it gives up as soon as the connect signal aborts.
   */
  async call<T>(what: string, retry: Retry, call: (options: CallOptions, attempt: number) => Promise<T>): Promise<T> {
    const signal = this.#connecting;
    for (let attempt = 1; ; attempt++) {
      if (this.#closed) throw connectionClosed('etcd');
      if (signal?.aborted) throw abortedError(signal, 'connecting');
      try {
        const response = await unlessAborted(call({ deadline: this.#deadlines.next() }, attempt), signal, 'connecting');
        this.#observe(response);
        return response;
      } catch (error) {
        if (error instanceof ConcordError) throw error;
        if (error instanceof this.#mod.EtcdLeaseInvalidError) {
          throw new ConcordError('ERR_SESSION_LOST', `etcd ${what}: the session's lease has expired`, { cause: error });
        }
        const refused = this.#refusal(what, error);
        if (refused) throw refused;
        const message = error instanceof Error ? error.message : String(error);
        const again = attempt < this.#attempts && !this.#closed && (retry === 'always' ? this.#transient(error) : this.#unsent(error));
        debug('etcd %s failed (attempt %d%s): %s', what, attempt, again ? ', retrying' : '', message);
        if (!again) throw new ConcordError('ERR_CONNECTION', `etcd ${what} failed: ${message}`, { cause: error });
        // Held: a caller awaits this call (close() revoking its lease, say), so the pause must keep the process up.
        await sleep(25 * attempt, signal, true);
      }
    }
  }

  /** One transaction; `retried`, when given, is sent instead of `request` by every attempt after the first. */
  txn(what: string, retry: Retry, request: TxnRequest, retried: TxnRequest = request): Promise<ITxnResponse> {
    return this.call(what, retry, (options, attempt) => this.#client.kv.txn(attempt === 1 ? request : retried, options));
  }

  /** ERR_REFUSED for what etcd will refuse again however often it is asked: credentials and permissions. */
  #refusal(what: string, error: unknown): ConcordError | undefined {
    const mod = this.#mod;
    const message = error instanceof Error ? error.message : String(error);
    if (error instanceof mod.EtcdPermissionDeniedError) {
      return new ConcordError('ERR_REFUSED', `etcd refused ${what}: ${this.who} lacks the permission (${message})`, { cause: error });
    }
    if (error instanceof mod.EtcdAuthenticationFailedError) {
      return new ConcordError('ERR_REFUSED', `etcd refused the user name or password of user "${this.user ?? ''}" (${message})`, {
        cause: error,
      });
    }
    if (/user name is empty/.test(message)) {
      return new ConcordError('ERR_REFUSED', `etcd refused ${what}: authentication is enabled and the URL names no user (${message})`, {
        cause: error,
      });
    }
    return undefined;
  }

  /** Remembers the newest revision any answer carried. */
  #observe(response: unknown): void {
    const header = (response as { header?: { revision?: unknown } } | undefined)?.header;
    if (typeof header?.revision === 'string') {
      const revision = BigInt(header.revision);
      if (revision > this.#revision) this.#revision = revision;
    }
  }

  #transient(error: unknown): boolean {
    const mod = this.#mod;
    return !(
      error instanceof mod.EtcdAuthenticationFailedError ||
      error instanceof mod.EtcdPermissionDeniedError ||
      error instanceof mod.GRPCInvalidArgumentError ||
      error instanceof mod.ClientClosedError
    );
  }

  /** The request never left this process (no connection to that host): trying another host cannot apply it twice. */
  #unsent(error: unknown): boolean {
    return (
      this.#transient(error) && error instanceof Error && /No connection established|ECONNREFUSED|failed to connect/i.test(error.message)
    );
  }
}
