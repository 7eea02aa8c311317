/**
 * One XREAD BLOCK loop per driver, on its own connection, reading every watched group's change stream.
 *
 * Each watch starts at its snapshot's stream id and sequence number. Entries carry the group's sequence number, so a
 * watch sees at once when entries it never read were trimmed away (the next number is not the successor) and asks
 * the core to resynchronise. When a watch is added while the loop is blocked, CLIENT UNBLOCK ends the wait so the
 * next read includes it.
 */
import type { Redis as RedisClient } from 'ioredis';
import { sleep } from '../../src/clock.js';
import { debug } from '../../src/debug.js';
import type { DriverGroupEvent, WatchSink } from '../../src/driver.js';
import type { Capabilities } from '../../src/types.js';
import { whenReady } from './connection.js';

export interface StreamWatch {
  readonly key: string;
  readonly group: string;
  readonly sink: WatchSink;
  /** Last stream id delivered (or the snapshot's). */
  id: string;
  /** Sequence number of that entry. */
  seq: number;
  active: boolean;
}

const BLOCK_MS = 5000;
/** Without CLIENT UNBLOCK (refused by an ACL), a new watch waits for the current read to time out. */
const SHORT_BLOCK_MS = 250;
const COUNT = 512;

type Entry = [id: string, fields: string[]];
type Reply = Array<[key: string, entries: Entry[]]> | null;

/** Stream entry ids (`<ms>-<seq>`) in stream order (not the kit's compareIds: these compare as numbers). */
function compareStreamIds(a: string, b: string): number {
  const [am = '0', as = '0'] = a.split('-');
  const [bm = '0', bs = '0'] = b.split('-');
  const ms = BigInt(am) - BigInt(bm);
  if (ms !== 0n) return ms < 0n ? -1 : 1;
  const seq = BigInt(as) - BigInt(bs);
  return seq === 0n ? 0 : seq < 0n ? -1 : 1;
}

export class StreamReader {
  readonly #client: RedisClient;
  readonly #unblocker: RedisClient;
  readonly #watches = new Set<StreamWatch>();
  #running: Promise<void> | undefined;
  #stopped = false;
  #clientId: number | undefined;
  /** CLIENT ID was asked on the current connection (an ACL may refuse it: then reads block for less). */
  #idAsked = false;
  #reading = false;
  #dirty = false;
  #wake: (() => void) | undefined;
  #wasDown = false;

  /** `client` blocks in XREAD; `unblocker` (the command connection) sends CLIENT UNBLOCK. */
  constructor(client: RedisClient, unblocker: RedisClient) {
    this.#client = client;
    this.#unblocker = unblocker;
    client.on('close', () => {
      this.#clientId = undefined;
      this.#idAsked = false;
      this.#wasDown = true;
    });
    client.on('ready', () => {
      if (!this.#wasDown) return;
      this.#wasDown = false;
      // The stream is still there after a reconnect, but a restarted server may have lost it: check from scratch.
      for (const watch of [...this.#watches]) this.#resync(watch);
    });
  }

  add(watch: StreamWatch): void {
    this.#watches.add(watch);
    this.#kick();
    this.#running ??= this.#loop().finally(() => {
      this.#running = undefined;
    });
  }

  remove(watch: StreamWatch): void {
    watch.active = false;
    this.#watches.delete(watch);
  }

  stop(): Promise<void> {
    this.#stopped = true;
    this.#wake?.();
    return this.#running ?? Promise.resolve();
  }

  #resync(watch: StreamWatch): void {
    if (!watch.active) return;
    this.remove(watch);
    try {
      watch.sink.resync();
    } catch (error) {
      debug('watch sink failed: %s', (error as Error).message);
    }
  }

  #kick(): void {
    this.#dirty = true;
    this.#wake?.();
    if (this.#reading) void this.#unblock();
  }

  /** The read may not have reached the server yet when we ask: retry a few times until it is unblocked or redone. */
  async #unblock(): Promise<void> {
    for (let attempt = 0; attempt < 50 && this.#reading && this.#dirty && !this.#stopped; attempt++) {
      const id = this.#clientId;
      if (id === undefined) return;
      try {
        const n = await this.#unblocker.call('CLIENT', 'UNBLOCK', String(id));
        if (n === 1) return;
      } catch {
        return; // the command link is down: the read's own timeout will pick the watch up
      }
      await sleep(2);
    }
  }

  async #loop(): Promise<void> {
    while (!this.#stopped) {
      if (this.#watches.size === 0) {
        await new Promise<void>((resolve) => {
          this.#wake = resolve;
        });
        this.#wake = undefined;
        continue;
      }
      if (this.#client.status !== 'ready' || !this.#idAsked) {
        if (this.#client.status === 'wait') this.#client.connect().catch(() => undefined);
        if (!(await whenReady(this.#client, 200))) continue;
        try {
          this.#clientId = Number(await this.#client.call('CLIENT', 'ID'));
          this.#idAsked = true;
        } catch (error) {
          if (this.#client.status === 'ready') {
            debug('CLIENT ID refused (%s): new watches join the read within %d ms', (error as Error).message, SHORT_BLOCK_MS);
            this.#idAsked = true;
          } else {
            await sleep(20);
          }
        }
        continue;
      }
      // Each stream is read from the earliest position any of its watches needs.
      const positions = new Map<string, string>();
      for (const watch of this.#watches) {
        const at = positions.get(watch.key);
        if (at === undefined || compareStreamIds(watch.id, at) < 0) positions.set(watch.key, watch.id);
      }
      const keys = [...positions.keys()];
      this.#dirty = false;
      this.#reading = true;
      let reply: Reply;
      try {
        const block = this.#clientId === undefined ? SHORT_BLOCK_MS : BLOCK_MS;
        reply = (await this.#client.call(
          'XREAD',
          'COUNT',
          String(COUNT),
          'BLOCK',
          String(block),
          'STREAMS',
          ...keys,
          ...keys.map((k) => positions.get(k) ?? '0-0'),
        )) as Reply;
      } catch (error) {
        this.#reading = false;
        if (this.#stopped) return;
        debug('stream read failed: %s', (error as Error).message);
        await sleep(20);
        continue;
      }
      this.#reading = false;
      if (reply) this.#deliver(reply);
    }
  }

  #deliver(reply: NonNullable<Reply>): void {
    for (const [key, entries] of reply) {
      for (const watch of [...this.#watches]) {
        if (watch.key !== key) continue;
        for (const [id, fields] of entries) {
          if (!watch.active) break;
          if (compareStreamIds(id, watch.id) <= 0) continue;
          const record = fieldsOf(fields);
          const seq = Number(record.n);
          if (seq !== watch.seq + 1) {
            debug('watch of group "%s" fell behind (expected %d, read %d): resync', watch.group, watch.seq + 1, seq);
            this.#resync(watch);
            break;
          }
          watch.id = id;
          watch.seq = seq;
          let event: DriverGroupEvent | undefined;
          try {
            event = toEvent(record);
          } catch (error) {
            // Not written by this driver (say, by hand): the change it stands for cannot be known, so start over.
            debug('unreadable entry %s in the stream of group "%s" (%s): resync', id, watch.group, (error as Error).message);
            this.#resync(watch);
            break;
          }
          if (!event) continue;
          try {
            watch.sink.event(event);
          } catch (error) {
            debug('watch sink failed: %s', (error as Error).message);
          }
        }
      }
    }
  }
}

function fieldsOf(fields: string[]): Record<string, string> {
  const record: Record<string, string> = {};
  for (let i = 0; i + 1 < fields.length; i += 2) record[fields[i] ?? ''] = fields[i + 1] ?? '';
  return record;
}

function toEvent(record: Record<string, string>): DriverGroupEvent | undefined {
  const member = record.m ?? '';
  switch (record.t) {
    case 'j':
      return { type: 'join', member, capabilities: JSON.parse(record.c ?? '{}') as Capabilities };
    case 'u':
      return { type: 'update', member, capabilities: JSON.parse(record.c ?? '{}') as Capabilities };
    case 'l':
      return { type: 'leave', member };
    default:
      return undefined;
  }
}
