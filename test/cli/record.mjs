// A command for `concord lock` and `concord elect` tests: appends what it sees to a file, then waits.
// usage: node record.mjs FILE [exit-code]   (exits at once with exit-code when given)
import { appendFileSync } from 'node:fs';

const [file, code] = process.argv.slice(2);
const write = (line) => appendFileSync(file, `${line}\n`);
write(`start pid=${process.pid} token=${process.env.CONCORD_FENCING_TOKEN ?? ''} term=${process.env.CONCORD_TERM ?? ''} member=${process.env.CONCORD_MEMBER ?? ''}`);
if (code !== undefined) process.exit(Number(code));
for (const signal of ['SIGTERM', 'SIGINT']) {
  process.on(signal, () => {
    write(`signal ${signal}`);
    process.exit(0);
  });
}
setInterval(() => undefined, 1000);
