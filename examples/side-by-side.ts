/**
 * The same program run once and twice side by side: run it alone and it does all the work; start a second copy and
 * they split it. Uses an SQLite file, so separate processes of this host coordinate.
 *   npx tsx examples/side-by-side.ts            # one process
 *   npx tsx examples/side-by-side.ts --twice    # this program starts two copies of itself
 */
import { spawn } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { connect } from '../src/index.js';

const url = process.env.CONCORD_URL ?? `sqlite://${join(tmpdir(), 'concord-side-by-side.db')}`;

if (process.argv.includes('--twice')) {
  const self = fileURLToPath(import.meta.url);
  const copies = [0, 1].map(() => spawn(process.execPath, ['--import', 'tsx', self, '--copy', '--expect', '2'], { stdio: 'inherit' }));
  const codes = await Promise.all(copies.map((c) => new Promise((resolve) => c.on('exit', resolve))));
  process.exitCode = codes.every((c) => c === 0) ? 0 : 1;
} else {
  const expected = Number(process.argv[process.argv.indexOf('--expect') + 1]) || 1;
  const coordinator = await connect(url, { sessionTtlMs: 3_000 });
  const partitioner = await coordinator.group('side-by-side').partitioner();
  if (partitioner.members().length < expected)
    for await (const change of partitioner.changes()) if (change.members.length >= expected) break;
  const mine = Array.from({ length: 10 }, (_v, i) => `item-${i}`).filter((item) => partitioner.isMine(item));
  console.log(`${coordinator.member} of ${partitioner.members().length} takes ${mine.length}: ${mine.join(' ')}`);
  // Stay until every copy has taken its share (each says so in its capabilities), so no early leave changes the split.
  const group = coordinator.group('side-by-side');
  await group.updateCapabilities({ weight: 1, done: true });
  const finished = new Set<string>();
  for await (const event of group.watch()) {
    if (event.type !== 'leave' && event.capabilities.done === true) finished.add(event.member);
    if (finished.size >= expected) break;
  }
  await partitioner.close();
  await coordinator.close();
}
