/** concord schema: prints the SQL that creates concord's tables, for a database user without CREATE rights. */
import { parseUrl } from '../url.js';
import type { CommandSpec, Parsed } from './args.js';
import { HELP_OPTION, backendUrl } from './context.js';
import { UsageError, out } from './output.js';

export const spec: CommandSpec = {
  name: 'schema',
  summary: 'Print the SQL that creates the tables of a postgres:// or mysql:// backend, to run as a privileged user.',
  description:
    'concord creates its tables on first connect. Where the application user may not create tables, run this script once as one who may, then grant the application user SELECT, INSERT, UPDATE and DELETE on them (and USAGE on concord_waiters_id_seq in PostgreSQL). Connects to nothing.',
  positionals: [],
  options: [
    { name: 'url', type: 'string', value: 'URL', description: 'the backend URL (or set CONCORD_URL): its scheme picks the dialect' },
    HELP_OPTION,
  ],
  examples: ['concord schema --url postgres://app@db.example:5432/app | psql -U admin app'],
};

export async function run(args: Parsed): Promise<number> {
  const scheme = parseUrl(backendUrl(args)).protocol.slice(0, -1).toLowerCase();
  if (scheme === 'postgres' || scheme === 'postgresql') {
    out((await import('../../drivers/postgres/schema.js')).postgresSchemaScript().trimEnd());
    return 0;
  }
  if (scheme === 'mysql' || scheme === 'mariadb') {
    out((await import('../../drivers/mysql/schema.js')).mysqlSchemaScript().trimEnd());
    return 0;
  }
  // Only the SQL backends have tables; the URL is never printed (it may hold a password).
  throw new UsageError(`--url must be a postgres:// or mysql:// URL (no tables to create for "${scheme}:")`, 'schema');
}
