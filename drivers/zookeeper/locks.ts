/**
 * Locks and leadership: Curator's recipe. Each contender is an ephemeral sequential node named after its session;
 * the lowest holds; a waiter watches only its predecessor (no herd). The token is the holding node's czxid, read
 * from the create reply's header, so the uncontended path is one round trip (the create and the listing are sent
 * back to back and the server answers both in order) plus the delete on release.
 */
import { Wakeup } from '../../src/kit/index.js';
import { abortedError } from '../../src/errors.js';
import { debug } from '../../src/debug.js';
import type { DriverEvents, LockHolder, LockKind, LockListing } from '../../src/driver.js';
import { isCode, ZkError, type Connection } from './connection.js';
import { ensure } from './groups.js';
import { Paths, decodeName, sequenceOf } from './paths.js';
import { CODES, MODES, long } from './protocol.js';

interface Contender {
  readonly connection: Connection;
  readonly kind: LockKind;
  readonly name: string;
  readonly path: string;
  readonly token: bigint;
}

const CONTENDER = /^[0-9a-f]{16}-\d+$/;

/** Contender node names, lowest sequence first. */
function contenders(children: readonly string[]): string[] {
  return children.filter((c) => CONTENDER.test(c)).sort((a, b) => sequenceOf(a) - sequenceOf(b));
}

function keyOf(kind: LockKind, name: string, session: string): string {
  return `${kind}\u0000${name}\u0000${session}`;
}

function basename(path: string): string {
  return path.slice(path.lastIndexOf('/') + 1);
}

export class LockStore {
  readonly #paths: Paths;
  readonly #events: DriverEvents;
  /** Held locks by kind, name and session. */
  readonly #held = new Map<string, Contender>();
  /** Nodes a tryLock left in line: the acquireLock that follows keeps their place, or cancelLock removes them. */
  readonly #waiting = new Map<string, Contender>();
  /** Locks whose create got no answer: a node may exist that we do not know the name of. */
  readonly #uncertain = new Set<string>();

  constructor(paths: Paths, events: DriverEvents) {
    this.#paths = paths;
    this.#events = events;
  }

  /** Creates this session's contender node and lists the contenders, in one round trip. */
  async #enter(
    connection: Connection,
    kind: LockKind,
    name: string,
    member: string,
  ): Promise<{ contender: Contender; children: string[] }> {
    const parent = this.#paths.lock(kind, name);
    for (;;) {
      const creating = connection.create(`${parent}/${connection.id}-`, Buffer.from(member), MODES.EPHEMERAL_SEQUENTIAL);
      const listing = connection.getChildren(parent);
      listing.catch(() => undefined);
      let created: { path: string; czxid: bigint };
      try {
        created = await creating;
      } catch (error) {
        if (!(error instanceof ZkError)) this.#uncertain.add(keyOf(kind, name, connection.id));
        if (!isCode(error, CODES.NO_NODE)) throw error;
        await ensure(connection, parent);
        continue;
      }
      const contender = { connection, kind, name, path: created.path, token: created.czxid };
      try {
        return { contender, children: (await listing).children };
      } catch (error) {
        this.#waiting.set(keyOf(kind, name, connection.id), contender);
        throw error;
      }
    }
  }

  async tryLock(connection: Connection, kind: LockKind, name: string, member: string): Promise<bigint | undefined> {
    const { contender, children } = await this.#enter(connection, kind, name, member);
    if (contenders(children)[0] === basename(contender.path)) {
      this.#hold(contender);
      return contender.token;
    }
    this.#waiting.set(keyOf(kind, name, connection.id), contender);
    return undefined;
  }

  async acquireLock(
    connection: Connection,
    kind: LockKind,
    name: string,
    member: string,
    signal: AbortSignal,
    queued: () => void,
  ): Promise<bigint> {
    if (signal.aborted) {
      await this.cancelLock(connection, kind, name).catch(() => undefined);
      throw abortedError(signal);
    }
    const key = keyOf(kind, name, connection.id);
    const parent = this.#paths.lock(kind, name);
    const wakeup = new Wakeup();
    const wake = (): void => {
      wakeup.wake();
    };
    // Out of line at once, not after the request in flight: the next waiter must not find us ahead of it.
    let leaving: Promise<void> | undefined;
    const onAbort = (): void => {
      leaving = this.cancelLock(connection, kind, name).catch(() => undefined);
    };
    connection.on('connected', wake);
    connection.on('expired', wake);
    connection.on('closed', wake);
    signal.addEventListener('abort', onAbort, { once: true });
    try {
      let contender = this.#waiting.get(key);
      let children: string[] | undefined;
      if (!contender) ({ contender, children } = await this.#enter(connection, kind, name, member));
      this.#waiting.set(key, contender);
      queued();
      for (;;) {
        signal.throwIfAborted();
        children ??= (await connection.getChildren(parent)).children;
        const line = contenders(children);
        children = undefined;
        const position = line.indexOf(basename(contender.path));
        if (position < 0) {
          // Deleted by someone else while the session lives on: join the line again.
          debug('zookeeper: contender %s for %s "%s" vanished; entering again', contender.path, kind, name);
          ({ contender, children } = await this.#enter(connection, kind, name, member));
          this.#waiting.set(key, contender);
          continue;
        }
        if (position === 0) {
          signal.throwIfAborted();
          this.#waiting.delete(key);
          this.#hold(contender);
          return contender.token;
        }
        const predecessor = `${parent}/${line[position - 1] ?? ''}`;
        if (!(await connection.exists(predecessor, wake))) continue;
        // The watch says when the predecessor goes; the timed re-check only covers a notification lost in a reconnect.
        await wakeup.wait(Math.max(connection.timeoutMs / 3, 500), signal);
      }
    } catch (error) {
      if (signal.aborted) {
        await leaving;
        // A node entered after the first clean-up listed the line.
        if (this.#waiting.has(key) || this.#held.has(key)) await this.cancelLock(connection, kind, name).catch(() => undefined);
        throw abortedError(signal);
      }
      throw error;
    } finally {
      signal.removeEventListener('abort', onAbort);
      connection.off('connected', wake);
      connection.off('expired', wake);
      connection.off('closed', wake);
    }
  }

  /** Watches the held node: gone while we hold it (deleted from outside) means lockLost. */
  #hold(contender: Contender): void {
    const key = keyOf(contender.kind, contender.name, contender.connection.id);
    this.#held.set(key, contender);
    const check = (): void => {
      if (this.#held.get(key) !== contender || contender.connection.closed) return;
      contender.connection.exists(contender.path, check).then(
        (stat) => {
          if (stat || this.#held.get(key) !== contender) return;
          this.#held.delete(key);
          debug('zookeeper: held node %s is gone', contender.path);
          this.#events.lockLost(contender.kind, contender.name, contender.token);
        },
        () => undefined, // the link is down: the watch is set again when it comes back, or the session ends
      );
    };
    check();
  }

  async unlock(connection: Connection | undefined, kind: LockKind, name: string, session: string, token: bigint): Promise<void> {
    const key = keyOf(kind, name, session);
    const held = this.#held.get(key);
    if (held?.token !== token) return;
    this.#held.delete(key);
    if (!connection || connection.closed) return; // the node ends with its session
    try {
      await connection.delete(held.path);
    } catch (error) {
      if (isCode(error, CODES.NO_NODE) || isCode(error, CODES.SESSION_EXPIRED)) return;
      this.#held.set(key, held);
      throw error;
    }
  }

  async cancelLock(connection: Connection | undefined, kind: LockKind, name: string): Promise<void> {
    if (!connection || connection.closed) return;
    const key = keyOf(kind, name, connection.id);
    const known = this.#waiting.get(key) ?? this.#held.get(key);
    this.#waiting.delete(key);
    this.#held.delete(key);
    if (known && !this.#uncertain.has(key)) {
      // One delete: the next waiter must not find us still in line a round trip later than needed.
      await connection.delete(known.path).catch((error: unknown) => {
        if (!isCode(error, CODES.NO_NODE)) throw error;
      });
      return;
    }
    const parent = this.#paths.lock(kind, name);
    let children: string[];
    try {
      ({ children } = await connection.getChildren(parent));
    } catch (error) {
      if (isCode(error, CODES.NO_NODE)) {
        this.#uncertain.delete(key);
        return;
      }
      throw error;
    }
    const own = children.filter((c) => c.startsWith(`${connection.id}-`));
    await Promise.all(
      own.map((c) =>
        connection.delete(`${parent}/${c}`).catch((error: unknown) => {
          if (!isCode(error, CODES.NO_NODE)) throw error;
        }),
      ),
    );
    this.#uncertain.delete(key);
  }

  async holder(connection: Connection, kind: LockKind, name: string): Promise<LockHolder | undefined> {
    const parent = this.#paths.lock(kind, name);
    for (;;) {
      let children: string[];
      try {
        ({ children } = await connection.getChildren(parent));
      } catch (error) {
        if (isCode(error, CODES.NO_NODE)) return undefined;
        throw error;
      }
      const first = contenders(children)[0];
      if (first === undefined) return undefined;
      try {
        const { data, stat } = await connection.getData(`${parent}/${first}`);
        return { member: data.toString(), token: long(stat.czxid) };
      } catch (error) {
        if (!isCode(error, CODES.NO_NODE)) throw error;
      }
    }
  }

  /** Every lock of `kinds` whose name starts with `prefix` that is held or waited for. */
  async list(connection: Connection, kinds: readonly LockKind[], prefix: string): Promise<LockListing[]> {
    const listings = await Promise.all(
      kinds.map(async (kind) => {
        let names: string[];
        try {
          ({ children: names } = await connection.getChildren(this.#paths.kind(kind)));
        } catch (error) {
          if (isCode(error, CODES.NO_NODE)) return [];
          throw error;
        }
        const wanted = names.map(decodeName).filter((name) => name.startsWith(prefix));
        const found = await Promise.all(wanted.map((name) => this.#listing(connection, kind, name)));
        return found.filter((l): l is LockListing => l !== undefined);
      }),
    );
    return listings.flat();
  }

  async #listing(connection: Connection, kind: LockKind, name: string): Promise<LockListing | undefined> {
    const parent = this.#paths.lock(kind, name);
    for (;;) {
      let line: string[];
      try {
        line = contenders((await connection.getChildren(parent)).children);
      } catch (error) {
        if (isCode(error, CODES.NO_NODE)) return undefined;
        throw error;
      }
      const first = line[0];
      if (first === undefined) return undefined;
      try {
        const { data, stat } = await connection.getData(`${parent}/${first}`);
        return { kind, name, holders: [{ member: data.toString(), token: long(stat.czxid) }], waiting: line.length - 1 };
      } catch (error) {
        if (!isCode(error, CODES.NO_NODE)) throw error; // released meanwhile: look again
      }
    }
  }

  /** Arms a watch on the lock's contenders (or on its creation); `fire` when they change. */
  async watch(connection: Connection, kind: LockKind, name: string, fire: () => void): Promise<void> {
    const parent = this.#paths.lock(kind, name);
    try {
      await connection.getChildren(parent, fire);
    } catch (error) {
      if (!isCode(error, CODES.NO_NODE)) throw error;
      if (await connection.exists(parent, fire)) await connection.getChildren(parent, fire);
    }
  }

  /** Every lock of a session that ended: forgotten (ZooKeeper removed the nodes with the session). */
  forget(session: string): void {
    for (const [key, contender] of this.#held) if (contender.connection.id === session) this.#held.delete(key);
    for (const [key, contender] of this.#waiting) if (contender.connection.id === session) this.#waiting.delete(key);
    for (const key of this.#uncertain) if (key.endsWith(`\u0000${session}`)) this.#uncertain.delete(key);
  }
}
