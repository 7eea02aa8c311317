/** concord members GROUP: lists a group's members and their capabilities. */
import type { CommandSpec, Parsed } from './args.js';
import { BACKEND_OPTIONS, HELP_OPTION, JSON_OPTION, open, type Context } from './context.js';
import { out, table, toJson } from './output.js';

export const spec: CommandSpec = {
  name: 'members',
  summary: 'List the members of a group with their capabilities, sorted by id.',
  positionals: [{ name: 'GROUP', arity: '1' }],
  options: [JSON_OPTION, ...BACKEND_OPTIONS, HELP_OPTION],
  examples: ['concord members workers', 'concord members workers --json'],
};

export async function run(args: Parsed, context: Context): Promise<number> {
  const group = args.positionals[0] ?? '';
  const coordinator = await open(args, context);
  try {
    const members = await coordinator.group(group).members();
    if (args.flag('json')) {
      out(toJson(members.map((member) => ({ id: member.id, capabilities: member.capabilities }))));
    } else if (members.length > 0) {
      for (const line of table([['MEMBER', 'CAPABILITIES'], ...members.map((member) => [member.id, toJson(member.capabilities)])]))
        out(line);
    }
    return 0;
  } finally {
    await coordinator.close();
  }
}
