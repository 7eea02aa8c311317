/**
 * How a driver hears of changes to the file: commits of its own process's drivers on the same file are told directly
 * (a microtask); other processes' commits that a watcher or waiter cares about (a change-log row, a lock's version
 * moving where someone may wait or watch, a session's end) are announced by touching a side file, `<db>-concord`,
 * once committed, and noticed through its file notification; a session's renewal touches nothing, so it wakes nobody.
 * A fallback poll of `PRAGMA data_version` bounds the delay should a notification be lost: every FALLBACK_POLL_MS
 * while notifications are known to work, every POLL_MS while they are not (none could be set up, the watch failed, or
 * the poll found a change watchers care about that no notification announced). While a live session belongs to a
 * process of an earlier version, which touches nothing, the -wal file is watched too, as before. One poller per
 * driver, running only while something waits or watches; each wake-up delivers new change-log rows to group
 * watches, tells lock listeners whose lock's version moved, and reaps dead sessions.
 */
import { openSync, closeSync, statSync, truncateSync, watch, type FSWatcher } from 'node:fs';
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
/** Changes announced by a notification, in a row, after which notifications are trusted again. */
const TRUST_AFTER = 3;
/**
 * After a notification of the -wal that found no new commit, looks again after these delays: a writer's write to the
 * -wal is notified before it publishes the commit in the WAL index (the -shm, shared memory that no notification
 * covers), so the first look can come too early, and a writer preempted in between takes a while. The side file is
 * touched once the commit is published: its notifications need no second look.
 */
const RECHECK_MS = [1, 4, 16] as const;
/**
 * A poll that finds an unannounced change waits this long for its notification before calling it lost: the poll may
 * run between a writer's commit and its touch of the side file.
 */
const LATE_MS = 50;

/** The side file next to the database that writers touch after the commits watchers care about. */
export function sideFile(path: string): string {
  return `${path}-concord`;
}

/** Wake-ups and scans of this process's notifiers (tests count them; nothing else reads them). */
export const notifyCounts = { notified: 0, polled: 0, scans: 0 };

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
  /** The watch of the side file; undefined while none could be set up. */
  #sideWatch: FSWatcher | undefined;
  /** The watch of the -wal: while a process of an earlier version may commit, or the side file cannot be watched. */
  #walWatch: FSWatcher | undefined;
  /** A live session belongs to a process of an earlier version (it touches no side file); told by the driver's reaping. */
  #legacy = false;
  /** Whether file notifications are taken to announce every change of another process that watchers care about. */
  #trusted = false;
  /** When the last notification (or a poke by a driver of this process) came (performance.now()). */
  #heardAt = -Infinity;
  /** Changes found by a notification's wake-up since the poll last found one first. */
  #announced = 0;
  /** The next look again after a notification of the -wal that found nothing new. */
  #recheck: NodeJS.Timeout | undefined;
  /** Waits for the notification of a change the poll found first (LATE_MS). */
  #late: NodeJS.Timeout | undefined;
  #kickQueued = false;
  /** Whether the queued wake-up came from the -wal (looks again when it finds nothing). */
  #kickWal = false;
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
   * process sees each change before the writer's caller can make the next one). `announce`: a watcher or waiter of
   * another process may care, so the side file is touched (after the commit, which it now sees).
   */
  changed(announce: boolean): void {
    if (announce) touch(this.#host.path);
    for (const peer of peers.get(this.#host.path) ?? []) peer.#poke();
  }

  /**
   * Whether a live session belongs to a process of an earlier version, which touches no side file: while one does,
   * the -wal is watched too, so its commits still wake this process at once.
   */
  legacy(present: boolean): void {
    if (this.#legacy === present) return;
    this.#legacy = present;
    debug(
      'sqlite %s: %s',
      this.#host.path,
      present ? 'a process of an earlier version shares the file; watching its -wal too' : 'no process of an earlier version left',
    );
    if (!this.#poller) return;
    if (present) this.#watchWal();
    else if (this.#sideWatch) this.#unwatchWal();
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
    clearTimeout(this.#late);
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
    // Whether a process of an earlier version shares the file decides what to watch: known from the start.
    if (this.#host.attached()) {
      try {
        this.#host.reap(0);
      } catch (error) {
        debug('sqlite reaping of %s failed: %s', this.#host.path, (error as Error).message);
      }
    }
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
   * A commit that a watcher or waiter cares about is followed by a touch of the side file: its file notification
   * makes the poller look at once, so a hand-off between processes costs well under the poll interval, and the poll
   * can be slow while they come (on the file systems SQLite's WAL mode works on, every writer is on this host, and its
   * kernel sees every write). Other commits (renewals) touch nothing and wake nobody. The poll stays as the fallback:
   * a notification may be dropped (the queue overflowing), a writer may die between its commit and its touch, and
   * some file systems have none. The -wal is watched as well while a process of an earlier version may commit, and
   * instead when the side file cannot be made or watched.
   */
  #watchFile(): void {
    const side = sideFile(this.#host.path);
    try {
      ensureSide(this.#host.path);
      const sideWatch = watch(side, { persistent: false }, (event) => {
        // Deleted or replaced: the new file at the path is the one writers touch now.
        if (event === 'rename' && this.#sideWatch === sideWatch) {
          this.#unwatchFile();
          this.#watchFile();
        }
        this.#kick(false);
      });
      sideWatch.on('error', (error) => {
        debug('sqlite watch of %s failed: %s', side, error.message);
        if (this.#sideWatch !== sideWatch) return;
        sideWatch.close();
        this.#sideWatch = undefined;
        this.#watchWal();
        if (!this.#walWatch) this.#distrust('file notifications stopped');
      });
      this.#sideWatch = sideWatch;
    } catch (error) {
      debug('sqlite cannot watch %s, watching the -wal: %s', side, (error as Error).message);
    }
    if (!this.#sideWatch || this.#legacy) this.#watchWal();
    if (!this.#sideWatch && !this.#walWatch) {
      this.#distrust('no file notifications');
      return;
    }
    this.#trusted = true;
    this.#announced = 0;
    if (this.#poller) this.#schedule();
  }

  /**
   * The -wal file itself (it stays while any connection, this one included, has the database open), not its
   * directory, which may be a busy one (/tmp) whose every other change would wake this process too; where it cannot
   * be, the directory, filtered by name.
   */
  #watchWal(): void {
    if (this.#walWatch) return;
    const path = this.#host.path;
    const wal = `${path}-wal`;
    let walWatch: FSWatcher;
    try {
      try {
        walWatch = watch(wal, { persistent: false }, () => {
          this.#kick(true);
        });
      } catch (error) {
        debug('sqlite cannot watch %s, watching its directory: %s', wal, (error as Error).message);
        const names = new Set([basename(path), basename(wal)]);
        walWatch = watch(dirname(path), { persistent: false }, (_event, file) => {
          if (file !== null && names.has(file)) this.#kick(true);
        });
      }
    } catch (error) {
      debug('sqlite cannot watch %s: %s', path, (error as Error).message);
      return;
    }
    walWatch.on('error', (error) => {
      debug('sqlite file watch of %s failed: %s', path, error.message);
      if (this.#walWatch !== walWatch) return;
      this.#unwatchWal();
      if (!this.#sideWatch) this.#distrust('file notifications stopped');
    });
    this.#walWatch = walWatch;
  }

  #unwatchWal(): void {
    this.#walWatch?.close();
    this.#walWatch = undefined;
  }

  #unwatchFile(): void {
    this.#sideWatch?.close();
    this.#sideWatch = undefined;
    this.#unwatchWal();
    this.#distrust('file notifications stopped');
  }

  /** A notification: `wal` when of the -wal (its commit may not be published yet), else of the side file. */
  #kick(wal: boolean): void {
    this.#heardAt = performance.now();
    clearTimeout(this.#recheck);
    this.#recheck = undefined;
    this.#kickWal ||= wal;
    if (this.#kickQueued) return;
    this.#kickQueued = true;
    setImmediate(() => {
      this.#kickQueued = false;
      const fromWal = this.#kickWal;
      this.#kickWal = false;
      // Of the side file: the commit was published before the touch, so there is nothing to look at again for.
      if (this.#poller) this.#tick(true, fromWal ? 0 : RECHECK_MS.length);
    });
  }

  #stopPollerIfIdle(): void {
    if (this.#poller && !this.busy) {
      clearInterval(this.#poller);
      this.#poller = undefined;
      this.#unwatchFile();
      clearTimeout(this.#recheck);
      this.#recheck = undefined;
      clearTimeout(this.#late);
      this.#late = undefined;
    }
  }

  /**
   * One look: `notified` when a file notification woke it (`round` counts the looks again after it), else the
   * fallback poll.
   */
  #tick(notified: boolean, round = 0): void {
    // Every wake-up first checks that the path still names this connection's file.
    if (!this.#host.attached() || !this.#host.verify()) return;
    if (notified) notifyCounts.notified++;
    else notifyCounts.polled++;
    try {
      const version = this.#host.statements().dataVersion.get() ?? -1;
      if (version !== this.#dataVersion) {
        const known = this.#dataVersion !== -1;
        const found = this.#scan();
        // Recorded only once a scan went through: a failed one is tried again on the next tick, not the next commit.
        if (found !== undefined) this.#dataVersion = version;
        // data_version moves with every commit, renewals too: only a change that someone here cares about is judged.
        if (found === true && known) this.#judge(notified);
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
   * Another process made a change watched here: was it announced? The poll finding it with no notification in a
   * whole interval means one was lost, unless its notification comes within LATE_MS (the poll ran between the commit
   * and the touch); a wrong verdict only costs polling. Announced ones in a row restore the trust.
   */
  #judge(notified: boolean): void {
    if (notified) {
      if (!this.#trusted && (this.#sideWatch || this.#walWatch) && ++this.#announced >= TRUST_AFTER) {
        debug('sqlite %s: file notifications announce changes again; polling every %d ms', this.#host.path, FALLBACK_POLL_MS);
        this.#trusted = true;
        if (this.#poller) this.#schedule();
      }
      return;
    }
    const foundAt = performance.now();
    if (foundAt - this.#heardAt <= this.#pollMs) return;
    if (!this.#trusted) {
      this.#distrust('the poll found a change no file notification announced');
      return;
    }
    if (this.#late) return;
    this.#late = setTimeout(() => {
      this.#late = undefined;
      if (this.#poller && this.#heardAt < foundAt) this.#distrust('the poll found a change no file notification announced');
    }, LATE_MS);
  }

  /**
   * Delivers new change-log rows to group watches and tells lock listeners whose lock changed. Whether it found
   * anything; undefined when it failed.
   */
  #scan(): boolean | undefined {
    if (!this.#host.attached()) return undefined;
    notifyCounts.scans++;
    try {
      let found = this.#groupWatches.size > 0 && this.#deliver([...this.#groupWatches]);
      const st = this.#host.statements();
      for (const entry of [...this.#lockWatches.values()]) {
        const version = st.lockVersion.get(this.#host.namespace, entry.kind, entry.name) ?? -1;
        if (version === entry.version) continue;
        found = true;
        entry.version = version;
        for (const listener of [...entry.listeners]) listener();
      }
      return found;
    } catch (error) {
      debug('sqlite scan of %s failed: %s', this.#host.path, (error as Error).message);
      return undefined;
    }
  }

  /**
   * Reads the trim mark and every watch's new rows in one read transaction (a trim between the two reads would lose
   * rows without a resync), then hands them out outside it (a sink may call back into the driver).
   */
  #deliver(watches: GroupWatch[]): boolean {
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
    let found = false;
    watches.forEach((watch, i) => {
      const batch = batches[i] ?? [];
      if (batch === 'resync') {
        if (!watch.active) return;
        found = true;
        watch.active = false;
        watch.sink.resync();
        return;
      }
      for (const row of batch) {
        // Rows another delivery (a catch-up racing a scan) already handed out are skipped.
        if (!watch.active) return;
        if (row.id <= watch.last) continue;
        found = true;
        watch.last = row.id;
        if (row.type === 'leave') watch.sink.event({ type: 'leave', member: row.member });
        else watch.sink.event({ type: row.type, member: row.member, capabilities: parseCapabilities(row.capabilities) });
      }
    });
    return found;
  }
}

/**
 * Announces a commit to the watchers of other processes: a truncation of the (empty) side file is one system call,
 * needs only write permission, and is notified as a change. A missing side file is made (watchers make it too).
 */
function touch(path: string): void {
  const side = sideFile(path);
  try {
    truncateSync(side, 0);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') {
      debug('sqlite cannot touch %s: %s', side, (error as Error).message);
      return;
    }
    try {
      ensureSide(path);
    } catch (cause) {
      debug('sqlite cannot make %s: %s', side, (cause as Error).message);
    }
  }
}

/** Makes the side file if it is missing, with the database's permissions (whoever may write it may touch this). */
function ensureSide(path: string): void {
  const side = sideFile(path);
  closeSync(openSync(side, 'a', statSync(path).mode & 0o666));
}
