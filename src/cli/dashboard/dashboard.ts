/** concord dashboard: a live, read-only web page of the backend's groups, leaders, locks, semaphores and partition shares. */
import type { CommandSpec, Parsed } from '../args.js';
import { BACKEND_OPTIONS, HELP_OPTION, open, type Context } from '../context.js';
import { CliError, note, out } from '../output.js';
import { serve } from './server.js';
import { LiveView } from './view.js';

export const spec: CommandSpec = {
  name: 'dashboard',
  summary: 'Serve a live, read-only web page of the groups, members, leaders, locks, semaphores and partition shares.',
  description: [
    'Members and leaders are pushed to the page as they change (server-sent events, from group and leader watches).',
    'There is no lock watch: locks are read again after every pushed change and every --refresh milliseconds.',
    'Listens on 127.0.0.1 unless --host says otherwise; runs until interrupted.',
  ].join('\n'),
  positionals: [],
  options: [
    {
      name: 'port',
      type: 'integer',
      value: 'PORT',
      default: 7070,
      min: 0,
      max: 65535,
      description: 'port to listen on (0: any free port)',
    },
    { name: 'host', type: 'string', value: 'ADDRESS', default: '127.0.0.1', description: 'address to listen on' },
    { name: 'refresh', type: 'integer', value: 'MS', default: 1000, min: 50, description: 'read the locks and groups again this often' },
    ...BACKEND_OPTIONS,
    HELP_OPTION,
  ],
  examples: ['concord dashboard', 'concord dashboard --url redis://127.0.0.1:6379 --port 8080'],
};

export async function run(args: Parsed, context: Context): Promise<number> {
  const host = args.string('host') ?? '127.0.0.1';
  const port = args.integer('port') ?? 7070;
  const refreshMs = args.integer('refresh') ?? 1000;
  const coordinator = await open(args, context);
  const stop = new AbortController();
  const view = new LiveView(coordinator, refreshMs, AbortSignal.any([context.interrupted, stop.signal]));
  try {
    const server = await serve(view, host, port).catch((error: unknown) => {
      const code = (error as NodeJS.ErrnoException).code ?? '';
      throw new CliError(`cannot listen on ${host}:${port}: ${code === 'EADDRINUSE' ? 'the port is in use' : (error as Error).message}`);
    });
    out(server.url);
    note(`dashboard of ${coordinator.url} at ${server.url} (Ctrl-C stops it)`);
    await new Promise((resolve) => context.interrupted.addEventListener('abort', resolve, { once: true }));
    await server.close();
    return 0;
  } finally {
    stop.abort();
    await view.done;
    await coordinator.close();
  }
}
