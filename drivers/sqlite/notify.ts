/**
 * How a driver hears of changes to the file: commits of its own process's drivers on the same file are told directly
 * (a microtask); other processes' commits are noticed by reading `PRAGMA data_version` when the directory's file
 * notification says the database or its -wal file changed, and by a fallback poll: every FALLBACK_POLL_MS while
 * notifications are known to work, every POLL_MS while they are not (none could be set up, the watch failed, or the
 * poll found a commit no notification announced). One poller per driver, running only while something waits or
 * watches; each wake-up delivers new change-log rows to group watches, tells lock listeners whose lock's version
 * moved, and reaps dead sessions.
 */
import { watch, type FSWatcher } from 'node:fs';
import { basename, dirname } from 'node:path';
import { debug } from '../../src/debug.js';
import type { LockKind, Unsubscribe, WatchSink } from '../../src/driver.js';
import { parseCapabilities } from '../../src/kit/index.js';
import type { ChangeRow, Statements } from './statements.js';

/** How often the poller reads PRAGMA data_version while file notifications are not known to work. */
export const POLL_MS = 10;
/**
 * How often it reads it while they work: only a bound on the delay should one be lost. Each poll is a stat, a pragma
 * and a read of the sessions (about 0.1 ms of CPU here), so an idle watching process costs a few per second.
 */
export const FALLBACK_POLL_MS = 500;
/**
 * How often a waiting or watching driver looks for dead sessions (no commit announces a killed process) while it
 * polls fast; every FALLBACK_POLL_MS while notifications work. A queued acquire also looks at each of its re-checks.
 */
export const REAP_EVERY_MS = 50;
/** Commits announced by a notification, in a row, after which notifications are trusted again. */
const TRUST_AFTER = 3;
/**
 * After a notification that found no new commit, looks again after these delays: a writer's write to the -wal is
 * notified before it publishes the commit in the WAL index (the -shm, shared memory that no notification covers), so
 * the first look can come too early, and a writer preempted in between takes a while.
 */
const RECHECK_MS = [1, 4, 16] as const;

/** What the notifier needs of its driver. */
export interface NotifyHost {
  readonly path: string;
  readonly namespace: string;
  /** Open (not closed or destroyed). */
  open(): boolean;
  /** Open, linked, and on the file the path names as far as is known: reads may go ahead. */
  attached(): boolean;
  /** Whether the path still names this connection's file (leaving it when not). */
  verify(): boolean;
  statements(): Statements;
  /** Runs `fn` in one read transaction. */
  read<T>(fn: () => T): T;
  /** Ends dead sessions, at most every `minGapMs`. */
  reap(minGapMs: number): void;
}

interface GroupWatch {
  readonly group: string;
  last: number;
  readonly sink: WatchSink;
  active: boolean;
}

interface LockWatch {
  readonly kind: LockKind;
  readonly name: string;
  version: number | undefined;
  readonly listeners: Set<() => void>;
}

/** Database path -> the notifiers of this process on it, told of each other's commits directly. */
const peers = new Map<string, Set<Notifier>>();

export class Notifier {
  readonly #host: NotifyHost;
  readonly #groupWatches = new Set<GroupWatch>();
  readonly #lockWatches = new Map<string, LockWatch>();
  #poller: NodeJS.Timeout | undefined;
  /** The poller's interval now: FALLBACK_POLL_MS while notifications are trusted, else POLL_MS. */
  #pollMs = POLL_MS;
  #fileWatch: FSWatcher | undefined;
  /** Whether file notifications are taken to announce every commit of another process. */
  #trusted = false;
  /** When the last notification of the database or its -wal came (performance.now()). */
  #heardAt = -Infinity;
  /** Commits found by a notification's wake-up since the poll last found one first. */
  #announced = 0;
  /** The next look again after a notification that found nothing new. */
  #recheck: NodeJS.Timeout | undefined;
  #kickQueued = false;
  #scanQueued = false;
  #dataVersion = -1;

  constructor(host: NotifyHost) {
    this.#host = host;
    let set = peers.get(host.path);
    if (!set) {
      set = new Set();
      peers.set(host.path, set);
    }
    set.add(this);
  }

  /** Whether anything waits or watches. */
  get busy(): boolean {
    return this.#groupWatches.size > 0 || this.#lockWatches.size > 0;
  }

  /**
   * After a commit: every driver of this process on the same file looks at once (a microtask, so an observer in this
   * process sees each change before the writer's caller can make the next one); other processes poll.
   */
  changed(): void {
    for (const peer of peers.get(this.#host.path) ?? []) peer.#poke();
  }

  #poke(): void {
    // Announced: the poll finding this commit first is no sign of a lost notification.
    this.#heardAt = performance.now();
    if (this.#scanQueued || !this.busy) return;
    this.#scanQueued = true;
    queueMicrotask(() => {
      this.#scanQueued = false;
      this.#scan();
    });
  }

  /** A new connection (to the file now at the path): its data_version starts afresh, its directory may be new. */
  attached(): void {
    this.#dataVersion = -1;
    if (this.#poller) {
      this.#unwatchFile();
      this.#watchFile();
    }
  }

  /**
   * The connection left its file: every watch resynchronises and every lock listener looks again. Told from a timer
   * or a file notification, so a listener that throws must not take the process down.
   */
  detached(): void {
    const tell = (fn: () => void): void => {
      try {
        fn();
      } catch (error) {
        debug('sqlite listener failed: %s', (error as Error).message);
      }
    };
    for (const watch of [...this.#groupWatches]) {
      if (!watch.active) continue;
      watch.active = false;
      tell(() => {
        watch.sink.resync();
      });
    }
    for (const entry of [...this.#lockWatches.values()]) {
      entry.version = undefined;
      for (const listener of [...entry.listeners]) tell(listener);
    }
  }

  /** The link is back after a fault: nothing was noticed meanwhile, so every watch resynchronises and every waiter looks. */
  relinked(): void {
    this.#dataVersion = -1;
    for (const watch of [...this.#groupWatches]) {
      if (!watch.active) continue;
      watch.active = false;
      watch.sink.resync();
    }
    for (const entry of [...this.#lockWatches.values()]) for (const listener of [...entry.listeners]) listener();
  }

  /** The driver closed: the poller stops, and waiting acquires wake to find the connection closed. */
  shut(): void {
    const set = peers.get(this.#host.path);
    set?.delete(this);
    if (set?.size === 0) peers.delete(this.#host.path);
    clearInterval(this.#poller);
    this.#poller = undefined;
    this.#unwatchFile();
    clearTimeout(this.#recheck);
    for (const entry of [...this.#lockWatches.values()]) for (const listener of [...entry.listeners]) listener();
    this.#groupWatches.clear();
    this.#lockWatches.clear();
  }

  /**
   * Delivers the group's change-log rows after `last` to `sink` until unsubscribed. `current` false: the position is
   * in a file this connection has left, so the watch resynchronises at once.
   */
  watchGroup(group: string, last: number, current: boolean, sink: WatchSink): Unsubscribe {
    const watch: GroupWatch = { group, last, sink, active: true };
    this.#groupWatches.add(watch);
    this.#startPoller();
    // Catch up on what happened since the snapshot, off the caller's stack.
    setImmediate(() => {
      if (!watch.active || !this.#host.attached()) return;
      if (!current) {
        watch.active = false;
        sink.resync();
        return;
      }
      try {
        this.#deliver([watch]);
      } catch (error) {
        debug('sqlite catch-up of group "%s" failed: %s', group, (error as Error).message);
      }
    });
    return () => {
      watch.active = false;
      this.#groupWatches.delete(watch);
      this.#stopPollerIfIdle();
    };
  }

  /** Calls `listener` whenever the lock's version moves (it changed hands, or its queue did). */
  watchLock(kind: LockKind, name: string, listener: () => void): Unsubscribe {
    const key = `${kind}\u0000${name}`;
    let entry = this.#lockWatches.get(key);
    if (!entry) {
      entry = { kind, name, version: this.#lockVersion(kind, name), listeners: new Set() };
      this.#lockWatches.set(key, entry);
    }
    const own = (): void => {
      listener();
    };
    entry.listeners.add(own);
    this.#startPoller();
    return () => {
      const current = this.#lockWatches.get(key);
      if (!current) return;
      current.listeners.delete(own);
      if (current.listeners.size === 0) this.#lockWatches.delete(key);
      this.#stopPollerIfIdle();
    };
  }

  /** The lock's version, or undefined when it cannot be read now (the next scan then tells the listeners). */
  #lockVersion(kind: LockKind, name: string): number | undefined {
    if (!this.#host.attached()) return undefined;
    try {
      return this.#host.statements().lockVersion.get(this.#host.namespace, kind, name) ?? -1;
    } catch (error) {
      debug('sqlite cannot read the version of "%s": %s', name, (error as Error).message);
      return undefined;
    }
  }

  // ---- the poller: one per driver, running while anything waits or watches

  /**
   * Runs only while something waits or watches, and keeps the process alive meanwhile: a process awaiting a lock
   * held by another process has nothing else that would (no socket, unlike a networked backend).
   */
  #startPoller(): void {
    if (this.#poller || !this.#host.open()) return;
    this.#watchFile();
    this.#schedule();
  }

  /** (Re)starts the poller at the interval the trust in notifications calls for. */
  #schedule(): void {
    const ms = this.#trusted ? FALLBACK_POLL_MS : POLL_MS;
    if (this.#poller && this.#pollMs === ms) return;
    clearInterval(this.#poller);
    this.#pollMs = ms;
    this.#poller = setInterval(() => {
      this.#tick(false);
    }, ms);
  }

  /** Notifications lost one, or can no longer come: the poll is the wake-up until they prove themselves again. */
  #distrust(why: string): void {
    this.#announced = 0;
    if (!this.#trusted) return;
    debug('sqlite %s: %s; polling every %d ms', this.#host.path, why, POLL_MS);
    this.#trusted = false;
    if (this.#poller) this.#schedule();
  }

  /**
   * A commit by another process writes the -wal file: a file notification makes the poller look at once, so a
   * hand-off between processes costs well under the poll interval, and the poll can be slow while they come (on the
   * file systems SQLite's WAL mode works on, every writer is on this host, and its kernel sees every write). The
   * poll stays as the fallback: a notification may be dropped (the queue overflowing), and some file systems have
   * none. The -wal file itself is watched (it stays while any connection, this one included, has the database open),
   * not its directory, which may be a busy one (/tmp) whose every other change would wake this process too; where it
   * cannot be, the directory, filtered by name.
   */
  #watchFile(): void {
    const path = this.#host.path;
    const wal = `${path}-wal`;
    let fileWatch: FSWatcher;
    try {
      try {
        fileWatch = watch(wal, { persistent: false }, () => {
          this.#kick();
        });
      } catch (error) {
        debug('sqlite cannot watch %s, watching its directory: %s', wal, (error as Error).message);
        const names = new Set([basename(path), basename(wal)]);
        fileWatch = watch(dirname(path), { persistent: false }, (_event, file) => {
          if (file !== null && names.has(file)) this.#kick();
        });
      }
    } catch (error) {
      debug('sqlite cannot watch %s, polling only: %s', path, (error as Error).message);
      this.#distrust('no file notifications');
      return;
    }
    fileWatch.on('error', (error) => {
      debug('sqlite file watch of %s failed, polling only: %s', path, error.message);
      if (this.#fileWatch === fileWatch) this.#unwatchFile();
    });
    this.#fileWatch = fileWatch;
    this.#trusted = true;
    this.#announced = 0;
    if (this.#poller) this.#schedule();
  }

  #unwatchFile(): void {
    this.#fileWatch?.close();
    this.#fileWatch = undefined;
    this.#distrust('file notifications stopped');
  }

  #kick(): void {
    this.#heardAt = performance.now();
    clearTimeout(this.#recheck);
    this.#recheck = undefined;
    if (this.#kickQueued) return;
    this.#kickQueued = true;
    setImmediate(() => {
      this.#kickQueued = false;
      if (this.#poller) this.#tick(true, 0);
    });
  }

  #stopPollerIfIdle(): void {
    if (this.#poller && !this.busy) {
      clearInterval(this.#poller);
      this.#poller = undefined;
      this.#unwatchFile();
      clearTimeout(this.#recheck);
      this.#recheck = undefined;
    }
  }

  /**
   * One look: `notified` when a file notification woke it (`round` counts the looks again after it), else the
   * fallback poll.
   */
  #tick(notified: boolean, round = 0): void {
    // Every wake-up first checks that the path still names this connection's file.
    if (!this.#host.attached() || !this.#host.verify()) return;
    try {
      const version = this.#host.statements().dataVersion.get() ?? -1;
      if (version !== this.#dataVersion) {
        if (this.#dataVersion !== -1) this.#judge(notified);
        // Recorded only once a scan went through: a failed one is tried again on the next tick, not the next commit.
        if (this.#scan()) this.#dataVersion = version;
      } else if (notified) {
        const delayMs = RECHECK_MS[round];
        if (delayMs !== undefined) {
          this.#recheck = setTimeout(() => {
            this.#recheck = undefined;
            if (this.#poller) this.#tick(true, round + 1);
          }, delayMs);
        }
      }
      // Reaping is a read of every session and a liveness check of each one's process: at most every poll.
      this.#host.reap(this.#trusted ? FALLBACK_POLL_MS : REAP_EVERY_MS);
    } catch (error) {
      debug('sqlite poll of %s failed: %s', this.#host.path, (error as Error).message);
    }
  }

  /**
   * Another process committed: was it announced? The poll finding it with no notification in a whole interval means
   * one was lost (a commit within the last instant, its notification not yet read, is announced by a neighbour in
   * all but an idle file, and a wrong verdict only costs polling). Announced ones in a row restore the trust.
   */
  #judge(notified: boolean): void {
    if (notified) {
      if (!this.#trusted && this.#fileWatch && ++this.#announced >= TRUST_AFTER) {
        debug('sqlite %s: file notifications announce commits again; polling every %d ms', this.#host.path, FALLBACK_POLL_MS);
        this.#trusted = true;
        if (this.#poller) this.#schedule();
      }
    } else if (performance.now() - this.#heardAt > this.#pollMs) {
      this.#distrust('the poll found a commit no file notification announced');
    }
  }

  /** Delivers new change-log rows to group watches and tells lock listeners whose lock changed. False when it failed. */
  #scan(): boolean {
    if (!this.#host.attached()) return false;
    try {
      if (this.#groupWatches.size > 0) this.#deliver([...this.#groupWatches]);
      const st = this.#host.statements();
      for (const entry of [...this.#lockWatches.values()]) {
        const version = st.lockVersion.get(this.#host.namespace, entry.kind, entry.name) ?? -1;
        if (version === entry.version) continue;
        entry.version = version;
        for (const listener of [...entry.listeners]) listener();
      }
      return true;
    } catch (error) {
      debug('sqlite scan of %s failed: %s', this.#host.path, (error as Error).message);
      return false;
    }
  }

  /**
   * Reads the trim mark and every watch's new rows in one read transaction (a trim between the two reads would lose
   * rows without a resync), then hands them out outside it (a sink may call back into the driver).
   */
  #deliver(watches: GroupWatch[]): void {
    const st = this.#host.statements();
    const batches = this.#host.read(() => {
      const trimmed = st.meta.get('trimmed') ?? 0;
      return watches.map((watch): ChangeRow[] | 'resync' => {
        if (!watch.active) return [];
        // The log no longer reaches back to this watch's position: the core takes a new snapshot.
        if (watch.last < trimmed) return 'resync';
        return st.changesSince.all(this.#host.namespace, watch.group, watch.last);
      });
    });
    watches.forEach((watch, i) => {
      const batch = batches[i] ?? [];
      if (batch === 'resync') {
        if (!watch.active) return;
        watch.active = false;
        watch.sink.resync();
        return;
      }
      for (const row of batch) {
        // Rows another delivery (a catch-up racing a scan) already handed out are skipped.
        if (!watch.active) return;
        if (row.id <= watch.last) continue;
        watch.last = row.id;
        if (row.type === 'leave') watch.sink.event({ type: 'leave', member: row.member });
        else watch.sink.event({ type: row.type, member: row.member, capabilities: parseCapabilities(row.capabilities) });
      }
    });
  }
}
