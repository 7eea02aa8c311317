/**
 * A grant whose answer was lost: an acquire's statement given up after the query timeout (its connection dropped)
 * runs on in the server and commits the grant, or the connection drops between the commit and the answer. The next
 * look of the same request finds the lock row held by its own session, with nothing of this process holding it; it
 * must take that grant, not queue behind it until its timeout. The test makes that state directly: the lock row given
 * to the coordinator's session behind its back, as the lost grant would have.
 */
import { randomBytes } from 'node:crypto';
import type { EventEmitter } from 'node:events';
import mysql from 'mysql2/promise';
import { afterEach, describe, expect, it } from 'vitest';
import { kQueued } from '../../../src/coordinator.js';
import { connect } from '../../../src/index.js';
import { mysqlUrl, requireReachable } from '../../support/servers.js';

const availability = await requireReachable('mysql');

describe.skipIf(!availability.ok)(`mysql lost grant${availability.ok ? '' : ` (skipped: ${availability.reason})`}`, () => {
  const open: Array<{ close(): Promise<void> }> = [];
  afterEach(async () => {
    await Promise.all(open.splice(0).map((c) => c.close()));
  });

  for (const contended of [false, true]) {
    it(`an acquire takes a grant of its own session whose answer was lost (${contended ? 'queued' : 'first'} look)`, async () => {
      const namespace = `lg${randomBytes(4).toString('hex')}`;
      const c = await connect(mysqlUrl(), { namespace, member: 'm' });
      open.push(c);
      const admin = await mysql.createConnection(mysqlUrl());
      open.push({ close: () => admin.end() });
      const key = [namespace, 'lock', 'probe'];
      // A queued wait first makes the next acquire of the name go straight to the driver's queue (recently contended).
      if (contended) {
        const other = await connect(mysqlUrl(), { namespace, member: 'o' });
        open.push(other);
        const held = await other.lock('probe').acquire();
        const queued = new Promise((resolve) => (c as unknown as EventEmitter).once(kQueued, resolve));
        const waiting = c.lock('probe').acquire();
        await queued;
        await held.release();
        await (await waiting).release();
      } else {
        await (await c.lock('probe').acquire()).release();
      }
      const [sessions] = await admin.query('SELECT id FROM concord_sessions WHERE ns = ? AND member = ?', [namespace, 'm']);
      const session = (sessions as Array<{ id: Buffer }>)[0]?.id.toString('utf8');
      await admin.query(
        'UPDATE concord_locks SET fence = fence + 1, token = fence, session = ?, member = ? WHERE ns = ? AND kind = ? AND name = ?',
        [session, 'm', ...key],
      );
      const [rows] = await admin.query('SELECT token FROM concord_locks WHERE ns = ? AND kind = ? AND name = ?', key);
      const token = BigInt(String((rows as Array<{ token: number }>)[0]?.token));
      const held = await c.lock('probe').acquire({ timeoutMs: 5000 });
      expect(held.token).toBe(token);
      await held.release();
      // Released for real: another coordinator takes it at once, with the next token.
      const third = await connect(mysqlUrl(), { namespace, member: 'n' });
      open.push(third);
      const next = await third.lock('probe').tryAcquire();
      expect(next?.token).toBe(token + 1n);
      await next?.release();
    }, 30_000);
  }
});
