/**
 * What ?replicas=1 costs: uncontended acquire + release of one lock through Sentinel, with and without the URL
 * parameter, against a master with one replica on this host, in one run (interleaved rounds). bench/redis.ts appends
 * this section to bench/results/redis.md; run alone (npx tsx bench/redis-replicas.ts), it replaces that section there
 * and leaves the rest of the file as it was.
 */
import { randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { Redis } from 'ioredis';
import { connect } from '../src/index.js';
import { concordLock, ms, stats, type Subject } from './support.js';
import { startRedis, startRedisReplica, startSentinel } from '../test/support/servers.js';

export const HEADING = '### ?replicas=1: a grant confirmed by one replica (WAIT)';

async function cpuSeconds(admin: Redis): Promise<number> {
  const info = await admin.info('cpu');
  return Number(/used_cpu_user:([\d.]+)/.exec(info)?.[1] ?? 0) + Number(/used_cpu_sys:([\d.]+)/.exec(info)?.[1] ?? 0);
}

async function until(check: () => Promise<boolean>, what: string): Promise<void> {
  const end = performance.now() + 30_000;
  while (!(await check())) {
    if (performance.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/** The section's lines (markdown), from its heading on. */
export async function replicasSection(rounds = 12, perRound = 250): Promise<string[]> {
  const master = await startRedis();
  const replica = await startRedisReplica({ host: master.host, port: master.port });
  const sentinel = await startSentinel('m', { host: master.host, port: master.port });
  const masterAdmin = new Redis({ host: master.host, port: master.port });
  const replicaAdmin = new Redis({ host: replica.host, port: replica.port });
  const sentinelAdmin = new Redis({ host: sentinel.host, port: sentinel.port });
  try {
    await until(async () => (await replicaAdmin.info('replication')).includes('master_link_status:up'), 'the replica to sync');
    await until(
      async () =>
        ((await sentinelAdmin.call('SENTINEL', 'REPLICAS', 'm')) as string[][]).some((f) => f.join(' ').includes(`port ${replica.port}`)),
      'Sentinel to know the replica',
    );
    const ns = `b${randomBytes(4).toString('hex')}`;
    const subjects: Subject[] = [
      concordLock(await connect(sentinel.url, { namespace: ns, member: 'plain' }), 'plain', 'concord lock via Sentinel'),
      concordLock(await connect(`${sentinel.url}?replicas=1`, { namespace: ns, member: 'wait' }), 'wait', 'the same with ?replicas=1'),
    ];
    const samples = subjects.map((): number[] => []);
    const cpu = subjects.map(() => ({ master: 0, replica: 0, client: 0 }));
    for (const s of subjects) {
      for (let i = 0; i < 200; i++) {
        await s.acquire();
        await s.release();
      }
    }
    for (let r = 0; r < rounds; r++) {
      for (let k = 0; k < subjects.length; k++) {
        const index = (r + k) % subjects.length;
        const s = subjects[index];
        const into = samples[index];
        const spent = cpu[index];
        if (!s || !into || !spent) continue;
        const [master0, replica0] = [await cpuSeconds(masterAdmin), await cpuSeconds(replicaAdmin)];
        const client0 = process.cpuUsage();
        for (let i = 0; i < perRound; i++) {
          const t0 = performance.now();
          await s.acquire();
          await s.release();
          into.push(performance.now() - t0);
        }
        const client1 = process.cpuUsage(client0);
        spent.master += ((await cpuSeconds(masterAdmin)) - master0) * 1e6;
        spent.replica += ((await cpuSeconds(replicaAdmin)) - replica0) * 1e6;
        spent.client += client1.user + client1.system;
      }
    }
    for (const s of subjects) await s.close();
    const results = samples.map((v) => stats(v));
    const base = results[0];
    const lines = [
      HEADING,
      '',
      `Uncontended acquire + release of one lock through Sentinel, against a master with one replica (both on this host, no persistence), with and without ?replicas=1, interleaved in one run: ${String(rounds * perRound)} cycles each. With it, the acquire's script is followed by WAIT 1 and so is the release's: each waits for the replica's acknowledgement. CPU per cycle: the master's, the replica's (INFO cpu) and this process's.`,
      '',
      '| subject | p50 | p99 | mean | p50 ratio | mean ratio | master CPU | replica CPU | client CPU |',
      '|---|---|---|---|---|---|---|---|---|',
    ];
    subjects.forEach((s, i) => {
      const r = results[i];
      const c = cpu[i];
      if (!r || !c || !base) return;
      const n = samples[i]?.length ?? 1;
      lines.push(
        `| ${s.name} | ${ms(r.p50)} | ${ms(r.p99)} | ${ms(r.mean)} | ${(r.p50 / base.p50).toFixed(2)}x | ${(r.mean / base.mean).toFixed(2)}x | ${(c.master / n).toFixed(0)} µs | ${(c.replica / n).toFixed(0)} µs | ${(c.client / n).toFixed(0)} µs |`,
      );
    });
    lines.push('');
    return lines;
  } finally {
    masterAdmin.disconnect();
    replicaAdmin.disconnect();
    sentinelAdmin.disconnect();
    await sentinel.stop();
    await replica.stop();
    await master.stop();
  }
}

/** `text` with its ?replicas section replaced by `section` (or `section` appended when it has none). */
export function withSection(text: string, section: readonly string[]): string {
  const start = text.indexOf(HEADING);
  const body = section.join('\n');
  if (start < 0) return `${text.trimEnd()}\n\n${body}\n`;
  const next = text.indexOf('\n##', start + HEADING.length);
  return `${text.slice(0, start)}${body}\n${next < 0 ? '' : text.slice(next + 1)}`;
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const section = await replicasSection();
  process.stdout.write(`${section.join('\n')}\n`);
  const file = fileURLToPath(new URL('./results/redis.md', import.meta.url));
  writeFileSync(file, withSection(readFileSync(file, 'utf8'), section));
}
