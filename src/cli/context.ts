/** What every command shares: the global options, the backend URL, connecting, and the interrupt signal. */
import { constants } from 'node:os';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { connect } from '../connect.js';
import { DEFAULTS, type ConnectOptions } from '../options.js';
import type { Coordinator } from '../types.js';
import type { OptionSpec, Parsed } from './args.js';
import { defaultDatabasePath, privateDefaultUrl } from './default-db.js';

/** Options every command that talks to a backend accepts. */
export const BACKEND_OPTIONS: readonly OptionSpec[] = [
  {
    name: 'url',
    type: 'string',
    value: 'URL',
    description: `backend URL (or set CONCORD_URL); default: an SQLite file only you can use, ${defaultDatabasePath()}`,
  },
  { name: 'member', type: 'string', value: 'ID', description: 'member id of this process (default: host-pid-random)' },
  { name: 'namespace', type: 'string', value: 'NAME', description: 'key namespace on the backend (default concord)' },
  {
    name: 'session-ttl',
    type: 'integer',
    value: 'MS',
    min: 1,
    description: `session TTL: how soon a crash of this process frees what it held (default ${String(DEFAULTS.sessionTtlMs)})`,
  },
  {
    name: 'connect-timeout',
    type: 'integer',
    value: 'MS',
    min: 1,
    description: `give up connecting to the backend after MS milliseconds (default ${String(DEFAULTS.connectTimeoutMs)})`,
  },
];

export const HELP_OPTION: OptionSpec = { name: 'help', type: 'boolean', description: 'show this help' };
export const JSON_OPTION: OptionSpec = { name: 'json', type: 'boolean', description: 'print JSON for programs' };

export function backendUrl(args: Parsed): string {
  const env = process.env.CONCORD_URL;
  return args.string('url') ?? (env !== undefined && env !== '' ? env : privateDefaultUrl());
}

export function connectOptions(args: Parsed): ConnectOptions {
  const member = args.string('member');
  const namespace = args.string('namespace');
  const sessionTtlMs = args.integer('session-ttl');
  const connectTimeoutMs = args.integer('connect-timeout');
  return {
    ...(member !== undefined ? { member } : {}),
    ...(namespace !== undefined ? { namespace } : {}),
    ...(sessionTtlMs !== undefined ? { sessionTtlMs } : {}),
    ...(connectTimeoutMs !== undefined ? { connectTimeoutMs } : {}),
  };
}

export interface Context {
  /** Aborted on the first SIGINT or SIGTERM; the reason is the signal's name. */
  readonly interrupted: AbortSignal;
  /** Which signal interrupted, once one did. */
  readonly signalName: () => NodeJS.Signals | undefined;
}

/** Connects as the global options say, aborting if the user interrupts while the backend is slow to answer. */
export async function open(args: Parsed, context: Context, extra?: ConnectOptions): Promise<Coordinator> {
  return connect(backendUrl(args), { ...connectOptions(args), ...extra, signal: context.interrupted });
}

/** Exit code of a process ended by `signal`, as shells report it. */
export function signalExitCode(signal: NodeJS.Signals): number {
  return 128 + (constants.signals[signal] ?? 0);
}

/** The package's root folder: src/cli and dist/src/cli sit at different depths below it. */
export function packageRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 6; i++) {
    const manifest = join(dir, 'package.json');
    if (existsSync(manifest)) {
      try {
        if ((JSON.parse(readFileSync(manifest, 'utf8')) as { name?: unknown }).name === 'concord') return dir;
      } catch {
        // unreadable: keep looking upwards
      }
    }
    dir = dirname(dir);
  }
  throw new Error('cannot find the concord package folder');
}

/** bin/concord.js, which the demo starts its workers with. */
export function launcherPath(): string {
  return join(packageRoot(), 'bin', 'concord.js');
}

export function packageVersion(): string {
  try {
    const manifest = JSON.parse(readFileSync(join(packageRoot(), 'package.json'), 'utf8')) as { version?: unknown };
    return typeof manifest.version === 'string' ? manifest.version : 'unknown';
  } catch {
    return 'unknown';
  }
}
