/**
 * npm run chaos: randomized, seeded fault campaigns with checkers (issue 14).
 *
 *   npm run chaos -- --driver redis --seconds 600 --seed 42 --clients 4
 *   npm run chaos -- --driver sqlite --seconds 15 --unsafe no-check      (a negative control: must find anomalies)
 *   npm run chaos -- --driver etcd --seed 42 --seconds 60 --plan         (print the nemesis schedule only)
 *
 * Options: --driver NAME (repeatable or comma-separated; default every driver available here), --seconds N (default
 * 60), --seed N (default random; printed), --clients N (default 4), --locks N (hot lock names, default 2),
 * --semaphores N (semaphores of 2 permits, default 2; used where the driver has shared locks), --faults a,b (only
 * these; none for none), --unsafe MODE (client 0 misbehaves on purpose: no-check, skip-lock, small-token,
 * ignore-leader-signal, drop-event, partitioner-miss, pending-op, leak-timer, over-limit, write-under-shared), --keep
 * (keep the history folder), --json FILE (append each campaign's summary as a JSON line), --quiet (no progress lines).
 *
 * Exit code 0 when no campaign found an anomaly, 1 when one did, 2 on a usage error. A failing campaign prints its
 * seed, the rerun command and the history around each anomaly; the whole history stays in the folder it names.
 * Rerunning with the seed replays the same schedule of faults and the same workload choices; the timings of a real
 * machine still differ from run to run.
 */
import { appendFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { runCampaign } from './campaign.js';
import { DRIVERS } from './drivers.js';
import { UNSAFE_MODES, type UnsafeMode } from './protocol.js';
import { excerpt, summary } from './report.js';
import { describeEpisode, FAULT_KINDS, planSchedule, type FaultKind } from './schedule.js';

function usage(message: string): never {
  console.error(`chaos: ${message}`);
  process.exit(2);
}

const { values } = parseArgs({
  options: {
    driver: { type: 'string', multiple: true },
    seconds: { type: 'string', default: '60' },
    seed: { type: 'string' },
    clients: { type: 'string', default: '4' },
    locks: { type: 'string', default: '2' },
    semaphores: { type: 'string', default: '2' },
    faults: { type: 'string' },
    unsafe: { type: 'string' },
    keep: { type: 'boolean', default: false },
    json: { type: 'string' },
    plan: { type: 'boolean', default: false },
    quiet: { type: 'boolean', default: false },
  },
  strict: true,
});

const integer = (text: string, what: string, min: number): number => {
  const n = Number(text);
  if (!Number.isInteger(n) || n < min) usage(`--${what} must be an integer >= ${min}, got ${text}`);
  return n;
};
const drivers = (values.driver ?? []).flatMap((d) => d.split(',')).filter((d) => d !== '');
for (const d of drivers) if (!(d in DRIVERS)) usage(`unknown driver ${d}; known: ${Object.keys(DRIVERS).join(', ')}`);
const chosen = drivers.length > 0 ? drivers : Object.keys(DRIVERS).filter((d) => DRIVERS[d]?.available().ok);
const seconds = integer(values.seconds, 'seconds', 1);
const seed = values.seed === undefined ? Math.floor(Math.random() * 2 ** 31) : integer(values.seed, 'seed', 0);
const clients = integer(values.clients, 'clients', 2);
const locks = integer(values.locks, 'locks', 1);
const semaphores = integer(values.semaphores, 'semaphores', 1);
const unsafe = values.unsafe as UnsafeMode | undefined;
if (unsafe !== undefined && !UNSAFE_MODES.includes(unsafe)) usage(`unknown --unsafe ${unsafe}; known: ${UNSAFE_MODES.join(', ')}`);
const faults = values.faults === 'none' ? [] : (values.faults?.split(',').filter((f) => f !== '') as FaultKind[] | undefined);
for (const f of faults ?? []) if (!FAULT_KINDS.includes(f)) usage(`unknown fault ${f}; known: ${FAULT_KINDS.join(', ')}`);

let failed = false;
for (const driver of chosen) {
  const spec = DRIVERS[driver];
  if (!spec) continue;
  if (values.plan) {
    const plan = planSchedule({ seed, seconds, clients, ttlMs: spec.ttlMs, faults: faults ?? spec.faults, members: spec.members });
    console.log(`# ${driver}, seed ${seed}, ${seconds} s, ${clients} clients\n${plan.map(describeEpisode).join('\n')}`);
    continue;
  }
  const result = await runCampaign({
    driver,
    seconds,
    seed,
    clients,
    locks,
    semaphores,
    keep: values.keep,
    ...(unsafe === undefined ? {} : { unsafe }),
    ...(faults === undefined ? {} : { faults }),
    ...(values.quiet ? {} : { log: (line: string) => console.error(`[${driver} ${new Date().toISOString().slice(11, 23)}] ${line}`) }),
  });
  console.log(summary(result));
  for (const anomaly of result.anomalies.slice(0, 10)) console.log(`\n${excerpt(anomaly, result.history, spec.ttlMs)}`);
  if (values.json) {
    const { history: _history, anomalies, ...rest } = result;
    appendFileSync(values.json, `${JSON.stringify({ ...rest, anomalies: anomalies.map((a) => `[${a.checker}] ${a.message}`) })}\n`);
  }
  if (result.anomalies.length > 0) failed = true;
  console.log('');
}
process.exitCode = failed ? 1 : 0;
