/** concord leader GROUP: prints the current leader of a group. */
import type { CommandSpec, Parsed } from './args.js';
import { BACKEND_OPTIONS, HELP_OPTION, JSON_OPTION, open, type Context } from './context.js';
import { out, toJson } from './output.js';

export const spec: CommandSpec = {
  name: 'leader',
  summary: 'Print the member id of the current leader of a group (nothing, and exit code 1, when there is none).',
  positionals: [{ name: 'GROUP', arity: '1' }],
  options: [JSON_OPTION, ...BACKEND_OPTIONS, HELP_OPTION],
  examples: ['concord leader scheduler', 'concord leader scheduler --json   # {"group":"scheduler","leader":"host-123-a1b2c3"}'],
};

export async function run(args: Parsed, context: Context): Promise<number> {
  const group = args.positionals[0] ?? '';
  const coordinator = await open(args, context);
  try {
    const leader = await coordinator.group(group).leader();
    if (args.flag('json')) out(toJson({ group, leader: leader ?? null }));
    else if (leader !== undefined) out(leader);
    return leader === undefined && !args.flag('json') ? 1 : 0;
  } finally {
    await coordinator.close();
  }
}
