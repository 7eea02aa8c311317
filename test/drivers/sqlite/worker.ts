/**
 * One of several processes contending for one lock that guards a shared file. Each holding: the file must say
 * nobody holds it, then it says we do, its counter goes up by one, and it must still say we do at the end.
 * Prints one JSON line: the holding intervals (process.hrtime.bigint, shared by every process of the host) and
 * anything wrong it saw. Args: url member count guardFile
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { connect } from '../../../src/index.js';

interface Guard {
  holder: string | null;
  count: number;
}

const [url = '', member = '', countArg = '0', guardFile = ''] = process.argv.slice(2);
const coordinator = await connect(url, { member, sessionTtlMs: 10_000 });
const lock = coordinator.lock('guarded');
const intervals: Array<{ token: string; start: string; end: string }> = [];
const violations: string[] = [];
const read = (): Guard => JSON.parse(readFileSync(guardFile, 'utf8')) as Guard;

for (let i = 0; i < Number(countArg); i++) {
  const held = await lock.acquire();
  const start = process.hrtime.bigint();
  const before = read();
  if (before.holder !== null) violations.push(`${member} token ${held.token} found ${before.holder} holding the file`);
  writeFileSync(guardFile, JSON.stringify({ holder: `${member}#${held.token}`, count: before.count + 1 }));
  // Let the event loop turn while holding, so a wrongly granted lock would have room to overlap.
  await new Promise((resolve) => setImmediate(resolve));
  const after = read();
  if (after.holder !== `${member}#${held.token}`)
    violations.push(`${member} token ${held.token} was overwritten by ${String(after.holder)}`);
  writeFileSync(guardFile, JSON.stringify({ holder: null, count: after.count }));
  if (held.signal.aborted && (held.signal.reason as { code?: string }).code === 'ERR_LOCK_LOST') {
    violations.push(`${member} lost token ${held.token} while holding`);
  }
  const end = process.hrtime.bigint();
  await held.release();
  intervals.push({ token: held.token.toString(), start: start.toString(), end: end.toString() });
}
await coordinator.close();
process.stdout.write(`${JSON.stringify({ done: member, intervals, violations })}\n`);
