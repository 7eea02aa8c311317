/**
 * A small argument parser: `--name value`, `--name=value`, `--no-flag`, `-h`, positionals, and everything after `--`
 * kept verbatim for the command to run. Every mistake is a UsageError with a message naming the option.
 */
import { UsageError } from './output.js';

export type OptionType = 'string' | 'integer' | 'boolean';

export interface OptionSpec {
  /** Long name without the leading dashes. */
  readonly name: string;
  readonly type: OptionType;
  readonly description: string;
  /** Placeholder shown in help, e.g. 'MS'. */
  readonly value?: string;
  /** Default shown in help and returned when the option is absent. */
  readonly default?: string | number | boolean;
  readonly min?: number;
  readonly max?: number;
  /** Kept out of help (internal options). */
  readonly hidden?: boolean;
}

export interface PositionalSpec {
  readonly name: string;
  /** How many values: '1' exactly one, '?' zero or one, '*' any number, '+' at least one. */
  readonly arity: '1' | '?' | '*' | '+';
}

export interface CommandSpec {
  readonly name: string;
  readonly summary: string;
  /** Longer help text, printed under the usage line. */
  readonly description?: string;
  readonly positionals: readonly PositionalSpec[];
  /** Whether the command takes `-- CMD...`. */
  readonly command?: 'required';
  readonly options: readonly OptionSpec[];
  readonly examples: readonly string[];
  /** Kept out of the command list (internal commands). */
  readonly hidden?: boolean;
}

export type OptionValue = string | number | boolean;

export class Parsed {
  readonly spec: CommandSpec;
  readonly positionals: string[];
  /** Everything after `--`. */
  readonly rest: string[];
  readonly #values: Map<string, OptionValue>;

  constructor(spec: CommandSpec, values: Map<string, OptionValue>, positionals: string[], rest: string[]) {
    this.spec = spec;
    this.#values = values;
    this.positionals = positionals;
    this.rest = rest;
  }

  has(name: string): boolean {
    return this.#values.has(name);
  }

  string(name: string): string | undefined {
    const value = this.#values.get(name) ?? this.#default(name);
    return typeof value === 'string' ? value : undefined;
  }

  integer(name: string): number | undefined {
    const value = this.#values.get(name) ?? this.#default(name);
    return typeof value === 'number' ? value : undefined;
  }

  flag(name: string): boolean {
    return (this.#values.get(name) ?? this.#default(name)) === true;
  }

  #default(name: string): OptionValue | undefined {
    return this.spec.options.find((option) => option.name === name)?.default;
  }
}

export function parseArgs(spec: CommandSpec, argv: readonly string[]): Parsed {
  const values = new Map<string, OptionValue>();
  const positionals: string[] = [];
  let rest: string[] | undefined;
  const byName = new Map(spec.options.map((option) => [option.name, option]));

  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] ?? '';
    if (arg === '--') {
      rest = argv.slice(i + 1);
      break;
    }
    if (arg === '-h' || arg === '--help') {
      values.set('help', true);
      continue;
    }
    if (!arg.startsWith('-') || arg === '-') {
      positionals.push(arg);
      continue;
    }
    if (!arg.startsWith('--')) throw new UsageError(`unknown option ${arg}`, spec.name);
    const eq = arg.indexOf('=');
    let name = eq === -1 ? arg.slice(2) : arg.slice(2, eq);
    let inline = eq === -1 ? undefined : arg.slice(eq + 1);
    let option = byName.get(name);
    if (!option && name.startsWith('no-') && byName.get(name.slice(3))?.type === 'boolean') {
      if (inline !== undefined) throw new UsageError(`option --${name} takes no value`, spec.name);
      name = name.slice(3);
      option = byName.get(name);
      inline = 'false';
    }
    if (!option) throw new UsageError(`unknown option --${name}`, spec.name);
    if (option.type === 'boolean') {
      if (inline === undefined) values.set(name, true);
      else if (inline === 'true' || inline === 'false') values.set(name, inline === 'true');
      else throw new UsageError(`option --${name} is a flag; it takes no value`, spec.name);
      continue;
    }
    let raw = inline;
    if (raw === undefined) {
      const next = argv[i + 1];
      if (next === undefined || next === '--')
        throw new UsageError(`option --${name} needs a value (${option.value ?? 'VALUE'})`, spec.name);
      raw = next;
      i++;
    }
    values.set(name, convert(option, raw, spec.name));
  }

  if (values.get('help') === true) return new Parsed(spec, values, positionals, rest ?? []);
  checkPositionals(spec, positionals);
  if (spec.command === 'required') {
    if (!rest || rest.length === 0) throw new UsageError(`missing the command to run: ${usageLine(spec)}`, spec.name);
  } else if (rest !== undefined) {
    positionals.push(...rest);
    checkPositionals(spec, positionals);
  }
  return new Parsed(spec, values, positionals, rest ?? []);
}

function convert(option: OptionSpec, raw: string, command: string): OptionValue {
  if (option.type === 'string') {
    if (raw === '') throw new UsageError(`option --${option.name} must not be empty`, command);
    return raw;
  }
  const value = Number(raw);
  const min = option.min ?? 0;
  const max = option.max ?? Number.MAX_SAFE_INTEGER;
  if (raw.trim() === '' || !Number.isInteger(value) || value < min || value > max) {
    throw new UsageError(`option --${option.name} must be an integer from ${min} to ${max}, got ${JSON.stringify(raw)}`, command);
  }
  return value;
}

function checkPositionals(spec: CommandSpec, positionals: readonly string[]): void {
  let min = 0;
  let max = 0;
  for (const p of spec.positionals) {
    if (p.arity === '1' || p.arity === '+') min++;
    max = p.arity === '*' || p.arity === '+' || max === Infinity ? Infinity : max + 1;
  }
  if (positionals.length < min) {
    const missing = spec.positionals[positionals.length]?.name ?? 'an argument';
    throw new UsageError(`missing ${missing}: ${usageLine(spec)}`, spec.name);
  }
  if (positionals.length > max) {
    const extra = positionals[max] ?? '';
    const hint = spec.command === 'required' ? ' (put the command to run after --)' : '';
    throw new UsageError(`unexpected argument ${JSON.stringify(extra)}${hint}: ${usageLine(spec)}`, spec.name);
  }
}

export function usageLine(spec: CommandSpec): string {
  const parts = [`concord ${spec.name}`];
  for (const p of spec.positionals) {
    if (p.arity === '1') parts.push(p.name);
    else if (p.arity === '?') parts.push(`[${p.name}]`);
    else if (p.arity === '+') parts.push(`${p.name}...`);
    else parts.push(`[${p.name}...]`);
  }
  parts.push('[options]');
  if (spec.command === 'required') parts.push('-- CMD [ARGS...]');
  return parts.join(' ');
}

export function helpText(spec: CommandSpec): string {
  const lines = [`usage: ${usageLine(spec)}`, '', spec.summary];
  if (spec.description) lines.push('', spec.description);
  const visible = spec.options.filter((option) => option.hidden !== true);
  if (visible.length > 0) {
    lines.push('', 'options:');
    const labels = visible.map((option) =>
      option.type === 'boolean' ? `--${option.name}` : `--${option.name} ${option.value ?? 'VALUE'}`,
    );
    const width = Math.max(...labels.map((label) => label.length));
    visible.forEach((option, i) => {
      const shown = option.default === undefined || option.type === 'boolean' ? '' : ` (default ${String(option.default)})`;
      lines.push(`  ${(labels[i] ?? '').padEnd(width)}  ${option.description}${shown}`);
    });
  }
  if (spec.examples.length > 0) {
    lines.push('', spec.examples.length === 1 ? 'example:' : 'examples:');
    for (const example of spec.examples) lines.push(`  ${example}`);
  }
  return lines.join('\n');
}
