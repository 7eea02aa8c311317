/**
 * Watches a group and waits for a lock, reporting on stdout (one JSON object a line): {watching, engine} once the
 * watch started, {join: member} and {leave: member} as it sees them, then {acquired, token}
 * once it holds the lock (it then lets go and exits).
 * Args: url member group lockName
 */
import { connect } from '../../../src/index.js';

const [url = '', member = '', group = 'g', name = 'l'] = process.argv.slice(2);
const say = (message: Record<string, unknown>): void => {
  process.stdout.write(`${JSON.stringify(message)}\n`);
};

const coordinator = await connect(url, { member, sessionTtlMs: 60_000 });
const stop = new AbortController();
const watching = (async () => {
  for await (const event of coordinator.group(group).watch({ signal: stop.signal })) {
    if (event.type === 'join') say({ join: event.member });
    if (event.type === 'leave') say({ leave: event.member });
  }
})();
say({ watching: member, engine: new URL(url).searchParams.get('engine') });
const held = await coordinator.lock(name).acquire();
say({ acquired: member, token: held.token.toString() });
await held.release();
stop.abort();
await watching.catch(() => undefined);
await coordinator.close();
