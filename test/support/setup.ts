/**
 * Runs in every test file: an unhandled rejection fails the test it happened in, and a file that leaves sockets,
 * servers or timers open fails its last hook.
 */
import { afterAll, afterEach, beforeAll, expect } from 'vitest';

const rejections: unknown[] = [];
const onRejection = (reason: unknown): void => {
  rejections.push(reason);
};
process.on('unhandledRejection', onRejection);

// Resource kinds that the test runner itself keeps open are counted at the start and allowed to stay.
const WATCHED = new Set([
  'TCPSocketWrap',
  'TCPServerWrap',
  'TCPWRAP',
  'TCPSERVERWRAP',
  'PipeWrap',
  'Timeout',
  'Immediate',
  'FSReqCallback',
  'ProcessWrap',
  'UDPWRAP',
  'TTYWrap',
]);
let baseline = new Map<string, number>();

function census(): Map<string, number> {
  const counts = new Map<string, number>();
  for (const kind of process.getActiveResourcesInfo()) {
    if (WATCHED.has(kind)) counts.set(kind, (counts.get(kind) ?? 0) + 1);
  }
  return counts;
}

function excess(): string[] {
  const now = census();
  const extra: string[] = [];
  for (const [kind, count] of now) {
    const before = baseline.get(kind) ?? 0;
    if (count > before) extra.push(`${count - before} ${kind}`);
  }
  return extra;
}

beforeAll(() => {
  baseline = census();
});

afterEach(() => {
  const seen = rejections.splice(0);
  if (seen.length > 0) {
    throw new Error(
      `unhandled rejection during the test: ${seen.map((r) => (r instanceof Error ? (r.stack ?? r.message) : String(r))).join('\n')}`,
    );
  }
});

afterAll(async () => {
  // Closing is asynchronous: give handles a few turns of the event loop to go away before judging.
  const deadline = performance.now() + 3000;
  let extra = excess();
  while (extra.length > 0 && performance.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 20));
    extra = excess();
  }
  process.off('unhandledRejection', onRejection);
  expect(extra, `handles left open by this test file: ${extra.join(', ')}`).toEqual([]);
});
