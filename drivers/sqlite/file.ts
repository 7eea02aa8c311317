/**
 * Which file a path names, and a guard that notices when that changes: a connection lives on in a file that was
 * deleted or replaced, while newcomers open whatever the path names now.
 */
import { statSync, watch, type BigIntStats, type FSWatcher } from 'node:fs';
import { debug } from '../../src/debug.js';

/**
 * How often a connection checks, without any other wake-up, that the path still names the file it opened: while the
 * file is watched, only for what its notifications do not cover (a directory above it renamed); else for everything.
 */
export const FILE_CHECK_WATCHED_MS = 1000;
export const FILE_CHECK_MS = 50;

/**
 * Which file a path names: the device and inode (not reused while the file is open), and the birth time (0 where the
 * file system has none), which tells a new file from an old one that got a freed inode number back.
 */
export interface FileIdentity {
  readonly dev: bigint;
  readonly ino: bigint;
  readonly birth: bigint;
}

/** What `file` names now, or undefined when nothing (a component of the path may also no longer be a directory). */
export function identify(file: string): FileIdentity | undefined {
  let stats: BigIntStats | undefined;
  try {
    stats = statSync(file, { bigint: true, throwIfNoEntry: false });
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOTDIR') throw error;
  }
  return stats && { dev: stats.dev, ino: stats.ino, birth: stats.birthtimeNs };
}

export function sameFile(a: FileIdentity | undefined, b: FileIdentity): boolean {
  return a !== undefined && a.dev === b.dev && a.ino === b.ino;
}

/**
 * Calls `check` when the file at `path` may have been deleted or replaced: its deletion, or a rename over it, is an
 * event on it (the unlink changes its link count); a timer covers what no event on the file announces, every
 * FILE_CHECK_MS on file systems without notifications. Neither keeps the process alive.
 */
export class FileGuard {
  #watcher: FSWatcher | undefined;
  #timer: NodeJS.Timeout;
  readonly #check: () => void;

  constructor(path: string, check: () => void) {
    this.#check = check;
    try {
      const watcher = watch(path, { persistent: false }, check);
      watcher.on('error', (error) => {
        debug('sqlite watch of %s failed, checking every %d ms only: %s', path, FILE_CHECK_MS, error.message);
        watcher.close();
        if (this.#watcher !== watcher) return;
        this.#watcher = undefined;
        this.#every(FILE_CHECK_MS);
      });
      this.#watcher = watcher;
    } catch (error) {
      debug('sqlite cannot watch %s, checking every %d ms only: %s', path, FILE_CHECK_MS, (error as Error).message);
    }
    this.#timer = this.#start(this.#watcher ? FILE_CHECK_WATCHED_MS : FILE_CHECK_MS);
  }

  #start(ms: number): NodeJS.Timeout {
    const timer = setInterval(this.#check, ms);
    timer.unref();
    return timer;
  }

  #every(ms: number): void {
    clearInterval(this.#timer);
    this.#timer = this.#start(ms);
  }

  close(): void {
    clearInterval(this.#timer);
    this.#watcher?.close();
    this.#watcher = undefined;
  }
}
