/**
 * Child of bench/scale.ts: holds many coordinators (members or watchers) of one backend, so that 1,000 of them are
 * spread over a few processes and their client CPU and memory are measured apart from the parent's.
 * Run by the parent only: `scale-child.ts URL NAMESPACE`, one JSON command a line on stdin, one JSON reply a line on
 * stdout. Times are process.hrtime (CLOCK_MONOTONIC, shared by the processes of one host), in ns, as strings.
 */
import { createInterface } from 'node:readline';
import { connect, type Coordinator, type GroupWatch } from '../src/index.js';

const [url = '', namespace = ''] = process.argv.slice(2);

type Command =
  | { op: 'usage' }
  | { op: 'members'; from: number; count: number }
  | { op: 'join'; group: string }
  | { op: 'count'; from: number; count: number; group: string; anchor: string; expect: number }
  | { op: 'fanout'; from: number; count: number; group: string; anchor: string }
  | { op: 'close' };

const coordinators: Coordinator[] = [];
const watches: GroupWatch[] = [];
const say = (reply: object): void => {
  process.stdout.write(`${JSON.stringify(reply)}\n`);
};
const now = (): string => process.hrtime.bigint().toString();

/** Runs `task` on every index below `count`, `width` at a time. */
async function pool(count: number, width: number, task: (i: number) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(width, count) }, async () => {
      while (next < count) await task(next++);
    }),
  );
}

async function open(from: number, count: number, prefix: string): Promise<Coordinator[]> {
  const opened: Coordinator[] = new Array<Coordinator>(count);
  // Ten connects at a time per process: wider, and a busy server let connects of etcd and PostgreSQL time out.
  await pool(count, 10, async (i) => {
    opened[i] = await connect(url, { namespace, member: `${prefix}${String(from + i)}` });
  });
  coordinators.push(...opened);
  return opened;
}

/**
 * One watcher per coordinator on `group`, which holds `anchor` already: its initial join proves the watch is live.
 * `expect`: report once when this watcher has seen that many other members; otherwise report every event.
 */
function watchFrom(c: Coordinator, w: number, group: string, anchor: string, expect: number | undefined, ready: () => void): void {
  const watch = c.group(group).watch();
  watches.push(watch);
  const seen = new Set<string>();
  void (async () => {
    for await (const event of watch) {
      if (event.member === anchor) {
        if (event.type === 'join' && event.initial) ready();
        continue;
      }
      if (expect === undefined) {
        say({ op: 'event', w, type: event.type, member: event.member, at: now() });
      } else if (event.type === 'join' && !seen.has(event.member)) {
        seen.add(event.member);
        if (seen.size === expect) say({ op: 'all', w, at: now() });
      }
    }
  })();
}

async function run(cmd: Command): Promise<void> {
  switch (cmd.op) {
    case 'usage': {
      const cpu = process.cpuUsage();
      say({ op: 'usage', cpuUs: cpu.user + cpu.system, rss: process.memoryUsage().rss });
      return;
    }
    case 'members':
      await open(cmd.from, cmd.count, 'm');
      say({ op: 'connected' });
      return;
    case 'join':
      await pool(coordinators.length, 50, async (i) => {
        await coordinators[i]?.group(cmd.group).join();
      });
      say({ op: 'joined', at: now() });
      return;
    case 'count':
    case 'fanout': {
      const opened = await open(cmd.from, cmd.count, 'w');
      let live = 0;
      await new Promise<void>((resolve) => {
        opened.forEach((c, i) => {
          watchFrom(c, cmd.from + i, cmd.group, cmd.anchor, cmd.op === 'count' ? cmd.expect : undefined, () => {
            if (++live === opened.length) resolve();
          });
        });
      });
      say({ op: 'ready' });
      return;
    }
    case 'close': {
      await Promise.all(watches.map((w) => w.close()));
      await pool(coordinators.length, 50, async (i) => {
        await coordinators[i]?.close();
      });
      say({ op: 'closed' });
      process.exit(0);
    }
  }
}

// Commands run one after another, in the order they came.
let chain = Promise.resolve();
createInterface({ input: process.stdin }).on('line', (line) => {
  chain = chain
    .then(() => run(JSON.parse(line) as Command))
    .catch((error: unknown) => {
      say({ op: 'error', message: error instanceof Error ? error.message : String(error) });
    });
});
