/** concord groups: lists the groups on the backend. */
import type { CommandSpec, Parsed } from './args.js';
import { BACKEND_OPTIONS, HELP_OPTION, JSON_OPTION, open, type Context } from './context.js';
import { out, toJson } from './output.js';

export const spec: CommandSpec = {
  name: 'groups',
  summary: 'List the groups on the backend, sorted, one per line.',
  positionals: [],
  options: [JSON_OPTION, ...BACKEND_OPTIONS, HELP_OPTION],
  examples: ['concord groups --url redis://127.0.0.1:6379 --json'],
};

export async function run(args: Parsed, context: Context): Promise<number> {
  const coordinator = await open(args, context);
  try {
    const groups = await coordinator.groups();
    if (args.flag('json')) out(toJson(groups));
    else for (const group of groups) out(group);
    return 0;
  } finally {
    await coordinator.close();
  }
}
