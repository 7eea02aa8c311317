/** The concord command: dispatches to one module per command; errors become one line on stderr and an exit code. */
import { helpText, parseArgs, type CommandSpec, type Parsed } from './args.js';
import { isConcordError } from '../errors.js';
import { packageVersion, signalExitCode, type Context } from './context.js';
import { defaultDatabasePath } from './default-db.js';
import * as dashboard from './dashboard/dashboard.js';
import * as demo from './demo/demo.js';
import * as demoWorker from './demo/worker.js';
import * as elect from './elect.js';
import * as groups from './groups.js';
import * as leader from './leader.js';
import * as lock from './lock.js';
import * as locks from './locks.js';
import * as members from './members.js';
import * as ring from './ring.js';
import * as schema from './schema.js';
import * as semaphore from './semaphore.js';
import * as status from './status.js';
import * as watch from './watch.js';
import { EXIT, UsageError, describeError, flush, out } from './output.js';

interface Command {
  readonly spec: CommandSpec;
  run(args: Parsed, context: Context): Promise<number>;
}

const COMMANDS: readonly Command[] = [
  demo,
  lock,
  semaphore,
  elect,
  groups,
  members,
  leader,
  watch,
  locks,
  status,
  dashboard,
  ring,
  schema,
  demoWorker,
];

function findCommand(name: string): Command | undefined {
  return COMMANDS.find((command) => command.spec.name === name);
}

function generalHelp(): string {
  const visible = COMMANDS.filter((command) => command.spec.hidden !== true);
  const width = Math.max(...visible.map((command) => command.spec.name.length));
  return [
    'usage: concord COMMAND [options]',
    '',
    'Cluster coordination from the shell: locks (exclusive or shared), semaphores, leader election, group membership',
    'and placement.',
    '',
    'commands:',
    ...visible.map((command) => `  ${command.spec.name.padEnd(width)}  ${command.spec.summary}`),
    '',
    'The backend comes from --url or CONCORD_URL (sqlite:///path.db, redis://, etcd://). The default is an SQLite file',
    `only you can use, shared by your processes on this host: ${defaultDatabasePath()}`,
    '',
    'Run concord COMMAND --help for its options and an example. concord --version prints the version.',
    '',
    'example:',
    '  concord demo --workers 4 --tasks 200',
  ].join('\n');
}

/** Options that take a value, so that `concord --url X groups` finds the command after them. */
const VALUE_OPTIONS = new Set(['--url', '--member', '--namespace', '--session-ttl', '--connect-timeout']);

/** Runs the command line `argv` and returns the exit code. */
export async function main(argv: readonly string[], context: Context): Promise<number> {
  let index = 0;
  while (index < argv.length && (argv[index] ?? '').startsWith('-') && argv[index] !== '--') {
    const arg = argv[index] ?? '';
    if (arg === '--version' || arg === '-v') {
      out(packageVersion());
      return EXIT.ok;
    }
    if (arg === '--help' || arg === '-h') {
      out(generalHelp());
      return EXIT.ok;
    }
    index += VALUE_OPTIONS.has(arg) ? 2 : 1;
  }
  const name = argv[index];
  if (name === undefined) {
    if (index > 0) throw new UsageError('missing the COMMAND');
    out(generalHelp());
    return EXIT.ok;
  }
  if (name === 'help') {
    const topic = argv[index + 1];
    const command = topic === undefined ? undefined : findCommand(topic);
    if (topic !== undefined && !command) throw new UsageError(`unknown command ${JSON.stringify(topic)}`);
    out(command ? helpText(command.spec) : generalHelp());
    return EXIT.ok;
  }
  const command = findCommand(name);
  if (!command) throw new UsageError(`unknown command ${JSON.stringify(name)}`);
  const args = parseArgs(command.spec, [...argv.slice(0, index), ...argv.slice(index + 1)]);
  if (args.flag('help')) {
    out(helpText(command.spec));
    return EXIT.ok;
  }
  return command.run(args, context);
}

const SIGNALS: readonly NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP'];

/** The process entry point: runs main() on process.argv, prints errors as one line, and exits. */
export async function runCli(argv: readonly string[] = process.argv.slice(2)): Promise<never> {
  const controller = new AbortController();
  let signalName: NodeJS.Signals | undefined;
  let count = 0;
  const onSignal = (signal: NodeJS.Signals): void => {
    count++;
    signalName ??= signal;
    if (!controller.signal.aborted) controller.abort(signal);
    // A third signal means the user has run out of patience with a clean shutdown.
    if (count >= 3) process.exit(128 + 2);
  };
  for (const signal of SIGNALS) process.on(signal, onSignal);
  // A reader that went away (`concord watch g | head`) ends the command quietly, as it does for other tools.
  for (const stream of [process.stdout, process.stderr]) {
    stream.on('error', (error: NodeJS.ErrnoException) => {
      if (error.code === 'EPIPE') process.exit(EXIT.ok);
      throw error;
    });
  }
  let code: number;
  try {
    code = await main(argv, { interrupted: controller.signal, signalName: () => signalName });
  } catch (error) {
    if (signalName !== undefined && isConcordError(error, 'ERR_ABORTED')) {
      await flush();
      process.exit(signalExitCode(signalName));
    }
    const { message, exitCode, stack } = describeError(error);
    process.stderr.write(`concord: ${message}\n`);
    if (stack && /\bconcord\b/.test(process.env.NODE_DEBUG ?? '')) process.stderr.write(`${stack}\n`);
    code = exitCode;
  }
  await flush();
  // Exit explicitly: a backend client that keeps a handle open must not keep the command alive.
  process.exit(code);
}
