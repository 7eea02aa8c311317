/**
 * What a campaign prints: a summary (operations, faults by kind, register writes, convergence, anomalies, how to
 * rerun) and, for each anomaly, the history around it: the records of the processes and keys involved and every
 * nemesis action, from two TTLs before to one TTL after, on the shared monotonic clock.
 */
import type { Anomaly } from './checkers.js';
import type { CampaignResult } from './campaign.js';
import type { NemesisRecord, Recorded, RegisterWrite } from './protocol.js';

const secs = (ns: number): string => `+${(ns / 1e9).toFixed(6)} s`;

export function summary(result: CampaignResult): string {
  const lines: string[] = [];
  lines.push(
    `chaos ${result.driver}: seed ${result.seed}, ${result.clients} clients, ${result.seconds} s of faults, ${(result.elapsedMs / 1000).toFixed(1)} s in all` +
      (result.unsafe ? `, UNSAFE client 0: ${result.unsafe}` : ''),
  );
  const ops = Object.entries(result.opsByKind)
    .sort(([a], [b]) => (a < b ? -1 : 1))
    .map(([f, { ok, failed }]) => {
      const fails = Object.entries(failed)
        .map(([code, n]) => `${code.replace(/^ERR_/, '')} ${n}`)
        .join(', ');
      return `${f} ${ok}${fails ? ` (${fails})` : ''}`;
    });
  lines.push(`operations: ${result.operations} (${result.incarnations} client processes): ${ops.join('; ')}`);
  lines.push(
    `holds: ${result.holds.lock} locks (${result.holds.shared} shared), ${result.holds.permit} permits, ${result.holds.lead} leaderships; register writes: ${result.writes.accepted} accepted, ${result.writes.refused} refused`,
  );
  const faults = Object.entries(result.faults).map(([k, n]) => `${k} ${n}`);
  lines.push(`faults: ${faults.length > 0 ? faults.join(', ') : 'none'}`);
  const c = result.convergence;
  lines.push(`convergence: ${c === undefined ? 'not reached' : c.ok ? `${c.ms} ms after quiescing` : 'FAILED'}`);
  lines.push(`anomalies: ${result.anomalies.length}`);
  for (const a of result.anomalies.slice(0, 20)) lines.push(`  [${a.checker}] ${a.message}`);
  if (result.anomalies.length > 20) lines.push(`  ... and ${result.anomalies.length - 20} more`);
  if (result.dir) lines.push(`history: ${result.dir}`);
  lines.push(`rerun: ${result.rerun}`);
  return lines.join('\n');
}

type Line = { at: number; text: string };

function describe(r: Recorded, ops: Map<string, string>): string {
  switch (r.k) {
    case 'inv':
      return `inv #${r.op} ${r.f}${r.name === undefined ? '' : ` ${r.name}`}`;
    case 'ok':
      return `ok  #${r.op} ${ops.get(`${r.proc}#${r.op}`) ?? ''}${r.token === undefined ? '' : ` token ${r.token}`}`;
    case 'fail':
      return `err #${r.op} ${ops.get(`${r.proc}#${r.op}`) ?? ''} ${r.code}`;
    case 'hold':
      return `holds ${r.kind}:${r.name}${r.shared === true && r.kind === 'lock' ? ' shared' : ''} token ${r.token} (${r.hold}${r.asked === undefined ? '' : `, asked ${secs(r.asked)}`})`;
    case 'write':
      return `valid, writes #${r.seq} (${r.hold})`;
    case 'invalid':
      return `invalid: ${r.code} (${r.hold})`;
    case 'end':
      return `stops using ${r.hold}`;
    case 'session':
      return `session ${r.event}`;
    case 'crash':
      return `CRASH ${r.error.split('\n')[0] ?? ''}`;
    case 'final':
      return `final, pending: ${r.pending.map((p) => `#${p.op} ${p.f}`).join(', ') || 'none'}`;
    case 'census':
      return `census: ${r.leaked.join(', ') || 'clean'}`;
    case 'start':
      return `started, pid ${r.pid}`;
  }
}

/** The history around one anomaly, at most `max` lines. */
export function excerpt(
  anomaly: Anomaly,
  history: { records: readonly Recorded[]; register: readonly RegisterWrite[]; nemesis: readonly NemesisRecord[] },
  ttlMs: number,
  max = 80,
): string {
  const from = anomaly.at - 2 * ttlMs * 1e6;
  const to = anomaly.at + ttlMs * 1e6;
  const procs = new Set(anomaly.procs);
  const keys = new Set(anomaly.keys);
  const ops = new Map<string, string>();
  for (const r of history.records) if (r.k === 'inv') ops.set(`${r.proc}#${r.op}`, `${r.f}${r.name === undefined ? '' : ` ${r.name}`}`);
  const lines: Line[] = [];
  for (const r of history.records) {
    if (r.at < from || r.at > to || !procs.has(r.proc)) continue;
    lines.push({ at: r.at, text: `${r.proc} ${describe(r, ops)}` });
  }
  for (const w of history.register) {
    if (w.at < from || w.at > to || (!keys.has(w.key) && !procs.has(w.proc))) continue;
    lines.push({
      at: w.at,
      text: `register ${w.key} ${w.accepted ? 'accepts' : 'REFUSES'} #${w.seq} of ${w.hold}${w.shared === true ? ' shared' : ''} token ${w.token} (looked ${secs(w.look)})`,
    });
  }
  for (const n of history.nemesis) if (n.at >= from && n.at <= to) lines.push({ at: n.at, text: `nemesis ${n.phase} ${n.detail}` });
  lines.sort((a, b) => a.at - b.at);
  // Keep the lines nearest the anomaly.
  const nearest = [...lines].sort((a, b) => Math.abs(a.at - anomaly.at) - Math.abs(b.at - anomaly.at)).slice(0, max);
  const kept = new Set(nearest);
  const shown = lines.filter((l) => kept.has(l));
  const omitted = lines.length - shown.length;
  return [
    `--- [${anomaly.checker}] ${anomaly.message}`,
    ...shown.map((l) => `${secs(l.at)} ${l.at === anomaly.at ? '>>' : '  '} ${l.text}`),
    ...(omitted > 0 ? [`(${omitted} more lines in the saved history)`] : []),
  ].join('\n');
}
