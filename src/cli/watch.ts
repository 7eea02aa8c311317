/** concord watch GROUP: prints membership events as they happen, one line each, until interrupted. */
import type { GroupEvent } from '../types.js';
import type { CommandSpec, Parsed } from './args.js';
import { BACKEND_OPTIONS, HELP_OPTION, JSON_OPTION, open, type Context } from './context.js';
import { out, toJson } from './output.js';

export const spec: CommandSpec = {
  name: 'watch',
  summary: "Print a group's membership events as they happen (join, update, leave), one line each, until interrupted.",
  description: 'The stream starts with one join per current member (marked "initial"), unless --no-initial.',
  positionals: [{ name: 'GROUP', arity: '1' }],
  options: [
    { name: 'initial', type: 'boolean', default: true, description: 'start with the current members (--no-initial: only changes)' },
    JSON_OPTION,
    ...BACKEND_OPTIONS,
    HELP_OPTION,
  ],
  examples: ['concord watch workers', 'concord watch workers --json --no-initial | jq .member'],
};

export async function run(args: Parsed, context: Context): Promise<number> {
  const group = args.positionals[0] ?? '';
  const json = args.flag('json');
  const coordinator = await open(args, context);
  try {
    const watch = coordinator.group(group).watch({ signal: context.interrupted, initial: args.flag('initial') });
    try {
      for await (const event of watch) out(json ? toJson({ time: new Date().toISOString(), ...event }) : line(event));
    } catch (error) {
      if (!context.interrupted.aborted) throw error;
    } finally {
      await watch.close();
    }
    return 0;
  } finally {
    await coordinator.close();
  }
}

function line(event: GroupEvent): string {
  const time = new Date().toISOString();
  if (event.type === 'leave') return `${time}  leave   ${event.member}`;
  const tag = event.type === 'join' && event.initial ? 'member' : event.type;
  return `${time}  ${tag.padEnd(6)}  ${event.member}  ${toJson(event.capabilities)}`;
}
