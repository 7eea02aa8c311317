/**
 * Groups: a persistent node per group, an ephemeral node per member, and a change log of persistent sequential
 * nodes beside them. Every join, update and leave is one multi that changes the member node and appends its log
 * entry, so the log holds every change in the order ZooKeeper applied it, with the capabilities it carried: what
 * one-shot watches cannot give (they coalesce), and what the client's protocol lacks persistent watches for.
 *
 * A member whose session expires is removed by ZooKeeper without a log entry: readers see its node gone from a
 * listing (which returns members and log entries at one point of the history) and report the leave themselves.
 */
import { groupExists, groupNotEmpty, groupNotFound, memberExists, memberNotJoined, parseCapabilities } from '../../src/kit/index.js';
import { compareIds } from '../../src/kit/ids.js';
import { debug } from '../../src/debug.js';
import type { GroupSnapshot } from '../../src/driver.js';
import type { Capabilities, Member } from '../../src/types.js';
import { isCode, ZkError, type Connection } from './connection.js';
import { ENTRY, MEMBER, Paths, TRIMMED, decodeName, sequenceOf } from './paths.js';
import { CODES, MODES, long, type TransactionOp } from './protocol.js';

/** A log entry as stored. */
export interface LogEntry {
  readonly type: 'join' | 'update' | 'leave';
  readonly member: string;
  readonly capabilities?: Capabilities;
}

/** Log entries kept after a trim: a watcher this far behind resynchronises instead. */
const KEEP_ENTRIES = 256;
/** A writer trims when its entry's sequence number falls in the first few of every TRIM_EVERY. */
const TRIM_EVERY = 512;

function json(value: unknown): Buffer {
  return Buffer.from(JSON.stringify(value));
}

/** Creates `path` (empty, as `mode`: persistent by default) and any missing ancestor (persistent); an existing node is fine. */
export async function ensure(connection: Connection, path: string, mode: number = MODES.PERSISTENT): Promise<void> {
  try {
    await connection.create(path, Buffer.alloc(0), mode);
  } catch (error) {
    if (isCode(error, CODES.NODE_EXISTS)) return;
    if (!isCode(error, CODES.NO_NODE)) throw error;
    for (const ancestor of Paths.ancestors(path)) {
      try {
        await connection.create(ancestor, Buffer.alloc(0), MODES.PERSISTENT);
      } catch (inner) {
        if (!isCode(inner, CODES.NODE_EXISTS)) throw inner;
      }
    }
    await ensure(connection, path, mode);
  }
}

/** The members, log entries and trim mark of a group listing. */
export interface Listing {
  readonly members: Set<string>;
  /** Sequence numbers of the log entries, ascending. */
  readonly entries: number[];
  /** The highest trimmed sequence number, -1 when nothing was trimmed. */
  readonly trimmed: number;
  /** The highest sequence number the listing reflects (its log position). */
  readonly position: number;
  /** The group node's czxid: a group deleted and created again is another group. */
  readonly incarnation: bigint;
  readonly cversion: number;
}

export function readListing(children: readonly string[], czxid: Buffer, cversion: number): Listing {
  const members = new Set<string>();
  const entries: number[] = [];
  let trimmed = -1;
  for (const child of children) {
    if (child.startsWith(MEMBER)) members.add(decodeName(child.slice(MEMBER.length)));
    else if (child.startsWith(ENTRY)) entries.push(sequenceOf(child));
    else if (child.startsWith(TRIMMED)) trimmed = Math.max(trimmed, sequenceOf(child));
  }
  entries.sort((a, b) => a - b);
  return { members, entries, trimmed, position: Math.max(trimmed, entries.at(-1) ?? -1), incarnation: long(czxid), cversion };
}

export function entryName(sequence: number): string {
  return `${ENTRY}${String(sequence).padStart(10, '0')}`;
}

export class GroupStore {
  readonly #paths: Paths;
  /** Snapshots' member lists by revision, for the watch that follows (see watch.ts). */
  readonly #snapshots = new Map<string, ReadonlySet<string>>();
  #revisions = 0;

  constructor(paths: Paths) {
    this.#paths = paths;
  }

  async create(connection: Connection, group: string): Promise<void> {
    try {
      await connection.create(this.#paths.group(group), Buffer.alloc(0), MODES.PERSISTENT);
    } catch (error) {
      if (isCode(error, CODES.NODE_EXISTS)) throw groupExists(group);
      if (!isCode(error, CODES.NO_NODE)) throw error;
      await ensure(connection, this.#paths.groups);
      await this.create(connection, group);
    }
  }

  async delete(connection: Connection, group: string): Promise<void> {
    const path = this.#paths.group(group);
    for (;;) {
      let children: string[];
      try {
        ({ children } = await connection.getChildren(path));
      } catch (error) {
        if (isCode(error, CODES.NO_NODE)) throw groupNotFound(group);
        throw error;
      }
      if (children.some((c) => c.startsWith(MEMBER))) throw groupNotEmpty(group);
      const ops: TransactionOp[] = children.map((c) => ({ type: DELETE, path: `${path}/${c}`, version: -1 }));
      ops.push({ type: DELETE, path, version: -1 });
      try {
        await connection.multi(ops);
        return;
      } catch (error) {
        // A member joined or a log entry was written meanwhile: look again.
        if (isCode(error, CODES.NOT_EMPTY) || isCode(error, CODES.NO_NODE)) continue;
        throw error;
      }
    }
  }

  async list(connection: Connection): Promise<string[]> {
    try {
      const { children } = await connection.getChildren(this.#paths.groups);
      return children.map(decodeName);
    } catch (error) {
      if (isCode(error, CODES.NO_NODE)) return [];
      throw error;
    }
  }

  #append(group: string, entry: LogEntry): TransactionOp {
    return { type: CREATE, path: this.#paths.entry(group), data: json(entry), mode: MODES.PERSISTENT_SEQUENTIAL };
  }

  /** `pastSessions`: this driver's earlier sessions, whose memberships a re-join replaces. */
  async join(
    connection: Connection,
    group: string,
    member: string,
    capabilities: Capabilities,
    create: boolean,
    pastSessions: ReadonlySet<string>,
  ): Promise<void> {
    const path = this.#paths.member(group, member);
    const joinOps: TransactionOp[] = [
      { type: CREATE, path, data: json(capabilities), mode: MODES.EPHEMERAL },
      this.#append(group, { type: 'join', member, capabilities }),
    ];
    for (let attempt = 0; ; attempt++) {
      try {
        const results = await connection.multi(joinOps);
        this.#maybeTrim(connection, group, results[1]?.path);
        return;
      } catch (error) {
        if (attempt > 5 || !(error instanceof ZkError)) throw error;
        if (error.code === CODES.NO_NODE) {
          if (!create) throw groupNotFound(group);
          await this.create(connection, group).catch((e: unknown) => {
            if (!(e instanceof Error && 'code' in e && e.code === 'ERR_GROUP_EXISTS')) throw e;
          });
          continue;
        }
        if (error.code !== CODES.NODE_EXISTS) throw error;
        const stat = await connection.exists(path);
        if (!stat) continue;
        const owner = long(stat.ephemeralOwner).toString(16).padStart(16, '0');
        if (!pastSessions.has(owner)) throw memberExists(group, member);
        // Our own membership from a session given up on (lost while the server kept it): replace it.
        debug('zookeeper: replacing member "%s" of group "%s" left by session %s', member, group, owner);
        try {
          await connection.multi([
            { type: DELETE, path, version: stat.version },
            this.#append(group, { type: 'leave', member }),
            ...joinOps,
          ]);
          return;
        } catch (inner) {
          if (!(inner instanceof ZkError) || (inner.code !== CODES.NO_NODE && inner.code !== CODES.BAD_VERSION)) throw inner;
        }
      }
    }
  }

  async leave(connection: Connection, group: string, member: string): Promise<void> {
    try {
      const results = await connection.multi([
        { type: DELETE, path: this.#paths.member(group, member), version: -1 },
        this.#append(group, { type: 'leave', member }),
      ]);
      this.#maybeTrim(connection, group, results[1]?.path);
    } catch (error) {
      if (isCode(error, CODES.NO_NODE)) throw await this.#missing(connection, group, member);
      throw error;
    }
  }

  async update(connection: Connection, group: string, member: string, capabilities: Capabilities): Promise<void> {
    try {
      const results = await connection.multi([
        { type: SET_DATA, path: this.#paths.member(group, member), data: json(capabilities), version: -1 },
        this.#append(group, { type: 'update', member, capabilities }),
      ]);
      this.#maybeTrim(connection, group, results[1]?.path);
    } catch (error) {
      if (isCode(error, CODES.NO_NODE)) throw await this.#missing(connection, group, member);
      throw error;
    }
  }

  async #missing(connection: Connection, group: string, member: string): Promise<Error> {
    return (await connection.exists(this.#paths.group(group))) ? memberNotJoined(group, member) : groupNotFound(group);
  }

  /**
   * The members and the log position they reflect. A listing gives members and log entries at one point of the
   * history; the capabilities are read after it, so the listing is taken again until no change came in between
   * (every change appends a log entry, so an unchanged cversion proves it).
   */
  async snapshot(connection: Connection, group: string): Promise<GroupSnapshot> {
    const path = this.#paths.group(group);
    for (let attempt = 0; ; attempt++) {
      let listing: Listing;
      try {
        const { children, stat } = await connection.getChildren(path);
        listing = readListing(children, stat.czxid, stat.cversion);
      } catch (error) {
        if (isCode(error, CODES.NO_NODE)) return { exists: false, members: [], revision: this.#remember('absent:-1', new Set()) };
        throw error;
      }
      const ids = [...listing.members].sort(compareIds);
      const reads = ids.map((id) =>
        connection.getData(this.#paths.member(group, id)).then(
          ({ data }) => ({ id, capabilities: parseCapabilities(data.toString()) }),
          (error: unknown) => {
            if (isCode(error, CODES.NO_NODE)) return undefined;
            throw error;
          },
        ),
      );
      // Awaited together: a read that fails (the link dropped) must not leave the check's rejection unhandled.
      const [members, after] = await Promise.all([Promise.all(reads), connection.exists(path)]);
      const settled = after?.cversion === listing.cversion && long(after.czxid) === listing.incarnation;
      if (settled || attempt >= 20) {
        if (!settled) debug('zookeeper: group "%s" changed under every snapshot; taking the last', group);
        const present = members.filter((m): m is Member => m !== undefined);
        return {
          exists: true,
          members: present,
          revision: this.#remember(`${listing.incarnation}:${listing.position}`, new Set(present.map((m) => m.id))),
        };
      }
    }
  }

  #remember(position: string, members: ReadonlySet<string>): string {
    const revision = `${position}:${++this.#revisions}`;
    this.#snapshots.set(revision, members);
    // Bounded: each snapshot is claimed by the watch that follows it, if any.
    if (this.#snapshots.size > 256) this.#snapshots.delete(this.#snapshots.keys().next().value as string);
    return revision;
  }

  /** The members of the snapshot taken at `revision`, if this driver took it. */
  claim(revision: string): ReadonlySet<string> | undefined {
    const members = this.#snapshots.get(revision);
    this.#snapshots.delete(revision);
    return members;
  }

  /**
   * Trims old log entries now and then (a writer whose entry's number lands in a window of every TRIM_EVERY), so
   * the log stays short. In the background; a failure only means someone else trimmed first.
   */
  #maybeTrim(connection: Connection, group: string, entryPath: string | undefined): void {
    if (entryPath === undefined || sequenceOf(entryPath) % TRIM_EVERY >= 3) return;
    void this.trim(connection, group).catch((error: unknown) => {
      debug('zookeeper: trimming the log of group "%s" failed: %s', group, (error as Error).message);
    });
  }

  async trim(connection: Connection, group: string): Promise<void> {
    const path = this.#paths.group(group);
    const { children } = await connection.getChildren(path);
    const listing = readListing(children, Buffer.alloc(8), 0);
    const old = listing.entries.slice(0, Math.max(0, listing.entries.length - KEEP_ENTRIES));
    const last = old.at(-1);
    if (last === undefined) return;
    const ops: TransactionOp[] = old.map((s) => ({ type: DELETE, path: `${path}/${entryName(s)}`, version: -1 }));
    ops.push({ type: CREATE, path: `${path}/${TRIMMED}${String(last).padStart(10, '0')}`, mode: MODES.PERSISTENT });
    for (const child of children) if (child.startsWith(TRIMMED)) ops.push({ type: DELETE, path: `${path}/${child}`, version: -1 });
    await connection.multi(ops);
  }
}

const CREATE = 1;
const DELETE = 2;
const SET_DATA = 5;
