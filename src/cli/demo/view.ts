/** What `concord demo` shows: a live frame redrawn ~10 times a second on a terminal, plain lines otherwise, and a summary. */
import { formatMs, out, style, table, type Style } from '../output.js';
import type { WorkerStatus } from './fleet.js';
import { taskKey } from './protocol.js';

export interface WorkerRow {
  readonly name: string;
  readonly pid: number | undefined;
  readonly status: WorkerStatus;
  /** Completions recorded for this worker. */
  readonly completions: number;
  /** Its share of the tasks under the current membership; undefined when it is not a member. */
  readonly share: number | undefined;
  readonly ownedTotal: number;
  readonly ownedDone: number;
  readonly current: number | undefined;
}

export interface ViewOptions {
  readonly interactive: boolean;
  readonly workers: number;
  readonly tasks: number;
  readonly url: string;
  readonly group: string;
  readonly elapsed: () => number;
}

export interface Summary {
  readonly rows: readonly WorkerRow[];
  readonly elapsedMs: number;
  /** From the start to every worker being in the group. */
  readonly startupMs: number | undefined;
  /** From then to the last task done. */
  readonly tasksMs: number | undefined;
  readonly kill:
    | {
        readonly victim: string;
        readonly atMs: number;
        readonly doneAtKill: number;
        readonly leftAfterMs: number | undefined;
        readonly resumedAfterMs: number | undefined;
        readonly resumedBy: string | undefined;
        readonly inFlight: string | undefined;
        readonly redoneBy: string | undefined;
      }
    | undefined;
  readonly stale: readonly string[];
  readonly verdict: { readonly pass: boolean; readonly lines: readonly string[] };
  readonly scope: string;
}

const BAR = 24;
const EVENTS = 6;
const FRAME_MS = 100;

export class DemoView {
  readonly #options: ViewOptions;
  readonly #style: Style;
  readonly #events: string[] = [];
  readonly #frozen = new Map<string, number>();
  #rows: (() => WorkerRow[]) | undefined;
  #timer: NodeJS.Timeout | undefined;
  #drawn = 0;
  #done = 0;
  #milestone = 0;
  #stopped = false;
  readonly #showCursor = (): void => {
    process.stdout.write('\x1b[?25h');
  };

  constructor(options: ViewOptions) {
    this.#options = options;
    this.#style = style(process.stdout);
  }

  start(rows: () => WorkerRow[]): void {
    const o = this.#options;
    this.#rows = rows;
    out(
      this.#style.bold(
        `concord demo: ${o.workers} worker${o.workers === 1 ? '' : 's'}, ${o.tasks} task${o.tasks === 1 ? '' : 's'}, on ${o.url} (group ${o.group})`,
      ),
    );
    if (!o.interactive) return;
    process.stdout.write('\x1b[?25l');
    process.once('exit', this.#showCursor);
    this.#timer = setInterval(() => {
      this.#draw();
    }, FRAME_MS);
    this.#draw();
  }

  /** A notable moment: printed at once as a line, or kept in the frame's event log. */
  event(text: string): void {
    const line = `${formatMs(this.#options.elapsed()).padStart(8)}  ${text}`;
    if (this.#options.interactive && !this.#stopped) {
      this.#events.push(line);
      if (this.#events.length > EVENTS) this.#events.shift();
    } else if (!this.#options.interactive) {
      out(line);
    }
  }

  progress(done: number): void {
    this.#done = done;
    if (this.#options.interactive) return;
    const percent = Math.floor((done / this.#options.tasks) * 4) * 25;
    if (percent > this.#milestone) {
      this.#milestone = percent;
      this.event(`progress ${percent}% (${done}/${this.#options.tasks} tasks)`);
    }
  }

  /** Stops redrawing, after one last frame from `rows` (if given). Idempotent. */
  stop(rows: WorkerRow[] | undefined): void {
    if (this.#stopped) return;
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = undefined;
    if (this.#options.interactive) {
      if (rows) this.#draw(rows);
      this.#showCursor();
      process.off('exit', this.#showCursor);
    }
    this.#stopped = true;
  }

  #bar(ratio: number): string {
    const filled = Math.max(0, Math.min(BAR, Math.round(ratio * BAR)));
    return this.#style.green('█'.repeat(filled)) + this.#style.dim('░'.repeat(BAR - filled));
  }

  #status(row: WorkerRow): string {
    const s = this.#style;
    if (row.status === 'killed') return s.red('killed');
    if (row.status === 'failed') return s.red('failed');
    if (row.status === 'finished') return s.green('finished');
    if (row.status === 'starting') return s.yellow('starting');
    if (row.status === 'stopped') return s.yellow('stopped');
    return s.green('alive');
  }

  #draw(given?: WorkerRow[]): void {
    const rows = given ?? this.#rows?.() ?? [];
    const s = this.#style;
    const cells = rows.map((row) => {
      const live = row.status === 'running' || row.status === 'starting';
      let ratio = row.ownedTotal === 0 ? (row.status === 'running' ? 1 : 0) : row.ownedDone / row.ownedTotal;
      // A worker that is gone keeps the bar it had when it went; its share is what the ring gives it now.
      const frozen = this.#frozen.get(row.name);
      if (!live && frozen !== undefined) ratio = frozen;
      else if (live) this.#frozen.set(row.name, ratio);
      const share = row.share;
      return [
        `  ${row.name}`,
        this.#bar(ratio),
        `${row.completions} done`,
        share === undefined ? s.dim('share  -') : `share ${`${Math.round(share * 100)}%`.padStart(4)}`,
        this.#status(row),
        row.current !== undefined && row.status === 'running' ? s.dim(taskKey(row.current)) : '',
      ];
    });
    const total = this.#done / this.#options.tasks;
    const lines = [
      ...table([
        ...cells,
        [`  ${s.bold('total')}`, this.#bar(total), `${this.#done}/${this.#options.tasks}`, formatMs(this.#options.elapsed()), '', ''],
      ]),
      '',
      ...this.#events.map((event) => s.dim(event)),
    ];
    const width = process.stdout.columns > 20 ? process.stdout.columns - 1 : 200;
    let frame = this.#drawn > 0 ? `\x1b[${this.#drawn}F` : '';
    for (const line of lines) frame += `\x1b[2K${truncate(line, width)}\n`;
    process.stdout.write(frame);
    this.#drawn = lines.length;
  }

  summary(summary: Summary): void {
    const s = this.#style;
    out('');
    out(s.bold('summary'));
    const statusText = (row: WorkerRow): string => {
      if (row.status === 'killed' && summary.kill?.victim === row.name) return `killed at ${formatMs(summary.kill.atMs)}`;
      return row.status === 'running' ? 'alive' : row.status;
    };
    for (const line of table([
      ['worker', 'pid', 'tasks', 'status'],
      ...summary.rows.map((row) => [row.name, String(row.pid ?? '-'), String(row.completions), statusText(row)]),
    ]))
      out(`  ${line}`);
    out('');
    const startup = summary.startupMs === undefined ? '' : `workers up and joined in ${formatMs(summary.startupMs)}`;
    const phases =
      startup === ''
        ? ''
        : summary.tasksMs === undefined
          ? ` (${startup})`
          : ` (${startup}, tasks done ${formatMs(summary.tasksMs)} later)`;
    const facts: Array<[string, string]> = [['elapsed', `${formatMs(summary.elapsedMs)}${phases}`]];
    const kill = summary.kill;
    if (kill) {
      const left =
        kill.leftAfterMs === undefined ? 'its leave was not seen' : `left the group ${formatMs(kill.leftAfterMs)} after the kill`;
      const resumed =
        kill.resumedAfterMs === undefined
          ? 'no survivor needed to take over a key'
          : `its keys were taken over ${formatMs(kill.resumedAfterMs)} after the kill${kill.resumedBy ? ` (first by ${kill.resumedBy})` : ''}`;
      facts.push(['failover', `${kill.victim} killed at ${kill.doneAtKill}/${this.#options.tasks} tasks; ${left}; ${resumed}`]);
      if (kill.inFlight)
        facts.push([
          'redone',
          `${kill.inFlight}, in flight on ${kill.victim} when it was killed, was completed by ${kill.redoneBy ?? 'nobody'}`,
        ]);
    } else {
      facts.push(['failover', 'no worker was killed']);
    }
    facts.push([
      'fencing',
      summary.stale.length === 0
        ? 'no completion was refused as stale'
        : `${summary.stale.length} stale completion${summary.stale.length === 1 ? '' : 's'} refused: ${summary.stale.slice(0, 3).join('; ')}`,
    ]);
    const [first, ...rest] = summary.verdict.lines;
    facts.push(['verdict', summary.verdict.pass ? s.green(`PASS: ${first ?? ''}`) : s.red(`FAIL: ${first ?? ''}`)]);
    for (const line of table(facts.map(([k, v]) => [k, v]))) out(`  ${line}`);
    const indent = ' '.repeat('verdict'.length + 2);
    for (const line of rest) out(`  ${indent}${s.red(line)}`);
  }
}

function truncate(line: string, width: number): string {
  // Count visible characters only; escapes cost no width.
  let visible = 0;
  let result = '';
  // eslint-disable-next-line no-control-regex
  for (const part of line.split(/(\x1b\[[0-9;?]*[A-Za-z])/)) {
    if (part.startsWith('\x1b[')) {
      result += part;
      continue;
    }
    const room = width - visible;
    if (room <= 0) continue;
    result += part.slice(0, room);
    visible += Math.min(part.length, room);
  }
  return result + (line.includes('\x1b[') ? '\x1b[0m' : '');
}
