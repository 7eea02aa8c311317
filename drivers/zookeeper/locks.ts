/**
 * Locks, semaphores and leadership: Curator's recipes. Each request is an ephemeral sequential node named after its
 * session and mode (line.ts); the line in sequence order decides who holds (holdsAt), and a waiter watches only the
 * one node whose change may let it hold (no herd). The uncontended path is one round trip (the create and the listing
 * are sent back to back and the server answers both in order) plus the delete on release.
 *
 * A session that used a lock alone skips the listing the next time (see Chain): a sequential node's number is the
 * count of children ever created under its parent, so when the new node's number is the one the session expected,
 * nobody entered the line since the session's last request, which was alone and is deleted: the new node is alone too.
 *
 * Tokens. An exclusive request's token is its node's czxid, read from the create reply's header: the requests ahead
 * of it, all gone before it holds, were created earlier. Shared holds granted together see their grant in any order,
 * so a shared request that did not hold from its creation on, first in line, takes its token when it sees its grant:
 * it writes its node (and the lock's node, the mark that such a token was handed out), and its token is that write's
 * zxid, greater than every token released before. Shared requests granted together write in line order (each waits
 * for the write of the one just ahead that it saw waiting), so their tokens follow the line. An exclusive request
 * whose grant listing shows a mark newer than its creation writes too. A node's mzxid is its token either way, which
 * is what listings read; an uncontended request of any mode writes nothing.
 */
import { Wakeup, limitMismatch } from '../../src/kit/index.js';
import { abortedError } from '../../src/errors.js';
import { debug } from '../../src/debug.js';
import {
  EXCLUSIVE,
  type DriverEvents,
  type LockHolder,
  type LockKind,
  type LockListing,
  type LockMode,
  type LockWaiter,
} from '../../src/driver.js';
import { isCode, ZkError, type Connection } from './connection.js';
import { ensure } from './groups.js';
import { agreeing, holdersOf, lineOf, parseRequest, prefixOf, standingOf, type Request } from './line.js';
import { Paths, decodeName } from './paths.js';
import { CODES, MODES, long, type Stat } from './protocol.js';

/** The op code of setData, sent in a multi: the grant write (see #grant). */
const SET_DATA = 5;

interface Contender {
  readonly connection: Connection;
  readonly kind: LockKind;
  readonly name: string;
  readonly mode: LockMode;
  readonly member: string;
  readonly path: string;
  /** The node's czxid until a grant write gives it a later one. */
  token: bigint;
  /**
   * The listing that entered it left a watch on the line that has not fired yet: any change of the line, this node's
   * deletion included, fires it, so a held node needs no watch of its own until then.
   */
  lineWatched: boolean;
  /** A listing (or the sequence number) showed this node alone in its line: its release may start a chain. */
  alone: boolean;
  /** Entered with no listing (see Chain): no line watch covers it, and its own watch waits for HELD_WATCH_DELAY_MS. */
  quick: boolean;
  /** The timer that sets its own watch. */
  deferred?: NodeJS.Timeout;
}

/**
 * What a session knows of a lock's line between its own requests. ZooKeeper numbers a sequential node with its
 * parent's count of child creations (deletions do not count), so after the session's node numbered `s` was alone and
 * was deleted, its next node is numbered s + 1 exactly when no other node was created meanwhile, and is then alone.
 * That holds within one incarnation of the lock node (a container, removed once empty and made anew by the next
 * request, numbering from 0 again): a data watch on it, set while the session's node still kept it alive, says it was
 * not removed, since ZooKeeper delivers a watch's event before the reply to any later request of the same session. The
 * watch also fires on a grant write to the lock node, which only contention makes.
 */
interface Chain {
  /** The number the session's next node gets if nobody else entered the line; undefined while unknown. */
  next: number | undefined;
  /** The lock node's data watch is set and has not fired, on this link of the connection. */
  live: boolean;
  readonly link: number;
}

/**
 * How long a hold entered with no listing goes before its node gets a watch of its own (a request): a short hold is
 * released before then and costs nothing more than the floor's create and delete; a deletion from outside is told
 * this much later at most.
 */
const HELD_WATCH_DELAY_MS = 10;

/** Chains kept at most (a few per lock a session uses; the oldest go first). */
const CHAINS = 1024;

/** A listing of the line and what it says about grant writes. */
interface Listing {
  readonly children: string[];
  /** The zxid of the last grant write to this lock (the lock node's mzxid). */
  readonly marked: bigint;
  /**
   * Nothing in the line changed between the create of the node and this listing (it was the first after it), and
   * nothing was ahead of it: it held from its creation on, before any other request granted later could be.
   */
  readonly exact: boolean;
}

/** One request of a session: kind, name and slot (slot 0 keeps the key it had before there were slots). */
function keyOf(kind: LockKind, name: string, session: string, slot = 0): string {
  const key = `${kind}\u0000${name}\u0000${session}`;
  return slot === 0 ? key : `${key}\u0000${String(slot)}`;
}

function basename(path: string): string {
  return path.slice(path.lastIndexOf('/') + 1);
}

function holderOf(request: Request, member: string, token: bigint): LockHolder {
  return request.shared ? { member, token, shared: true } : { member, token };
}

export class LockStore {
  readonly #paths: Paths;
  readonly #events: DriverEvents;
  /** Held locks by kind, name, session and slot. */
  readonly #held = new Map<string, Contender>();
  /** Nodes a tryLock left in line: the acquireLock that follows keeps their place, or cancelLock removes them. */
  readonly #waiting = new Map<string, Contender>();
  /** Requests whose create got no answer, with their session: a node may exist that we do not know the name of. */
  readonly #uncertain = new Map<string, string>();
  /** By session and lock node: see Chain. */
  readonly #chains = new Map<string, Chain>();

  constructor(paths: Paths, events: DriverEvents) {
    this.#paths = paths;
    this.#events = events;
  }

  /**
   * Creates this session's request node and lists the line, in one round trip; with no listing at all when the
   * node's sequence number shows it alone (see Chain).
   */
  async #enter(
    connection: Connection,
    kind: LockKind,
    name: string,
    member: string,
    mode: LockMode,
  ): Promise<{ contender: Contender; listing: Listing }> {
    const parent = this.#paths.lock(kind, name);
    const key = keyOf(kind, name, connection.id, mode.slot);
    for (;;) {
      const chain = this.#chain(connection, parent);
      const expected = chain?.next;
      if (chain) chain.next = undefined; // the release of this request sets it again
      const creating = connection.create(`${parent}/${prefixOf(connection.id, mode)}`, Buffer.from(member), MODES.EPHEMERAL_SEQUENTIAL);
      // The listing watches the line: an uncontended hold then learns of its node's deletion with no request more.
      const line: { contender?: Contender; fired: boolean } = { fired: false };
      const list = (): Promise<{ children: string[]; stat: Stat }> => {
        const listing = connection.getChildren(parent, () => {
          line.fired = true;
          if (line.contender) this.#lineChanged(line.contender);
        });
        listing.catch(() => undefined);
        return listing;
      };
      let listing = expected === undefined ? list() : undefined;
      let created: { path: string; czxid: bigint };
      try {
        created = await creating;
      } catch (error) {
        if (!(error instanceof ZkError)) this.#uncertain.set(key, connection.id);
        if (!isCode(error, CODES.NO_NODE)) throw error;
        // A container: the server removes it once its line has emptied (and this create then finds it gone again).
        await ensure(connection, parent, MODES.CONTAINER);
        continue;
      }
      const node = basename(created.path);
      const contender: Contender = {
        connection,
        kind,
        name,
        mode,
        member,
        path: created.path,
        token: created.czxid,
        lineWatched: false,
        alone: false,
        quick: false,
      };
      line.contender = contender;
      // The chain's watch would have fired before this reply if the lock node had been removed or marked meanwhile.
      if (expected !== undefined && this.#chain(connection, parent) === chain && parseRequest(node)?.sequence === expected) {
        contender.alone = true;
        contender.quick = true;
        return { contender, listing: { children: [node], marked: 0n, exact: true } };
      }
      listing ??= list();
      try {
        const { children, stat } = await listing;
        contender.lineWatched = !line.fired;
        const exact = long(stat.pzxid) === created.czxid && lineOf(children)[0]?.node === node;
        return { contender, listing: { children, marked: long(stat.mzxid), exact } };
      } catch (error) {
        this.#waiting.set(key, contender);
        throw error;
      }
    }
  }

  /** The session's chain on a lock node, if it is still good: its watch set and unfired, on the current link. */
  #chain(connection: Connection, parent: string): Chain | undefined {
    const key = `${connection.id}\u0000${parent}`;
    const chain = this.#chains.get(key);
    if (chain && (!chain.live || chain.link !== connection.links || !connection.connected)) {
      this.#chains.delete(key);
      return undefined;
    }
    return chain;
  }

  /**
   * Starts a chain on a lock node: sets its data watch. Called while this session's node keeps the node alive, and
   * sent before that node's delete, so the watch is on the incarnation the node was in.
   */
  #startChain(connection: Connection, parent: string): Promise<Chain | undefined> {
    const key = `${connection.id}\u0000${parent}`;
    const chain: Chain = { next: undefined, live: true, link: connection.links };
    const watching = connection.exists(parent, () => {
      chain.live = false;
      if (this.#chains.get(key) === chain) this.#chains.delete(key);
    });
    return watching.then(
      (stat) => {
        if (!stat || !chain.live) return undefined;
        this.#chains.delete(key);
        this.#chains.set(key, chain);
        if (this.#chains.size > CHAINS) {
          const oldest = this.#chains.keys().next().value;
          if (oldest !== undefined) this.#chains.delete(oldest);
        }
        return chain;
      },
      () => undefined,
    );
  }

  /**
   * A request naming another limit than the first in line (the one its holders and waiters use) is refused, and its
   * node deleted before the refusal: nothing is left changed.
   */
  async #refuseMismatch(contender: Contender, children: readonly string[]): Promise<void> {
    const first = lineOf(children)[0];
    if (first === undefined || first.limit === contender.mode.limit) return;
    const { connection, kind, name, mode } = contender;
    const key = keyOf(kind, name, connection.id, mode.slot);
    this.#waiting.delete(key);
    try {
      await connection.delete(contender.path);
    } catch (error) {
      if (!isCode(error, CODES.NO_NODE)) {
        this.#waiting.set(key, contender); // cancelLock deletes it
        throw error;
      }
    }
    throw limitMismatch(name, mode.limit, first.limit);
  }

  async tryLock(
    connection: Connection,
    kind: LockKind,
    name: string,
    member: string,
    mode: LockMode = EXCLUSIVE,
  ): Promise<bigint | undefined> {
    const { contender, listing } = await this.#enter(connection, kind, name, member, mode);
    const key = keyOf(kind, name, connection.id, mode.slot);
    this.#waiting.set(key, contender);
    if (mode.limit > 0) await this.#refuseMismatch(contender, listing.children);
    const standing = standingOf(agreeing(lineOf(listing.children), mode.limit), basename(contender.path));
    if (standing.state !== 'holds') return undefined;
    if (!(await this.#grant(contender, listing))) return undefined; // deleted meanwhile: acquireLock enters again
    this.#waiting.delete(key);
    return contender.token;
  }

  async acquireLock(
    connection: Connection,
    kind: LockKind,
    name: string,
    member: string,
    signal: AbortSignal,
    queued: () => void,
    mode: LockMode = EXCLUSIVE,
  ): Promise<bigint> {
    if (signal.aborted) {
      await this.cancelLock(connection, kind, name, mode.slot).catch(() => undefined);
      throw abortedError(signal);
    }
    const key = keyOf(kind, name, connection.id, mode.slot);
    const parent = this.#paths.lock(kind, name);
    const wakeup = new Wakeup();
    const wake = (): void => {
      wakeup.wake();
    };
    // Out of line at once, not after the request in flight: the next waiter must not find us ahead of it.
    let leaving: Promise<void> | undefined;
    const onAbort = (): void => {
      leaving = this.cancelLock(connection, kind, name, mode.slot).catch(() => undefined);
    };
    connection.on('connected', wake);
    connection.on('expired', wake);
    connection.on('closed', wake);
    signal.addEventListener('abort', onAbort, { once: true });
    try {
      let contender = this.#waiting.get(key);
      let listing: Listing | undefined;
      if (!contender) {
        ({ contender, listing } = await this.#enter(connection, kind, name, member, mode));
        this.#waiting.set(key, contender);
        if (mode.limit > 0) await this.#refuseMismatch(contender, listing.children);
      }
      queued();
      // The first permit waiting watches the whole line: its listings carry the watch.
      let watchLine = false;
      // Shared requests seen waiting ahead of this one: granted with it, they take their tokens first.
      const waitedBehind = new Set<string>();
      for (;;) {
        signal.throwIfAborted();
        let armed = false;
        if (listing === undefined) {
          try {
            const { children, stat } = await connection.getChildren(parent, watchLine ? wake : undefined);
            listing = { children, marked: long(stat.mzxid), exact: false };
            armed = watchLine;
          } catch (error) {
            // The line emptied and its container was removed: our node is gone too, and we enter again.
            if (!isCode(error, CODES.NO_NODE)) throw error;
            listing = { children: [], marked: 0n, exact: false };
          }
        }
        const standing = standingOf(agreeing(lineOf(listing.children), mode.limit), basename(contender.path));
        if (standing.state === 'gone') {
          // Deleted by someone else while the session lives on: join the line again.
          debug('zookeeper: contender %s for %s "%s" vanished; entering again', contender.path, kind, name);
          ({ contender, listing } = await this.#enter(connection, kind, name, member, mode));
          this.#waiting.set(key, contender);
          if (mode.limit > 0) await this.#refuseMismatch(contender, listing.children);
          continue;
        }
        const granting = listing;
        listing = undefined;
        if (standing.state === 'holds') {
          const before = standing.predecessor;
          if (mode.shared && before?.shared && waitedBehind.has(before.node)) {
            // Tokens follow the line: the shared request just ahead, granted with this one, writes its grant first.
            const stat = await connection.exists(`${parent}/${before.node}`, wake);
            if (!stat) continue;
            if (stat.version === 0) {
              await wakeup.wait(Math.max(connection.timeoutMs / 3, 500), signal);
              continue;
            }
          }
          signal.throwIfAborted();
          if (!(await this.#grant(contender, granting))) continue; // deleted meanwhile: the next look enters again
          this.#waiting.delete(key);
          return contender.token;
        }
        for (const node of standing.waitingAhead) waitedBehind.add(node);
        watchLine = standing.watch === undefined;
        if (standing.watch === undefined) {
          if (!armed) continue; // list again, with the watch
        } else {
          const stat = await connection.exists(`${parent}/${standing.watch}`, wake);
          // Gone, or (a permit ahead) granted before the watch was set: look again now.
          if (!stat || (standing.grant && stat.version > 0)) continue;
        }
        // The watch says when to look again; the timed re-check only covers a notification lost in a reconnect.
        await wakeup.wait(Math.max(connection.timeoutMs / 3, 500), signal);
      }
    } catch (error) {
      if (signal.aborted) {
        await leaving;
        // A node entered after the first clean-up listed the line.
        if (this.#waiting.has(key) || this.#held.has(key)) await this.cancelLock(connection, kind, name, mode.slot).catch(() => undefined);
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

  /**
   * Holds the node, after its grant write when it needs one (see the top of this file): a shared request granted after
   * its creation, or an exclusive one whose grant listing shows a grant write newer than its creation. The write also
   * tells a permit watching this one for its grant (its version goes above 0). False when the node is gone.
   */
  async #grant(contender: Contender, listing: Listing): Promise<boolean> {
    const { connection, kind, name, mode, path } = contender;
    const write = mode.shared ? !listing.exact : listing.marked > contender.token;
    if (write) {
      try {
        const [result] = await connection.multi([
          { type: SET_DATA, path, data: Buffer.from(contender.member), version: -1 },
          { type: SET_DATA, path: this.#paths.lock(kind, name), data: Buffer.alloc(0), version: -1 },
        ]);
        // The client's multi result carries the stat of a setData.
        contender.token = long((result as { stat: Stat }).stat.mzxid);
      } catch (error) {
        if (isCode(error, CODES.NO_NODE)) return false;
        throw error;
      }
    }
    if (listing.children.length === 1 && listing.children[0] === basename(path)) contender.alone = true;
    this.#hold(contender);
    return true;
  }

  #hold(contender: Contender): void {
    this.#held.set(keyOf(contender.kind, contender.name, contender.connection.id, contender.mode.slot), contender);
    if (contender.lineWatched) return;
    if (!contender.quick) {
      this.#watchHeld(contender);
      return;
    }
    contender.deferred = setTimeout(() => {
      contender.deferred = undefined;
      this.#watchHeld(contender);
    }, HELD_WATCH_DELAY_MS);
    contender.deferred.unref();
  }

  /** Drops a held (or waiting) request's pending watch timer. */
  #settle(contender: Contender | undefined): void {
    if (contender?.deferred === undefined) return;
    clearTimeout(contender.deferred);
    contender.deferred = undefined;
  }

  /** The line changed since the listing that entered `contender`: a held node now needs a watch of its own. */
  #lineChanged(contender: Contender): void {
    contender.lineWatched = false;
    this.#settle(contender);
    if (this.#held.get(keyOf(contender.kind, contender.name, contender.connection.id, contender.mode.slot)) === contender) {
      this.#watchHeld(contender);
    }
  }

  /** Watches the held node: gone while we hold it (deleted from outside) means lockLost. */
  #watchHeld(contender: Contender): void {
    const key = keyOf(contender.kind, contender.name, contender.connection.id, contender.mode.slot);
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

  async unlock(connection: Connection | undefined, kind: LockKind, name: string, session: string, token: bigint, slot = 0): Promise<void> {
    const key = keyOf(kind, name, session, slot);
    const held = this.#held.get(key);
    if (held?.token !== token) return;
    this.#held.delete(key);
    this.#settle(held);
    if (!connection || connection.closed) return; // the node ends with its session
    // A node that was alone starts (or goes on with) a chain: its watch is sent ahead of the delete when not set.
    const parent = this.#paths.lock(kind, name);
    let chain: Chain | undefined | Promise<Chain | undefined>;
    if (held.alone) chain = this.#chain(connection, parent) ?? this.#startChain(connection, parent);
    try {
      await connection.delete(held.path);
    } catch (error) {
      if (isCode(error, CODES.NO_NODE) || isCode(error, CODES.SESSION_EXPIRED)) return;
      this.#held.set(key, held);
      throw error;
    }
    const kept = await chain;
    const sequence = parseRequest(basename(held.path))?.sequence;
    if (kept && sequence !== undefined && this.#chain(connection, parent) === kept) kept.next = sequence + 1;
  }

  async cancelLock(connection: Connection | undefined, kind: LockKind, name: string, slot = 0): Promise<void> {
    if (!connection || connection.closed) return;
    const key = keyOf(kind, name, connection.id, slot);
    const known = this.#waiting.get(key) ?? this.#held.get(key);
    this.#settle(this.#held.get(key));
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
    const own = lineOf(children).filter((r) => r.session === connection.id && r.slot === slot);
    await Promise.all(
      own.map((r) =>
        connection.delete(`${parent}/${r.node}`).catch((error: unknown) => {
          if (!isCode(error, CODES.NO_NODE)) throw error;
        }),
      ),
    );
    this.#uncertain.delete(key);
  }

  /** The first holder (the lowest node holds whenever the line is not empty). */
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
      const first = lineOf(children)[0];
      if (first === undefined) return undefined;
      try {
        const { data, stat } = await connection.getData(`${parent}/${first.node}`);
        return holderOf(first, data.toString(), long(stat.mzxid));
      } catch (error) {
        if (!isCode(error, CODES.NO_NODE)) throw error;
      }
    }
  }

  /**
   * The line (of requests that count) and its holders, by token; undefined when nobody holds or waits. With `first`,
   * also the first waiter behind the holders: its member and its wait by its node's ctime (the server's wall clock at
   * its creation), one read more when anyone waits.
   */
  async #read(
    connection: Connection,
    kind: LockKind,
    name: string,
    first = false,
  ): Promise<{ line: Request[]; holders: LockHolder[]; oldestWaiter?: LockWaiter } | undefined> {
    const parent = this.#paths.lock(kind, name);
    for (;;) {
      let line: Request[];
      try {
        line = agreeing(lineOf((await connection.getChildren(parent)).children));
      } catch (error) {
        if (isCode(error, CODES.NO_NODE)) return undefined;
        throw error;
      }
      if (line.length === 0) return undefined;
      const held = holdersOf(line);
      try {
        // Holders are a prefix of the line, which is in creation order: in token order already.
        const waiter = first ? line[held.length] : undefined;
        const [holders, oldestWaiter] = await Promise.all([
          Promise.all(
            held.map(async (request) => {
              const { data, stat } = await connection.getData(`${parent}/${request.node}`);
              return holderOf(request, data.toString(), long(stat.mzxid));
            }),
          ),
          waiter &&
            connection.getData(`${parent}/${waiter.node}`).then(({ data, stat }): LockWaiter => ({
              member: data.toString(),
              waitedMs: Date.now() - Number(long(stat.ctime)),
            })),
        ]);
        return oldestWaiter ? { line, holders, oldestWaiter } : { line, holders };
      } catch (error) {
        if (!isCode(error, CODES.NO_NODE)) throw error; // released meanwhile: look again
      }
    }
  }

  async holders(connection: Connection, kind: LockKind, name: string): Promise<LockHolder[]> {
    return (await this.#read(connection, kind, name))?.holders ?? [];
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
    const read = await this.#read(connection, kind, name, true);
    if (!read) return undefined;
    const { line, holders, oldestWaiter } = read;
    const limit = line[0]?.limit ?? 0;
    return {
      kind,
      name,
      holders,
      waiting: line.length - holders.length,
      ...(kind === 'semaphore' && limit > 0 ? { limit } : {}),
      ...(oldestWaiter ? { oldestWaiter } : {}),
    };
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
    for (const [key, contender] of this.#held) {
      if (contender.connection.id !== session) continue;
      this.#settle(contender);
      this.#held.delete(key);
    }
    for (const [key, contender] of this.#waiting) if (contender.connection.id === session) this.#waiting.delete(key);
    for (const [key, owner] of this.#uncertain) if (owner === session) this.#uncertain.delete(key);
    for (const key of this.#chains.keys()) if (key.startsWith(`${session}\u0000`)) this.#chains.delete(key);
  }
}
