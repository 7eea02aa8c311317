/**
 * A group watch: reads the group's change log from a snapshot's position on, in order. A one-shot children watch
 * on the group node says when to read again; missed notifications cost nothing, since the log keeps every entry
 * until it is trimmed. Expired members (removed by ZooKeeper, without a log entry) are reported as leaves once a
 * listing shows their node gone. The position is independent of the connection, so a reconnect or a new session
 * only means reading on from where it was.
 */
import { debug } from '../../src/debug.js';
import type { DriverGroupEvent, WatchSink } from '../../src/driver.js';
import { parseCapabilities } from '../../src/kit/index.js';
import { isCode, type Connection } from './connection.js';
import { entryName, readListing, type LogEntry } from './groups.js';
import { CODES } from './protocol.js';

export interface LogWatchOptions {
  readonly path: string;
  readonly group: string;
  /** The revision of the snapshot the watch follows. */
  readonly revision: string;
  /** The snapshot's members, if known. */
  readonly members: ReadonlySet<string> | undefined;
  readonly sink: WatchSink;
  /** The connection to read with now (undefined while there is none). */
  readonly connection: () => Connection | undefined;
}

export class LogWatch {
  readonly #options: LogWatchOptions;
  /** The group node's czxid; undefined while the group does not exist. */
  #incarnation: bigint | undefined;
  #position: number;
  #present: Set<string> | undefined;
  #stopped = false;
  #reading = false;
  #again = false;

  constructor(options: LogWatchOptions) {
    this.#options = options;
    const [incarnation = 'absent', position = '-1'] = options.revision.split(':');
    this.#incarnation = incarnation === 'absent' ? undefined : BigInt(incarnation);
    this.#position = Number(position);
    this.#present = options.members ? new Set(options.members) : undefined;
  }

  stop(): void {
    this.#stopped = true;
  }

  /** Reads what is new (coalesced: a call during a read runs one more read after it). */
  readonly read = (): void => {
    if (this.#stopped) return;
    if (this.#reading) {
      this.#again = true;
      return;
    }
    this.#reading = true;
    void this.#loop().finally(() => {
      this.#reading = false;
    });
  };

  async #loop(): Promise<void> {
    do {
      this.#again = false;
      try {
        await this.#step();
      } catch (error) {
        // The link dropped: its return ('connected') reads again. Anything else: start over from a snapshot.
        if (this.#stopped) return;
        debug('zookeeper: reading the log of group "%s" failed: %s', this.#options.group, (error as Error).message);
        if (!(error instanceof Error && 'code' in error && (error.code === 'ERR_CONNECTION' || error.code === 'ERR_SESSION_LOST'))) {
          this.#resync();
        }
        return;
      }
    } while (this.#again && !this.#stopped);
  }

  #resync(): void {
    if (this.#stopped) return;
    this.#stopped = true;
    this.#options.sink.resync();
  }

  #emit(event: DriverGroupEvent): void {
    if (!this.#stopped) this.#options.sink.event(event);
  }

  async #step(): Promise<void> {
    const connection = this.#options.connection();
    if (!connection?.connected) return;
    const { path } = this.#options;
    let listed: { children: string[]; stat: { czxid: Buffer; cversion: number } };
    try {
      listed = await connection.getChildren(path, this.read);
    } catch (error) {
      if (!isCode(error, CODES.NO_NODE)) throw error;
      // Deleted (it was empty, bar expiring members) or not created yet: start over once it exists.
      if (this.#incarnation !== undefined) {
        this.#resync();
        return;
      }
      if (await connection.exists(path, this.read)) this.#again = true;
      return;
    }
    if (this.#stopped) return;
    const listing = readListing(listed.children, listed.stat.czxid, listed.stat.cversion);
    if (this.#incarnation === undefined) {
      // Created after a snapshot that found no group: everything in its log is new.
      this.#incarnation = listing.incarnation;
      this.#position = -1;
      this.#present = new Set();
    } else if (listing.incarnation !== this.#incarnation || listing.trimmed > this.#position) {
      // Another group of the same name, or entries we have not read were trimmed.
      this.#resync();
      return;
    }
    const fresh = listing.entries.filter((s) => s > this.#position);
    const reads = await Promise.all(
      fresh.map((s) =>
        connection.getData(`${path}/${entryName(s)}`).then(
          ({ data }) => data,
          (error: unknown) => {
            if (isCode(error, CODES.NO_NODE)) return undefined;
            throw error;
          },
        ),
      ),
    );
    if (this.#stopped) return;
    for (const [i, data] of reads.entries()) {
      if (data === undefined) {
        this.#resync(); // trimmed while we read
        return;
      }
      this.#apply(parseEntry(data));
      this.#position = fresh[i] ?? this.#position;
    }
    const present = this.#present;
    if (present) {
      for (const member of [...present]) {
        if (listing.members.has(member)) continue;
        // Gone without a log entry: its session expired.
        present.delete(member);
        this.#emit({ type: 'leave', member });
      }
      for (const member of listing.members) present.add(member);
    } else {
      this.#present = new Set(listing.members);
    }
  }

  #apply(entry: LogEntry | undefined): void {
    if (!entry) return;
    const present = this.#present;
    const { member } = entry;
    switch (entry.type) {
      case 'join':
        // A logged join means the member's node did not exist just before: an earlier one expired unlogged.
        if (present?.has(member) !== false) this.#emit({ type: 'leave', member });
        present?.add(member);
        this.#emit({ type: 'join', member, capabilities: entry.capabilities ?? {} });
        break;
      case 'update':
        present?.add(member);
        this.#emit({ type: 'update', member, capabilities: entry.capabilities ?? {} });
        break;
      case 'leave':
        present?.delete(member);
        this.#emit({ type: 'leave', member });
        break;
    }
  }
}

function parseEntry(data: Buffer): LogEntry | undefined {
  try {
    const value = JSON.parse(data.toString()) as Partial<LogEntry>;
    if (typeof value.member !== 'string') return undefined;
    if (value.type !== 'join' && value.type !== 'update' && value.type !== 'leave') return undefined;
    return { type: value.type, member: value.member, capabilities: parseCapabilities(JSON.stringify(value.capabilities ?? {})) };
  } catch {
    return undefined;
  }
}
