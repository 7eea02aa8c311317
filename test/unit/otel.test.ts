/**
 * concord/otel with the OpenTelemetry SDK's in-memory exporters: a contended lock yields a wait histogram, a hand-off
 * and a span per acquisition with its token; timeouts, lost locks and lost sessions are counted.
 */
import { afterEach, describe, expect, it } from 'vitest';
import {
  AggregationTemporality,
  MeterProvider,
  MetricReader,
  type DataPoint,
  type Histogram,
  type MetricData,
} from '@opentelemetry/sdk-metrics';
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor } from '@opentelemetry/sdk-trace-base';
import { connect, type Coordinator } from '../../src/index.js';
import { instrument } from '../../src/otel.js';
import { kDriver, kQueued } from '../../src/coordinator.js';
import type { Driver } from '../../src/driver.js';
import { driver as memory } from '../../drivers/memory/index.js';
import { once } from '../support/wait.js';

class Reader extends MetricReader {
  constructor() {
    super({ aggregationTemporalitySelector: () => AggregationTemporality.CUMULATIVE });
  }
  protected onForceFlush(): Promise<void> {
    return Promise.resolve();
  }
  protected onShutdown(): Promise<void> {
    return Promise.resolve();
  }
}

const open: Coordinator[] = [];
const cleanups: (() => Promise<void> | void)[] = [];
let space = 0;

afterEach(async () => {
  await Promise.all(open.splice(0).map((c) => c.close()));
  for (const cleanup of cleanups.splice(0)) await cleanup();
});

async function coordinator(member: string, sessionTtlMs = 2000): Promise<Coordinator> {
  const c = await connect(`memory://otel-${String(space)}`, { member, sessionTtlMs });
  open.push(c);
  return c;
}

function setUp(lockNames?: boolean): { metric(name: string): Promise<MetricData | undefined>; spans: InMemorySpanExporter; stop(): void } {
  const reader = new Reader();
  const meterProvider = new MeterProvider({ readers: [reader] });
  const spans = new InMemorySpanExporter();
  const tracerProvider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(spans)] });
  const stop = instrument({ meterProvider, tracerProvider, ...(lockNames === undefined ? {} : { lockNames }) });
  cleanups.push(
    stop,
    () => meterProvider.shutdown(),
    () => tracerProvider.shutdown(),
  );
  return {
    async metric(name) {
      const { resourceMetrics } = await reader.collect();
      return resourceMetrics.scopeMetrics.flatMap((scope) => scope.metrics).find((m) => m.descriptor.name === name);
    },
    spans,
    stop,
  };
}

const points = (metric: MetricData | undefined): DataPoint<unknown>[] => metric?.dataPoints ?? [];
const total = (metric: MetricData | undefined): number => points(metric).reduce((sum, p) => sum + (p.value as number), 0);

describe('concord/otel', () => {
  it('a contended lock: a wait histogram, a hold histogram, a hand-off, a span per acquisition with its token', async () => {
    space++;
    const otel = setUp();
    const a = await coordinator('a');
    const b = await coordinator('b');
    const first = await a.lock('report').acquire();
    const queued = once(b, kQueued);
    const waiting = b.lock('report').acquire();
    await queued;
    await first.release();
    const second = await waiting;
    await second.release();

    const wait = points(await otel.metric('concord.lock.wait'));
    expect(wait).toHaveLength(1);
    expect(wait[0]?.attributes).toEqual({ 'concord.kind': 'lock', 'concord.name': 'report' });
    const histogram = wait[0]?.value as Histogram;
    expect(histogram.count).toBe(2);
    expect(histogram.max).toBeGreaterThan(0);
    expect((points(await otel.metric('concord.lock.hold'))[0]?.value as Histogram).count).toBe(2);
    expect(total(await otel.metric('concord.lock.acquisitions'))).toBe(2);
    const calls = points(await otel.metric('concord.driver.call'));
    expect(calls.map((p) => p.attributes['concord.op'])).toEqual(expect.arrayContaining(['tryLock', 'unlock']));
    expect(new Set(calls.map((p) => p.attributes['concord.driver']))).toEqual(new Set([memory.name]));

    const acquires = otel.spans.getFinishedSpans().filter((s) => s.name === 'concord.acquire');
    expect(acquires.map((s) => [s.attributes['concord.member'], s.attributes['concord.token']])).toEqual([
      ['a', String(first.token)],
      ['b', String(second.token)],
    ]);
    // The hand-off: b's span began before a released and ended after.
    const released = otel.spans.getFinishedSpans().find((s) => s.name === 'concord.release' && s.attributes['concord.member'] === 'a');
    expect(released).toBeDefined();
    const waited = acquires[1];
    expect(waited?.attributes['concord.waited_ms']).toBeGreaterThan(0);
    expect(
      waited && released && waited.startTime[0] * 1e9 + waited.startTime[1] <= released.startTime[0] * 1e9 + released.startTime[1],
    ).toBe(true);
  });

  it('counts timeouts (the span ends in error), lost locks and lost sessions; lockNames: false leaves names out', async () => {
    space++;
    const otel = setUp(false);
    const a = await coordinator('a', 400);
    const b = await coordinator('b');
    const held = await a.lock('secret-name').acquire();
    await expect(b.lock('secret-name').acquire({ timeoutMs: 10 })).rejects.toMatchObject({ code: 'ERR_LOCK_TIMEOUT' });
    const timeouts = points(await otel.metric('concord.lock.timeouts'));
    expect(timeouts.map((p) => [p.attributes, p.value])).toEqual([[{ 'concord.kind': 'lock' }, 1]]);
    const failed = otel.spans.getFinishedSpans().find((s) => s.name === 'concord.acquire' && s.attributes['concord.member'] === 'b');
    expect(failed?.status).toMatchObject({ code: 2, message: 'ERR_LOCK_TIMEOUT' });
    expect(failed?.attributes['concord.name']).toBeUndefined();

    const instance = (a as unknown as Record<symbol, Driver | undefined>)[kDriver];
    if (!instance || !memory.faults) throw new Error('the memory driver has no link faults');
    const link = memory.faults(instance);
    const lost = once(a, 'lost');
    link.disconnect();
    await lost;
    link.reconnect();
    expect(held.signal.aborted).toBe(true);
    expect(total(await otel.metric('concord.lock.lost'))).toBe(1);
    expect(total(await otel.metric('concord.session.lost'))).toBe(1);
  });

  it('stops recording when stopped, and refuses bad options', async () => {
    space++;
    const otel = setUp();
    expect(() => instrument({ lockNames: 'no' as unknown as boolean })).toThrow(
      expect.objectContaining({ code: 'ERR_INVALID_ARGUMENT' }) as Error,
    );
    const a = await coordinator('a');
    await (await a.lock('x').acquire()).release();
    expect(total(await otel.metric('concord.lock.acquisitions'))).toBe(1);
    otel.stop();
    otel.stop();
    await (await a.lock('x').acquire()).release();
    expect(total(await otel.metric('concord.lock.acquisitions'))).toBe(1);
    expect(otel.spans.getFinishedSpans().filter((s) => s.name === 'concord.acquire')).toHaveLength(1);
  });
});
