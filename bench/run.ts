/**
 * npm run bench: runs every benchmark in its own process, one after another (they would disturb each other side by
 * side), then writes BENCHMARKS.md from their sections. `npm run bench -- redis etcd` runs only those;
 * `npm run bench -- --write` runs none and only writes BENCHMARKS.md from the results files.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { fileURLToPath } from 'node:url';

const ALL = ['placement', 'sqlite', 'redis', 'etcd', 'zookeeper', 'postgres', 'mysql', 'diagnostics', 'scale'];
// Sections in BENCHMARKS.md order; shared.md gathers the shared-lock numbers of several drivers' runs by hand.
const SECTIONS = ['placement', 'sqlite', 'redis', 'etcd', 'zookeeper', 'postgres', 'mysql', 'shared', 'scale', 'diagnostics'];
const root = fileURLToPath(new URL('..', import.meta.url));
const chosen = process.argv.slice(2);
const names = chosen.includes('--write') ? [] : chosen.length > 0 ? chosen : ALL;

for (const name of names) {
  const script = `bench/${name}.ts`;
  if (!existsSync(`${root}${script}`)) {
    console.error(`no benchmark ${script}`);
    process.exitCode = 1;
    continue;
  }
  console.error(`running ${script}`);
  const run = spawnSync(process.execPath, ['--import', 'tsx', script], { cwd: root, stdio: ['ignore', 'inherit', 'inherit'] });
  if (run.status !== 0) {
    console.error(`${script} failed with ${run.status ?? run.signal}`);
    process.exitCode = 1;
  }
}

const sections = SECTIONS.filter((name) => existsSync(`${root}bench/results/${name}.md`)).map((name) =>
  readFileSync(`${root}bench/results/${name}.md`, 'utf8').trim(),
);
writeFileSync(
  `${root}BENCHMARKS.md`,
  `# Benchmarks

Measured with \`npm run bench\`, Node ${process.version}. Each section runs concord and its peers in one process against
one server, and reports ratios: absolute times on a shared machine drift by 1.5-2x between runs, ratios much less.
Sections run at different times may come from different machines (${cpus().length} cores; each driver's section names
its CPU and says when it ran): compare numbers within a section, not across sections.

${sections.join('\n\n')}
`,
);
console.error('wrote BENCHMARKS.md');
