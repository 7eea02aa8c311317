/** Members publish capabilities (any JSON object) and update them. `npx tsx examples/capabilities.ts [URL]` */
import { connect } from '../src/index.js';

const url = process.argv[2] ?? process.env.CONCORD_URL ?? 'memory://example';
await using gpu = await connect(url, { member: 'gpu-box' });
await using cpu = await connect(url, { member: 'cpu-box' });

await gpu.group('renderers').join({ create: true, capabilities: { gpus: 4, zone: 'eu-1' } });
await cpu.group('renderers').join({ capabilities: { gpus: 0, zone: 'us-2' } });
const members = await gpu.group('renderers').members();
const withGpu = members.filter((m) => typeof m.capabilities.gpus === 'number' && m.capabilities.gpus > 0);
console.log(
  'members with a GPU:',
  withGpu.map((m) => m.id),
);

await gpu.group('renderers').updateCapabilities({ gpus: 2, zone: 'eu-1', draining: true });
console.log('gpu-box now:', (await cpu.group('renderers').members()).find((m) => m.id === 'gpu-box')?.capabilities);
