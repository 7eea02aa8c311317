/** Output helpers of the concord command: errors as one line, tables, JSON, terminal styling. */
import { isConcordError } from '../errors.js';

/** Exit codes shared by the commands (a command run under `lock` or `elect` passes its own code through). */
export const EXIT = Object.freeze({
  ok: 0,
  failure: 1,
  usage: 2,
  /** `lock --timeout` ran out before the lock was free. */
  timeout: 3,
  /** The lock or the leadership was lost while the command ran. */
  lost: 4,
  /** The command to run could not be started. */
  notFound: 127,
});

/** A mistake in the command line: exit code 2, with a pointer to the command's help. */
export class UsageError extends Error {
  readonly command: string | undefined;

  constructor(message: string, command?: string) {
    super(message);
    this.command = command;
  }
}

/** A failure to report as one line with a chosen exit code. */
export class CliError extends Error {
  readonly exitCode: number;

  constructor(message: string, exitCode: number = EXIT.failure) {
    super(message);
    this.exitCode = exitCode;
  }
}

/** Masks `user:password@` anywhere in a line, whatever produced it. */
export function redactAll(text: string): string {
  return text.replace(/([a-z][a-z0-9+.-]*:\/\/[^/@:\s]*):[^/@\s]*@/gi, '$1:***@');
}

function causeText(error: Error): string {
  const cause: unknown = error.cause;
  if (!(cause instanceof Error) || cause.message === '' || error.message.includes(cause.message)) return '';
  return `: ${cause.message.split('\n')[0] ?? ''}`;
}

/** The one line (without the `concord: ` prefix) and exit code for an error. Stacks only for bugs, under NODE_DEBUG=concord. */
export function describeError(error: unknown): { message: string; exitCode: number; stack?: string } {
  if (error instanceof UsageError) {
    const hint = error.command ? ` (see concord ${error.command} --help)` : ' (see concord --help)';
    return { message: redactAll(error.message + hint), exitCode: EXIT.usage };
  }
  if (error instanceof CliError) return { message: redactAll(error.message), exitCode: error.exitCode };
  if (isConcordError(error)) {
    const exitCode =
      error.code === 'ERR_INVALID_ARGUMENT' || error.code === 'ERR_INVALID_URL' || error.code === 'ERR_UNKNOWN_DRIVER'
        ? EXIT.usage
        : EXIT.failure;
    return { message: redactAll(error.message + causeText(error)), exitCode };
  }
  if (error instanceof Error) {
    return {
      message: redactAll(`unexpected error: ${error.message}`),
      exitCode: EXIT.failure,
      ...(error.stack ? { stack: redactAll(error.stack) } : {}),
    };
  }
  return { message: redactAll(`unexpected error: ${String(error)}`), exitCode: EXIT.failure };
}

export function out(line = ''): void {
  process.stdout.write(`${line}\n`);
}

/** A note for the person at the terminal (progress, state changes); stderr so stdout stays parseable. */
export function note(line: string): void {
  process.stderr.write(`concord: ${redactAll(line)}\n`);
}

/** JSON with bigints as strings; one line unless `pretty`. */
export function toJson(value: unknown, pretty = false): string {
  return JSON.stringify(value, (_key, v: unknown) => (typeof v === 'bigint' ? v.toString() : v), pretty ? 2 : undefined);
}

/** Left-aligned columns separated by two spaces; the last column is not padded. */
export function table(rows: readonly (readonly string[])[]): string[] {
  const widths: number[] = [];
  for (const row of rows) row.forEach((cell, i) => (widths[i] = Math.max(widths[i] ?? 0, visibleLength(cell))));
  return rows.map((row) =>
    row
      .map((cell, i) => (i === row.length - 1 ? cell : cell + ' '.repeat((widths[i] ?? 0) - visibleLength(cell))))
      .join('  ')
      .trimEnd(),
  );
}

// eslint-disable-next-line no-control-regex
const ANSI = /\x1b\[[0-9;?]*[A-Za-z]/g;

export function visibleLength(text: string): number {
  return text.replace(ANSI, '').length;
}

export interface Style {
  bold(text: string): string;
  dim(text: string): string;
  green(text: string): string;
  red(text: string): string;
  yellow(text: string): string;
  cyan(text: string): string;
}

const plain = (text: string): string => text;
const sgr =
  (open: number, close: number) =>
  (text: string): string =>
    `\x1b[${open}m${text}\x1b[${close}m`;

/** Colours only on a terminal, and never when NO_COLOR is set. */
export function style(stream: NodeJS.WriteStream): Style {
  const on = stream.isTTY && !process.env.NO_COLOR && process.env.TERM !== 'dumb';
  if (!on) return { bold: plain, dim: plain, green: plain, red: plain, yellow: plain, cyan: plain };
  return { bold: sgr(1, 22), dim: sgr(2, 22), green: sgr(32, 39), red: sgr(31, 39), yellow: sgr(33, 39), cyan: sgr(36, 39) };
}

/** Resolves once everything written so far to stdout and stderr has been handed to the OS. */
export function flush(): Promise<void> {
  const drain = (stream: NodeJS.WriteStream): Promise<void> =>
    new Promise((resolve) => {
      if (stream.destroyed || !stream.writable) {
        resolve();
        return;
      }
      stream.write('', () => {
        resolve();
      });
    });
  return Promise.all([drain(process.stdout), drain(process.stderr)]).then(() => undefined);
}

export function formatMs(ms: number): string {
  if (ms < 1000) return `${Math.round(ms)} ms`;
  return `${(ms / 1000).toFixed(2)} s`;
}
