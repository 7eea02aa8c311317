/**
 * OpenTelemetry for concord: metrics and spans from concord's diagnostics channels, through `@opentelemetry/api`
 * (an optional peer dependency, loaded only by this entry point).
 *
 * ```ts
 * import { instrument } from 'concord/otel';
 * const stop = instrument({ meterProvider, tracerProvider });
 * // ... later
 * stop();
 * ```
 *
 * Metrics: histograms `concord.lock.wait`, `concord.lock.hold`, `concord.driver.call` (ms); counters
 * `concord.lock.acquisitions`, `concord.lock.timeouts`, `concord.lock.lost`, `concord.session.lost`. Attributes:
 * `concord.kind` and `concord.name` on lock metrics (`lockNames: false` leaves names out, for cardinality),
 * `concord.driver` and `concord.op` on backend calls. Spans: one per acquisition (`concord.acquire`, with its token
 * and wait) and per release (`concord.release`).
 *
 * @module concord/otel
 */
import diagnostics_channel from 'node:diagnostics_channel';
import { SpanStatusCode, metrics, trace, type Attributes, type MeterProvider, type Span, type TracerProvider } from '@opentelemetry/api';
import {
  CHANNELS,
  type AcquireContext,
  type DriverCallContext,
  type LostMessage,
  type ReleaseContext,
  type SessionMessage,
} from './diagnostics.js';
import { ConcordError } from './errors.js';

/** What `instrument()` records to. */
export interface InstrumentOptions {
  /** Where metrics go; the global meter provider when left out. */
  readonly meterProvider?: MeterProvider;
  /** Where spans go; the global tracer provider when left out. */
  readonly tracerProvider?: TracerProvider;
  /** Put lock names on metrics and spans (`concord.name`). Default true; turn off when names are unbounded. */
  readonly lockNames?: boolean;
}

/** Subscribes to concord's channels and records what they publish; returns a function that stops recording. */
export function instrument(options: InstrumentOptions = {}): () => void {
  if (typeof options !== 'object') throw new ConcordError('ERR_INVALID_ARGUMENT', 'options must be an object');
  const lockNames = options.lockNames ?? true;
  if (typeof lockNames !== 'boolean') throw new ConcordError('ERR_INVALID_ARGUMENT', 'options.lockNames must be a boolean');
  const meter = (options.meterProvider ?? metrics.getMeterProvider()).getMeter('concord');
  const tracer = (options.tracerProvider ?? trace.getTracerProvider()).getTracer('concord');

  const wait = meter.createHistogram('concord.lock.wait', { unit: 'ms', description: 'From an acquire call to held, or to its failure' });
  const hold = meter.createHistogram('concord.lock.hold', { unit: 'ms', description: 'From acquired to released' });
  const call = meter.createHistogram('concord.driver.call', { unit: 'ms', description: 'One backend request' });
  const acquisitions = meter.createCounter('concord.lock.acquisitions', { description: 'Locks and leaderships acquired' });
  const timeouts = meter.createCounter('concord.lock.timeouts', { description: 'Acquisitions that ran out of time' });
  const lostLocks = meter.createCounter('concord.lock.lost', { description: 'Held locks and leaderships lost' });
  const lostSessions = meter.createCounter('concord.session.lost', { description: 'Sessions lost' });

  const lockAttributes = (context: { kind: string; name: string }): Attributes =>
    lockNames ? { 'concord.kind': context.kind, 'concord.name': context.name } : { 'concord.kind': context.kind };
  const spans = new WeakMap<object, Span>();
  const startSpan = (name: string, context: AcquireContext | ReleaseContext): void => {
    spans.set(
      context,
      tracer.startSpan(name, {
        attributes: { ...lockAttributes(context), 'concord.member': context.coordinator, 'concord.shared': context.shared },
      }),
    );
  };
  const endSpan = (context: object, attributes: Attributes, error?: unknown): void => {
    const span = spans.get(context);
    if (!span) return;
    spans.delete(context);
    span.setAttributes(attributes);
    if (error !== undefined) {
      span.recordException(error instanceof Error ? error : JSON.stringify(error));
      span.setStatus({ code: SpanStatusCode.ERROR, message: error instanceof ConcordError ? error.code : undefined });
    }
    span.end();
  };

  const acquire = handlers<AcquireContext>({
    start: (context: AcquireContext) => {
      startSpan('concord.acquire', context);
    },
    asyncEnd: (context: AcquireContext) => {
      const attributes = lockAttributes(context);
      wait.record(context.waitedMs ?? 0, attributes);
      acquisitions.add(1, attributes);
      endSpan(context, { 'concord.token': String(context.token), 'concord.waited_ms': context.waitedMs ?? 0 });
    },
    error: (context: AcquireContext) => {
      const attributes = lockAttributes(context);
      wait.record(context.waitedMs ?? 0, { ...attributes, 'concord.outcome': codeOf(context.error) });
      if (codeOf(context.error) === 'ERR_LOCK_TIMEOUT') timeouts.add(1, attributes);
      endSpan(context, { 'concord.waited_ms': context.waitedMs ?? 0 }, context.error);
    },
  });
  const release = handlers<ReleaseContext>({
    start: (context: ReleaseContext) => {
      startSpan('concord.release', context);
    },
    asyncEnd: (context: ReleaseContext) => {
      hold.record(context.heldMs, lockAttributes(context));
      endSpan(context, { 'concord.token': String(context.token), 'concord.held_ms': context.heldMs });
    },
    error: (context: ReleaseContext) => {
      hold.record(context.heldMs, lockAttributes(context));
      endSpan(context, { 'concord.token': String(context.token) }, context.error);
    },
  });
  const driverCall = handlers<DriverCallContext>({
    asyncEnd: (context: DriverCallContext) => {
      call.record(context.ms ?? 0, { 'concord.driver': context.driver, 'concord.op': context.op });
    },
    error: (context: DriverCallContext) => {
      call.record(context.ms ?? 0, {
        'concord.driver': context.driver,
        'concord.op': context.op,
        'concord.outcome': codeOf(context.error),
      });
    },
  });
  const onLost = (message: unknown): void => {
    lostLocks.add(1, lockAttributes(message as LostMessage));
  };
  const onSession = (message: unknown): void => {
    if ((message as SessionMessage).to === 'lost') lostSessions.add(1);
  };

  const acquireChannel = diagnostics_channel.tracingChannel<object, AcquireContext>(CHANNELS.acquire);
  const releaseChannel = diagnostics_channel.tracingChannel<object, ReleaseContext>(CHANNELS.release);
  const driverCallChannel = diagnostics_channel.tracingChannel<object, DriverCallContext>(CHANNELS.driverCall);
  acquireChannel.subscribe(acquire);
  releaseChannel.subscribe(release);
  driverCallChannel.subscribe(driverCall);
  diagnostics_channel.subscribe(CHANNELS.lost, onLost);
  diagnostics_channel.subscribe(CHANNELS.session, onSession);
  let stopped = false;
  return () => {
    if (stopped) return;
    stopped = true;
    acquireChannel.unsubscribe(acquire);
    releaseChannel.unsubscribe(release);
    driverCallChannel.unsubscribe(driverCall);
    diagnostics_channel.unsubscribe(CHANNELS.lost, onLost);
    diagnostics_channel.unsubscribe(CHANNELS.session, onSession);
  };
}

/** Every event of a tracing channel, with those not given doing nothing (Node's types want all five). */
function handlers<C extends object>(
  given: Partial<diagnostics_channel.TracingChannelSubscribers<C>>,
): diagnostics_channel.TracingChannelSubscribers<C> {
  const none = (): void => undefined;
  return { start: none, end: none, asyncStart: none, asyncEnd: none, error: none, ...given };
}

function codeOf(error: unknown): string {
  return error instanceof ConcordError ? error.code : 'error';
}
