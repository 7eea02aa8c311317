/** The argument parser of the concord command, in process. */
import { describe, expect, it } from 'vitest';
import { helpText, parseArgs, type CommandSpec } from '../../src/cli/args.js';
import { UsageError, describeError, redactAll, table } from '../../src/cli/output.js';
import { ConcordError } from '../../src/index.js';

const spec: CommandSpec = {
  name: 'try',
  summary: 'A command for tests.',
  positionals: [{ name: 'NAME', arity: '1' }],
  command: 'required',
  options: [
    { name: 'timeout', type: 'integer', value: 'MS', min: 0, description: 'wait' },
    { name: 'grace', type: 'integer', value: 'MS', min: 0, default: 5000, description: 'grace' },
    { name: 'url', type: 'string', value: 'URL', description: 'where' },
    { name: 'kill', type: 'boolean', default: true, description: 'kill' },
    { name: 'secret', type: 'boolean', hidden: true, description: 'hidden' },
  ],
  examples: ['concord try x -- true'],
};

function usage(argv: string[]): string {
  try {
    parseArgs(spec, argv);
  } catch (error) {
    expect(error).toBeInstanceOf(UsageError);
    return (error as Error).message;
  }
  throw new Error('expected a usage error');
}

describe('parseArgs', () => {
  it('reads options in both spellings, flags, defaults and the command after --', () => {
    const args = parseArgs(spec, ['--timeout', '10', 'job', '--url=redis://h', '--no-kill', '--', 'sh', '-c', 'echo --timeout']);
    expect(args.positionals).toEqual(['job']);
    expect(args.integer('timeout')).toBe(10);
    expect(args.integer('grace')).toBe(5000);
    expect(args.string('url')).toBe('redis://h');
    expect(args.flag('kill')).toBe(false);
    expect(args.rest).toEqual(['sh', '-c', 'echo --timeout']);
    expect(parseArgs(spec, ['job', '--', 'true']).flag('kill')).toBe(true);
  });

  it('names the mistake', () => {
    expect(usage(['job', '--bogus', '--', 'true'])).toBe('unknown option --bogus');
    expect(usage(['job', '--timeout'])).toBe('option --timeout needs a value (MS)');
    expect(usage(['job', '--timeout', '-1', '--', 'true'])).toMatch(/^option --timeout must be an integer from 0 to/);
    expect(usage(['job', '--timeout', '1.5', '--', 'true'])).toMatch(/^option --timeout must be an integer/);
    expect(usage(['job', '--kill=maybe', '--', 'true'])).toBe('option --kill is a flag; it takes no value');
    expect(usage(['job', '--url=', '--', 'true'])).toBe('option --url must not be empty');
    expect(usage(['--', 'true'])).toBe('missing NAME: concord try NAME [options] -- CMD [ARGS...]');
    expect(usage(['job'])).toMatch(/^missing the command to run/);
    expect(usage(['job', 'extra', '--', 'true'])).toMatch(/^unexpected argument "extra" \(put the command to run after --\)/);
  });

  it('lets --help through whatever else is missing', () => {
    expect(parseArgs(spec, ['--help']).flag('help')).toBe(true);
    expect(parseArgs(spec, ['-h']).flag('help')).toBe(true);
  });

  it('writes help with usage, options (not hidden ones), defaults and an example', () => {
    const text = helpText(spec);
    expect(text).toMatch(/^usage: concord try NAME \[options\] -- CMD \[ARGS\.\.\.\]/);
    expect(text).toMatch(/--grace MS +grace \(default 5000\)/);
    expect(text).not.toMatch(/--secret/);
    expect(text).toMatch(/example:\n {2}concord try x -- true/);
  });
});

describe('output helpers', () => {
  it('masks passwords anywhere in a line', () => {
    expect(redactAll('cannot reach redis://user:pw@h:1/0 or postgres://a:b@c/d')).toBe(
      'cannot reach redis://user:***@h:1/0 or postgres://a:***@c/d',
    );
  });

  it('turns errors into one line and an exit code', () => {
    expect(describeError(new UsageError('bad', 'lock'))).toEqual({ message: 'bad (see concord lock --help)', exitCode: 2 });
    expect(describeError(new ConcordError('ERR_INVALID_URL', 'url is bad'))).toEqual({ message: 'url is bad', exitCode: 2 });
    const wrapped = new ConcordError('ERR_CONNECTION', 'cannot connect to redis://u:pw@h', {
      cause: new Error('ECONNREFUSED 127.0.0.1:1'),
    });
    expect(describeError(wrapped)).toEqual({ message: 'cannot connect to redis://u:***@h: ECONNREFUSED 127.0.0.1:1', exitCode: 1 });
    const bug = describeError(new TypeError('x is not a function'));
    expect(bug.message).toBe('unexpected error: x is not a function');
    expect(bug.exitCode).toBe(1);
  });

  it('aligns table columns', () => {
    expect(
      table([
        ['a', 'bb', 'c'],
        ['ccc', 'd', 'e'],
      ]),
    ).toEqual(['a    bb  c', 'ccc  d   e']);
  });
});
