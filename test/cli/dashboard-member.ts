/**
 * A member in a process of its own, for the dashboard tests: `URL NAMESPACE MEMBER TTL-MS CAPABILITIES-JSON` joins
 * the group "workers", prints "joined", and stays until SIGTERM (leaving cleanly) or SIGKILL (leaving by its TTL).
 */
import { connect, type Capabilities } from '../../src/index.js';

const [url = '', namespace = '', member = '', ttl = '', capabilities = '{}'] = process.argv.slice(2);
const coordinator = await connect(url, { namespace, member, sessionTtlMs: Number(ttl) });
await coordinator.group('workers').join({ create: true, capabilities: JSON.parse(capabilities) as Capabilities });
process.stdout.write('joined\n');
const keepAlive = setInterval(() => undefined, 60_000);
process.once('SIGTERM', () => {
  clearInterval(keepAlive);
  void coordinator.close();
});
