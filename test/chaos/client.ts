/**
 * One client process of the chaos campaign. It connects (through its own fault proxies, for a network backend) and
 * runs a seeded random workload in concurrent fibers until told to quiesce:
 *
 * - two lock fibers: acquire with timeouts, acquire with aborts, tryAcquire, withLock and holder() on a few hot names;
 * - where the driver has shared locks, a shared fiber taking shared holds of the same hot names the same ways (so
 *   shared and exclusive requests mix in one line), and two permit fibers taking permits of a couple of semaphores of
 *   PERMIT_LIMIT permits (acquire with timeouts or aborts, tryAcquire, holders());
 * - a membership fiber: join, leave, updateCapabilities and members() on one group, which a watch fiber watches;
 * - a partitioner fiber: opens and closes a partitioner on another group;
 * - an election fiber: campaign (with timeouts and aborts), lead a while, resign; leader() now and then.
 *
 * While it holds a lock or leads, it writes to the harness's fenced register: it stamps the time, then reads
 * `valid`, and only if that said true records the write and sends it, and waits for the answer before the next look.
 * Stamping before the look is what makes the record sound: `valid` true at a moment after the stamp means the session
 * deadline had not passed at the stamp either. A hold's validity is recorded as [acquire resolved, last such stamp].
 * Shared holds and permits write the same way, marked shared (the register fences them by exclusive tokens only).
 *
 * Every operation's start and end go to the history file with a synchronous write, so a SIGKILL loses nothing
 * recorded before it. When quiesced it stops the workload, makes sure it is joined (with final capabilities) and has
 * a partitioner open, and answers the harness's requests for its views. When stopped it waits for every operation to
 * settle, closes the coordinator, records any handle left open, and lets the process exit by itself.
 */
import { closeSync, openSync, writeSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  connect,
  isConcordError,
  type Coordinator,
  type Group,
  type GroupEvent,
  type HeldLock,
  type Holder,
  type Partitioner,
} from '../../src/index.js';
import { Prng } from './prng.js';
import {
  GROUP_ELECTION,
  GROUP_MEMBERS,
  GROUP_PARTITION,
  type ClientConfig,
  finalRoles,
  type ClientRecord,
  type HoldKind,
  PERMIT_LIMIT,
  type ToClient,
  type ToHarness,
  type Views,
} from './protocol.js';

const config = JSON.parse(process.argv[2] ?? '{}') as ClientConfig;
const epoch = BigInt(config.epoch);
const now = (): number => Number(process.hrtime.bigint() - epoch);
const unsafe = config.index === 0 ? config.unsafe : undefined;
const root = new Prng(config.seed).fork(`client${config.index}.${config.incarnation}`);

// ---- recording

const historyFd = openSync(config.history, 'a');
function record(entry: ClientRecord): void {
  writeSync(historyFd, `${JSON.stringify(entry)}\n`);
}

function send(message: ToHarness): void {
  if (process.connected) process.send?.(message, undefined, {}, () => undefined);
}

function describeError(error: unknown): { code: string; message: string } {
  if (isConcordError(error)) return { code: error.code, message: error.message };
  const name = error instanceof Error ? error.constructor.name : typeof error;
  // Not a ConcordError: the checkers flag these (every error the library gives must be one).
  return { code: `NOT_CONCORD:${name}`, message: error instanceof Error ? error.message : String(error) };
}

for (const event of ['uncaughtException', 'unhandledRejection'] as const) {
  process.on(event, (error: unknown) => {
    record({ k: 'crash', at: now(), error: error instanceof Error ? (error.stack ?? error.message) : String(error) });
    process.exit(70);
  });
}

/** Handles present before connect() (stdio; the IPC channel is not counted until it has listeners). */
const baseline = census();
function census(): Map<string, number> {
  const counts = new Map<string, number>();
  for (const kind of process.getActiveResourcesInfo()) counts.set(kind, (counts.get(kind) ?? 0) + 1);
  return counts;
}

record({ k: 'start', proc: config.proc, pid: process.pid, at: now() });

// ---- operations

let opSeq = 0;
const pending = new Map<number, string>();
let onSettled: (() => void) | undefined;

/** `asked`: when the operation was invoked; `at`: when it resolved. */
type Outcome<T> = { ok: true; value: T; asked: number; at: number } | { ok: false; code: string };

/** Runs one operation, recording its start and end. Never rejects. */
async function op<T>(
  f: string,
  name: string | undefined,
  run: () => Promise<T>,
  token?: (value: T) => bigint | undefined,
): Promise<Outcome<T>> {
  const id = ++opSeq;
  pending.set(id, f);
  const asked = now();
  record({ k: 'inv', op: id, f, ...(name === undefined ? {} : { name }), at: asked });
  try {
    const value = await run();
    const at = now();
    const t = token?.(value);
    record({ k: 'ok', op: id, at, ...(t === undefined ? {} : { token: t.toString() }) });
    return { ok: true, value, asked, at };
  } catch (error) {
    const { code, message } = describeError(error);
    record({ k: 'fail', op: id, at: now(), code, message });
    return { ok: false, code };
  } finally {
    pending.delete(id);
    if (pending.size === 0) onSettled?.();
  }
}

// ---- the fenced register

let writeSeq = 0;
const acks = new Map<number, () => void>();

function registerWrite(hold: string, key: string, token: bigint, shared: boolean, look: number): Promise<void> {
  const seq = ++writeSeq;
  record({ k: 'write', hold, seq, at: look });
  return new Promise((resolve) => {
    acks.set(seq, resolve);
    send({ t: 'write', hold, key, token: token.toString(), shared, seq, look });
  });
}

let holdSeq = 0;
const firstTokens = new Map<string, bigint>();

interface Validity {
  readonly valid: boolean;
  assertValid(): void;
}

/** One hold to use: what is held, its token and mode, and when it was asked for and granted. */
interface Use {
  readonly kind: HoldKind;
  readonly name: string;
  readonly token: bigint;
  readonly holder: Validity;
  /** When the acquire or campaign resolved. */
  readonly at: number;
  /** A moment before it was asked for. */
  readonly asked?: number;
  /** A shared lock hold or a permit. */
  readonly shared?: boolean;
  /** A permit's semaphore limit. */
  readonly limit?: number;
}

/** Uses a hold: `writes` register writes, each after a look at `valid` (stamped first), until a look says invalid. */
async function use(u: Use, rng: Prng): Promise<void> {
  const { kind, name, token, holder, at } = u;
  const hold = `${config.proc}:${++holdSeq}`;
  const key = `${kind}:${name}`;
  let reported = token;
  if (unsafe === 'small-token') {
    // Unsafe on purpose: a stale token cached from the first hold.
    reported = firstTokens.get(key) ?? token;
    firstTokens.set(key, reported);
  }
  // Unsafe on purpose: a shared hold used (and recorded) as if it were exclusive.
  const shared = u.shared === true && !(unsafe === 'write-under-shared' && kind === 'lock');
  record({
    k: 'hold',
    hold,
    kind,
    name,
    token: reported.toString(),
    at,
    ...(u.asked === undefined ? {} : { asked: u.asked }),
    ...(shared ? { shared } : {}),
    ...(u.limit === undefined ? {} : { limit: u.limit }),
  });
  send({ t: 'hold', key, on: true });
  const blind = (unsafe === 'no-check' && kind === 'lock' && !shared) || (unsafe === 'ignore-leader-signal' && kind === 'lead');
  // The blind holder holds long, so that a nemesis stopping whoever holds almost always stops it.
  const writes = blind ? rng.int(100, 200) : rng.int(1, 30);
  for (let i = 0; i < writes; i++) {
    const look = now();
    if (!blind && !holder.valid) {
      let code = 'unknown';
      try {
        holder.assertValid();
      } catch (error) {
        code = describeError(error).code;
      }
      record({ k: 'invalid', hold, at: look, code });
      break;
    }
    await registerWrite(hold, key, reported, shared, look);
    await sleep(rng.int(2, 25));
  }
  record({ k: 'end', hold, at: now() });
  send({ t: 'hold', key, on: false });
}

// ---- state

let coordinator: Coordinator | undefined;
let quiescing = false;
let stopping = false;
const quiesce = new AbortController();
const watchView = new Map<string, string>();
let currentWatch: { close(): Promise<void> } | undefined;
let reopenTimer: NodeJS.Timeout | undefined;
let partitioner: Partitioner | undefined;
const fibers: Array<Promise<void>> = [];
let watchFiberDone: Promise<void> = Promise.resolve();

/** Waits `ms`, or less when the workload is told to quiesce. */
async function idle(ms: number): Promise<void> {
  await sleep(ms, undefined, { signal: quiesce.signal }).catch(() => undefined);
}

/** A signal for one wait: aborts after `ms` (when given) or when the workload quiesces. */
function waitSignal(ms: number | undefined): { signal: AbortSignal; done: () => void } {
  if (ms === undefined) return { signal: quiesce.signal, done: () => undefined };
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(new Error('workload abort')), ms);
  return { signal: AbortSignal.any([quiesce.signal, controller.signal]), done: () => clearTimeout(timer) };
}

function stableJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(stableJson).join(',')}]`;
  if (value !== null && typeof value === 'object') {
    const entries = Object.entries(value as Record<string, unknown>).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${stableJson(v)}`).join(',')}}`;
  }
  return JSON.stringify(value);
}

// ---- fibers

async function lockFiber(c: Coordinator, k: number): Promise<void> {
  const rng = root.fork(`lock${k}`);
  while (!quiescing) {
    const name = rng.pick(config.locks);
    const lock = c.lock(name);
    const r = rng.next();
    if (unsafe === 'skip-lock') {
      // Unsafe on purpose: writes as if it held the lock, without acquiring it.
      await use({ kind: 'lock', name, token: 0n, holder: { valid: true, assertValid: () => undefined }, at: now() }, rng);
    } else if (r < 0.55) {
      const timeoutMs = rng.int(0, 3000);
      const got = await op(
        'acquire',
        name,
        () => lock.acquire({ timeoutMs, signal: quiesce.signal }),
        (h) => h.token,
      );
      if (got.ok) {
        await use({ kind: 'lock', name, token: got.value.token, holder: got.value, at: got.at, asked: got.asked }, rng);
        await op('release', name, () => got.value.release());
      }
    } else if (r < 0.7) {
      const wait = waitSignal(rng.int(0, 1500));
      const got = await op(
        'acquire',
        name,
        () => lock.acquire({ signal: wait.signal }),
        (h) => h.token,
      );
      wait.done();
      if (got.ok) {
        await use({ kind: 'lock', name, token: got.value.token, holder: got.value, at: got.at, asked: got.asked }, rng);
        await op('release', name, () => got.value.release());
      }
    } else if (r < 0.85) {
      const got = await op(
        'tryAcquire',
        name,
        () => lock.tryAcquire(),
        (h) => h?.token,
      );
      if (got.ok && got.value) {
        await use({ kind: 'lock', name, token: got.value.token, holder: got.value, at: got.at, asked: got.asked }, rng);
        await op('release', name, () => got.value?.release() ?? Promise.resolve());
      }
    } else if (r < 0.95) {
      const timeoutMs = rng.int(0, 3000);
      const asked = now();
      await op('withLock', name, () =>
        c.withLock(
          name,
          async (held) => {
            const at = now();
            await use({ kind: 'lock', name, token: held.token, holder: held, at, asked }, rng);
          },
          { timeoutMs, signal: quiesce.signal },
        ),
      );
    } else {
      await op('holder', name, () => lock.holder());
    }
    await idle(rng.int(0, 150));
  }
}

/** What a shared or permit fiber contends for: shared holds of a hot lock name, or permits of a semaphore. */
interface Contended {
  readonly kind: 'lock' | 'permit';
  readonly name: string;
  /** Its semaphore's limit, for a permit. */
  readonly limit?: number;
  acquire(options: { signal: AbortSignal; timeoutMs?: number }): Promise<HeldLock>;
  tryAcquire(): Promise<HeldLock | undefined>;
  holders(): Promise<Holder[]>;
  /** withLock, where there is one (locks). */
  readonly within?: (fn: (held: HeldLock) => Promise<void>, options: { signal: AbortSignal; timeoutMs: number }) => Promise<void>;
}

/** A shared hold of a hot lock name: the same names the lock fibers take exclusively. */
function sharedHold(c: Coordinator, name: string): Contended {
  const lock = c.lock(name);
  return {
    kind: 'lock',
    name,
    acquire: (options) => lock.acquire({ ...options, shared: true }),
    tryAcquire: () => lock.tryAcquire({ shared: true }),
    holders: () => lock.holders(),
    within: (fn, options) => c.withLock(name, fn, { ...options, shared: true }),
  };
}

/** A permit of a semaphore of the workload. */
function permit(c: Coordinator, name: string): Contended {
  if (unsafe === 'over-limit') {
    // Unsafe on purpose: "permits" taken as an exclusive lock of this process's own, blind to everyone else's permits.
    const own = c.lock(`${name}.${config.proc}`);
    return {
      kind: 'permit',
      name,
      limit: PERMIT_LIMIT,
      acquire: (options) => own.acquire(options),
      tryAcquire: () => own.tryAcquire(),
      holders: () => own.holders(),
    };
  }
  const semaphore = c.semaphore(name, { limit: PERMIT_LIMIT });
  return {
    kind: 'permit',
    name,
    limit: PERMIT_LIMIT,
    acquire: (options) => semaphore.acquire(options),
    tryAcquire: () => semaphore.tryAcquire(),
    holders: () => semaphore.holders(),
  };
}

/**
 * Takes shared holds (`kind` lock) or permits, the ways the lock fibers take exclusive holds: acquire with a timeout,
 * acquire aborted after a while, tryAcquire, withLock (locks only), and holders() now and then.
 */
async function sharedFiber(
  prefix: 'shared' | 'permit',
  k: number,
  names: readonly string[],
  contended: (name: string) => Contended,
): Promise<void> {
  const rng = root.fork(`${prefix}${k}`);
  while (!quiescing) {
    const target = contended(rng.pick(names));
    const { name } = target;
    const mode = { kind: target.kind, name, shared: true, ...(target.limit === undefined ? {} : { limit: target.limit }) };
    const r = rng.next();
    let got: Outcome<HeldLock | undefined> | undefined;
    if (r < 0.55) {
      const timeoutMs = rng.int(0, 3000);
      got = await op(
        `${prefix}.acquire`,
        name,
        () => target.acquire({ timeoutMs, signal: quiesce.signal }),
        (h) => h.token,
      );
    } else if (r < 0.7) {
      const wait = waitSignal(rng.int(0, 1500));
      got = await op(
        `${prefix}.acquire`,
        name,
        () => target.acquire({ signal: wait.signal }),
        (h) => h.token,
      );
      wait.done();
    } else if (r < 0.85 || (r < 0.95 && !target.within)) {
      // (A semaphore has no withLock: tryAcquire takes its share.)
      got = await op(
        `${prefix}.tryAcquire`,
        name,
        () => target.tryAcquire(),
        (h) => h?.token,
      );
    } else if (r < 0.95 && target.within) {
      const within = target.within;
      const timeoutMs = rng.int(0, 3000);
      const asked = now();
      await op(`${prefix}.withLock`, name, () =>
        within(
          async (held) => {
            const at = now();
            await use({ ...mode, token: held.token, holder: held, at, asked }, rng);
          },
          { timeoutMs, signal: quiesce.signal },
        ),
      );
    } else {
      await op(`${prefix}.holders`, name, () => target.holders());
    }
    const held = got?.ok ? got.value : undefined;
    if (got?.ok && held) {
      await use({ ...mode, token: held.token, holder: held, at: got.at, asked: got.asked }, rng);
      await op(`${prefix}.release`, name, () => held.release());
    }
    await idle(rng.int(0, 150));
  }
}

async function membershipFiber(c: Coordinator): Promise<void> {
  const rng = root.fork('members');
  const group = c.group(GROUP_MEMBERS);
  let version = 0;
  while (!quiescing) {
    const r = rng.next();
    if (r < 0.3) await op('join', GROUP_MEMBERS, () => group.join({ create: true, capabilities: { proc: config.proc, v: ++version } }));
    else if (r < 0.5) await op('leave', GROUP_MEMBERS, () => group.leave());
    else if (r < 0.8) await op('update', GROUP_MEMBERS, () => group.updateCapabilities({ proc: config.proc, v: ++version }));
    else await op('members', GROUP_MEMBERS, () => group.members());
    await idle(rng.int(20, 400));
  }
}

function apply(event: GroupEvent): void {
  // Unsafe on purpose: a watcher that loses every event about client 2.
  if (unsafe === 'drop-event' && event.member.startsWith('c2.')) return;
  if (event.type === 'leave') watchView.delete(event.member);
  else watchView.set(event.member, stableJson(event.capabilities));
}

async function watchFiber(c: Coordinator): Promise<void> {
  const rng = root.fork('watch');
  while (!stopping) {
    watchView.clear();
    const watch = c.group(GROUP_MEMBERS).watch();
    currentWatch = watch;
    // Now and then the watch is closed and a new one started, while the workload runs.
    if (!quiescing) {
      reopenTimer = setTimeout(() => void op('watch.close', GROUP_MEMBERS, () => watch.close()), rng.int(2000, 8000));
    }
    await op('watch', GROUP_MEMBERS, async () => {
      for await (const event of watch) apply(event);
    });
    clearTimeout(reopenTimer);
    if (!stopping) await sleep(rng.int(20, 200));
  }
}

async function openPartitioner(c: Coordinator, rng: Prng): Promise<boolean> {
  const got = await op('partitioner', GROUP_PARTITION, () => c.group(GROUP_PARTITION).partitioner({ weight: rng.int(1, 3) }));
  if (got.ok) partitioner = got.value;
  return got.ok;
}

async function partitionFiber(c: Coordinator): Promise<void> {
  const rng = root.fork('partition');
  while (!quiescing) {
    if (!(await openPartitioner(c, rng))) {
      await idle(rng.int(50, 300));
      continue;
    }
    await idle(rng.int(500, 5000));
    if (quiescing) break;
    const open = partitioner;
    partitioner = undefined;
    if (open) await op('partitioner.close', GROUP_PARTITION, () => open.close());
    await idle(rng.int(0, 300));
  }
}

async function electionFiber(c: Coordinator): Promise<void> {
  const rng = root.fork('election');
  const group = c.group(GROUP_ELECTION);
  while (!quiescing) {
    const r = rng.next();
    if (r < 0.9) {
      // A campaign with a timeout, or one aborted after a while; the unsafe leader campaigns until elected.
      const timeoutMs = unsafe === 'ignore-leader-signal' || r >= 0.65 ? undefined : rng.int(0, 3000);
      const wait = waitSignal(unsafe === 'ignore-leader-signal' || r < 0.65 ? undefined : rng.int(0, 2000));
      const got = await op(
        'campaign',
        GROUP_ELECTION,
        () => group.campaign(timeoutMs === undefined ? { signal: wait.signal } : { signal: wait.signal, timeoutMs }),
        (l) => l.term,
      );
      wait.done();
      if (got.ok) {
        await use({ kind: 'lead', name: GROUP_ELECTION, token: got.value.term, holder: got.value, at: got.at }, rng);
        await op('resign', GROUP_ELECTION, () => got.value.resign());
      }
    } else {
      await op('leader', GROUP_ELECTION, () => group.leader());
    }
    await idle(rng.int(0, 300));
  }
}

// ---- quiesce, views, stop

/** Joined with final capabilities: update when joined, join when not, until one of them succeeds. */
async function ensureJoined(group: Group): Promise<void> {
  const capabilities = { proc: config.proc, final: true };
  while (!stopping) {
    const update = await op('update', GROUP_MEMBERS, () => group.updateCapabilities(capabilities));
    if (update.ok) return;
    if (update.code === 'ERR_MEMBER_NOT_JOINED' || update.code === 'ERR_GROUP_NOT_FOUND') {
      const join = await op('join', GROUP_MEMBERS, () => group.join({ create: true, capabilities }));
      if (join.ok) return;
    }
    await sleep(100);
  }
}

/** Not a member: leave until the backend says so. */
async function ensureLeft(group: Group): Promise<void> {
  while (!stopping) {
    const leave = await op('leave', GROUP_MEMBERS, () => group.leave());
    if (leave.ok || leave.code === 'ERR_MEMBER_NOT_JOINED' || leave.code === 'ERR_GROUP_NOT_FOUND') return;
    await sleep(100);
  }
}

let quiesceRequested = false;
let quieted: Promise<void> | undefined;
function quiet(c: Coordinator): Promise<void> {
  quieted ??= (async () => {
    quiescing = true;
    quiesce.abort(new Error('quiesce'));
    clearTimeout(reopenTimer);
    await Promise.all(fibers);
    if (stopping) return;
    // The final roles (see finalRoles): a membership or partitioner that was let go must stay gone.
    const roles = finalRoles(config.index);
    if (roles.member) await ensureJoined(c.group(GROUP_MEMBERS));
    else await ensureLeft(c.group(GROUP_MEMBERS));
    const rng = root.fork('final');
    if (roles.partitioner) {
      while (!partitioner && !stopping) if (!(await openPartitioner(c, rng))) await sleep(100);
    } else if (partitioner) {
      const open = partitioner;
      partitioner = undefined;
      await op('partitioner.close', GROUP_PARTITION, () => open.close());
    }
  })();
  return quieted;
}

async function views(c: Coordinator): Promise<Views> {
  const members = await c.group(GROUP_MEMBERS).members();
  const partitionMembers = await c.group(GROUP_PARTITION).members();
  let partitioned = partitioner?.members();
  // Unsafe on purpose: a partitioner that missed client 1.
  if (unsafe === 'partitioner-miss') partitioned = partitioned?.filter((id) => !id.startsWith('c1.'));
  return {
    members: members.map((m): [string, string] => [m.id, stableJson(m.capabilities)]),
    watch: [...watchView.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)),
    partitionMembers: partitionMembers.map((m) => m.id),
    partitioner: partitioned === undefined ? null : [...partitioned].sort(),
  };
}

let stopped: Promise<void> | undefined;
function stop(): Promise<void> {
  stopped ??= (async () => {
    stopping = true;
    quiescing = true;
    quiesce.abort(new Error('stop'));
    clearTimeout(reopenTimer);
    await currentWatch?.close().catch(() => undefined);
    // Every operation must settle by itself; those that have not by the settle time are reported.
    if (pending.size > 0) await within(new Promise<void>((resolve) => (onSettled = resolve)), config.settleMs);
    record({ k: 'final', at: now(), pending: [...pending].map(([id, f]) => ({ op: id, f })) });
    if (coordinator) {
      const c = coordinator;
      await op('close', undefined, () => c.close());
    }
    await within(Promise.all([...fibers, watchFiberDone]), 1000);
    // Closed: the harness now only waits for the exit. The IPC channel goes first, so the census sees only what the
    // library may have left behind.
    send({ t: 'done' });
    process.removeAllListeners('message');
    if (process.connected) process.disconnect();
    // Unsafe on purpose: a timer left behind.
    if (unsafe === 'leak-timer') setInterval(() => undefined, 1000);
    let leaked = excess();
    for (let waited = 0; leaked.length > 0 && waited < 3000; waited += 20) {
      await sleep(20);
      leaked = excess();
    }
    record({ k: 'census', at: now(), leaked });
    closeSync(historyFd);
  })();
  return stopped;
}

/** Waits for `promise`, at most `ms`, leaving no timer behind. */
async function within(promise: Promise<unknown>, ms: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([promise, new Promise<void>((resolve) => (timer = setTimeout(resolve, ms)))]);
  clearTimeout(timer);
}

function excess(): string[] {
  const extra: string[] = [];
  for (const [kind, count] of census()) {
    const before = baseline.get(kind) ?? 0;
    if (count > before) extra.push(`${count - before} ${kind}`);
  }
  return extra;
}

process.on('message', (raw: unknown) => {
  const message = raw as ToClient;
  if (message.t === 'ack') {
    const resolve = acks.get(message.seq);
    acks.delete(message.seq);
    resolve?.();
  } else if (message.t === 'quiesce') {
    quiesceRequested = true;
    const c = coordinator;
    if (c) void quiet(c).then(() => send({ t: 'quiet' }));
  } else if (message.t === 'views') {
    const c = coordinator;
    if (!c) return;
    views(c).then(
      (v) => send({ t: 'views', id: message.id, views: v }),
      (error: unknown) => send({ t: 'views', id: message.id, views: { error: describeError(error).code } }),
    );
  } else {
    void stop();
  }
});
// The harness is gone (or let go of us): stop rather than linger.
process.on('disconnect', () => void stop());

// ---- main

while (!stopping && !coordinator) {
  const got = await op('connect', undefined, () =>
    connect(config.url, { member: config.proc, namespace: config.namespace, sessionTtlMs: config.ttlMs, connectTimeoutMs: 5000 }),
  );
  if (got.ok) {
    if (stopping) await got.value.close();
    else coordinator = got.value;
  } else {
    await sleep(200);
  }
}
if (coordinator) {
  const c = coordinator;
  for (const event of ['suspended', 'reconnected', 'lost', 'restored'] as const)
    c.on(event, () => record({ k: 'session', event, at: now() }));
  if (unsafe === 'pending-op') {
    // Unsafe on purpose: an operation that never settles.
    void op('members', GROUP_MEMBERS, () => new Promise<never>(() => undefined));
  }
  const sharedLocks = c.features.sharedLocks === true;
  if (!quiesceRequested) {
    fibers.push(lockFiber(c, 0), lockFiber(c, 1), membershipFiber(c), partitionFiber(c), electionFiber(c));
    if (sharedLocks) {
      // One shared fiber beside the two lock fibers: the exclusive holds stay the most of a hot name's holds.
      fibers.push(sharedFiber('shared', 0, config.locks, (name) => sharedHold(c, name)));
      for (const k of [0, 1]) fibers.push(sharedFiber('permit', k, config.semaphores, (name) => permit(c, name)));
    }
  }
  watchFiberDone = watchFiber(c);
  send({ t: 'ready', sharedLocks });
  // Connected only after the harness asked to quiesce (a client restarted late, or its link was down).
  if (quiesceRequested) void quiet(c).then(() => send({ t: 'quiet' }));
}
