/**
 * Writes RELIABILITY.md from the summaries `npm run chaos -- --json FILE` appended, one JSON line per campaign:
 *
 *   npm run chaos -- --driver sqlite --seconds 600 --seed 1401 --json runs.jsonl     (and the other drivers)
 *   npx tsx test/chaos/reliability.ts runs.jsonl COMMIT > RELIABILITY.md
 *
 * The last campaign per driver in the file is the one reported.
 */
import { readFileSync } from 'node:fs';
import { cpus } from 'node:os';
import type { CampaignResult } from './campaign.js';
import { DRIVERS } from './drivers.js';

// Summaries written before the workload took shared holds and permits have no counts of them.
type Summary = Omit<CampaignResult, 'history' | 'anomalies' | 'holds'> & {
  anomalies: string[];
  holds: { lock: number; lead: number; shared?: number; permit?: number };
};

const [file, commit = 'unknown'] = process.argv.slice(2);
if (!file) throw new Error('usage: reliability.ts RESULTS.jsonl COMMIT');
const latest = new Map<string, Summary>();
for (const line of readFileSync(file, 'utf8').split('\n'))
  if (line.trim() !== '') latest.set((JSON.parse(line) as Summary).driver, JSON.parse(line) as Summary);
// In the order of the driver table.
const runs = Object.keys(DRIVERS).flatMap((driver) => latest.get(driver) ?? []);

const n = (x: number): string => x.toLocaleString('en-US').replace(/,/g, ' ');
const failed = (r: Summary): number =>
  Object.values(r.opsByKind).reduce((sum, o) => sum + Object.values(o.failed).reduce((a, b) => a + b, 0), 0);
const ok = (r: Summary): number => Object.values(r.opsByKind).reduce((sum, o) => sum + o.ok, 0);
const faults = (r: Summary): string =>
  Object.entries(r.faults)
    .sort(([a], [b]) => (a < b ? -1 : 1))
    .map(([k, v]) => `${k} ${v}`)
    .join(', ');
const total = (r: Summary): number => Object.values(r.faults).reduce((a, b) => a + b, 0);

const rows = runs.map(
  (r) =>
    `| ${r.driver} | ${r.seed} | ${r.clients} (${r.incarnations} processes) | ${r.seconds} s (${Math.round(r.elapsedMs / 1000)} s in all) | ${n(r.operations)} (${n(ok(r))} ok, ${n(failed(r))} failed as faults make them, ${n(r.operations - ok(r) - failed(r))} cut short by SIGKILL) | ${n(r.holds.lock)} (${n(r.holds.shared ?? 0)} shared) / ${n(r.holds.permit ?? 0)} / ${n(r.holds.lead)} | ${n(r.writes.accepted)} / ${n(r.writes.refused)} | ${total(r)}: ${faults(r)} | ${r.convergence?.ok ? `${r.convergence.ms} ms` : 'no'} | **${r.anomalies.length}** |`,
);
const reruns = runs.map((r) => `npm run chaos -- --driver ${r.driver} --seconds ${r.seconds} --seed ${r.seed} --clients ${r.clients}`);
const dates = runs.map((r) => r.startedAt.slice(0, 10));
const day = [...new Set(dates)].join(', ');

process.stdout.write(`# Reliability

The chaos campaign (\`npm run chaos\`, in \`test/chaos/\`) runs a seeded random workload in several client processes per
driver while a seeded nemesis stops, kills and cuts them off and kills, stops and fails over the servers, then checks
the recorded history. Each checker has a negative control: a deliberately unsafe client mode that a real short campaign
must catch (\`test/chaos/controls.test.ts\`), so a clean run is evidence rather than silence. CI runs a short campaign
per driver (\`test/chaos/campaign.test.ts\`).

## The campaigns

Run on ${day} at commit ${commit}, on ${cpus().length} cores (${cpus()[0]?.model ?? 'unknown CPU'}), the drivers side by side.

| driver | seed | clients | faults for | operations | locks (shared) / permits / leaderships held | register writes accepted / refused | faults injected | views agreed after quiescing | anomalies |
|---|---|---|---|---|---|---|---|---|---|
${rows.join('\n')}

A refused register write is one that reached the fenced register after its holder's validity had ended (its process
was stopped between its look at \`valid\` and the register's answer); the register checker proves every refusal is
such a write. Failed operations are timeouts, aborts, lost sessions and connection errors that the faults cause; an
error of any other kind is an anomaly (the errors checker).

To rerun (the same seed replays the same schedule of faults and the same workload choices; a real machine's timings
differ from run to run, so the interleavings do too):

\`\`\`sh
${reruns.join('\n')}
\`\`\`

## What it checks

- **lock-overlap, leader-overlap**: a hold is valid from its acquire (or campaign) resolving until its last look at
  \`held.valid\` that said true, stamped before the look on CLOCK_MONOTONIC; no valid interval of an exclusive hold
  of a lock (of a leadership) overlaps another of the same name, across processes; shared holds overlap only each
  other.
- **permit-limit**: at no instant are more permits of a semaphore valid than its limit.
- **register**: every holder writes to a fenced register the harness keeps and waits for its answer; every write that
  arrived within its holder's validity was accepted. An exclusive holder's write is refused when a newer token of any
  mode was seen, a shared holder's or permit's only when a newer exclusive token was (concurrent shared holders carry
  tokens in no particular order).
- **token-order**: every token of a name is handed out once; an exclusive hold's token (a term) is greater than every
  token of a hold that became valid before it; a shared hold's or permit's is greater than every exclusive one's that
  became valid before it, and than every one's that became valid before it was asked for.
- **convergence**: after the nemesis heals and the workload quiesces, within TTL + the driver's detection delay + 1 s,
  every watcher's view equals \`members()\`, every partitioner's members equal the group's, and the memberships are
  exactly the clients meant to be in them (one client ends outside the watched group, one with its partitioner
  closed, so a membership that comes back shows).
- **settle**: every operation of a process that lived to the end settled; every such process finished its shutdown.
- **leak**: after \`close()\` a client holds no timer, socket or other handle it did not have before \`connect()\`, and
  exits by itself.
- **crash, errors**: no uncaught exception or unhandled rejection; every failure a \`ConcordError\` of a code faults
  explain.

The faults: SIGSTOP of a client (at random, or whoever holds a lock or a permit, or leads) for less and more than the TTL; SIGKILL
of a client and a new process in its place; a client's own fault proxies cutting its connections, partitioning it
(connections reset when it heals, as TCP would once either side gave up), delaying every byte (sometimes by more than
the TTL) or dropping the server's replies; the server SIGKILLed and restarted (Redis with \`appendonly yes\`,
\`appendfsync always\`; etcd and ZooKeeper keep their data folders) or SIGSTOPped (Redis); one member of etcd's or
ZooKeeper's three, or the leader, SIGKILLed and restarted; a Redis Sentinel failover (the master SIGKILLed, the replica
promoted, the old master back as a replica); another SQLite connection holding the write lock. PostgreSQL and MySQL
campaigns run against the database server the machine already runs, which they do not kill: the fault tests
(\`test/drivers/postgres/faults.test.ts\`, \`test/drivers/mysql/faults.test.ts\`) kill and restart servers of their own.
Two lanes of faults run at once, so they combine.

## Defects the campaigns found

Each is fixed; \`test/chaos/regressions.test.ts\` keeps a deterministic test of each that failed before its fix.

**A partitioner's leave that could not reach the backend was forgotten.** \`partitioner.close()\` resolved even when
its leave failed (the link down, or the session lost meanwhile), and the coordinator still counted the group as
joined, so the membership stayed, or the restored session joined the group again, for good. Nearly every 10-minute
campaign showed it once. Now a close gives the group up at once (a lost session no longer re-joins it) and owes the
backend the leave: it is sent again at each renewal and reconnection until the backend answers, and a later join of
the same group sends it first. The convergence check counts a member that outlives its partitioner as a failure.

**A replacement session suspended while it re-joined was never restored.** The re-join gave up once the session was
not connected, \`restored\` was announced only if it was connected when the re-join ended, and nothing tried again on
\`reconnected\`: the member stayed out of its groups while the coordinator counted them as joined. An etcd campaign
(\`--seed 1403\`, a client's session lost while the etcd leader was killed) found it. Now a replacement session stays
unrestored until one re-join pass has run without the link dropping; a reconnection starts another pass, and only
then is \`restored\` announced.

**A shared hold whose release failed could be handed out again with its old token.** When a shared hold's or permit's
release did not reach the backend (the SQLite file busy past the driver's budget), the core freed its slot at once, so
the next shared request of the same process took that slot, found the old row and returned its token, and the retried
release then freed what the new holder thought it held. SQLite campaigns found it (\`--seed 1\` with a shared hold,
\`--seed 3\` with a permit). Now a slot is free again only once its release has reached the backend or its session
has ended; a new request meanwhile takes another slot.

**A ZooKeeper group snapshot whose reads failed as the link dropped left a rejection unhandled.** The snapshot read
the members in parallel and awaited them one by one, so when the link dropped with several reads in flight, the ones
not yet awaited rejected with nobody listening, and the client process crashed. A ZooKeeper campaign found it; the
reads are now awaited together.
`);
