/**
 * The default backend: an SQLite file private to the user who runs concord. Every process of that user on this host
 * finds it with no set-up; another user's processes never see it (sharing across users is an explicit --url).
 *
 * It lives in `$XDG_RUNTIME_DIR/concord/` when that directory is the user's own and closed to others (as the XDG
 * specification requires), else in `concord-UID/` in the temp directory. The folder is created with mode 0700; a
 * folder or database file that is a symbolic link, belongs to another user, or (the folder) is open to other users is
 * refused rather than used, since whoever controls it could read, hold or break this user's locks.
 */
import { lstatSync, mkdirSync, type Stats } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, isAbsolute, join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { CliError } from './output.js';

const FILE = 'concord.db';

function lstatOrUndefined(path: string): Stats | undefined {
  try {
    return lstatSync(path);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw error;
  }
}

/** A real directory (not a link) owned by `uid` that no other user may enter. */
function isPrivateDirectory(path: string, uid: number): boolean {
  try {
    const stats = lstatSync(path);
    return stats.isDirectory() && stats.uid === uid && (stats.mode & 0o077) === 0;
  } catch {
    return false;
  }
}

/** Where the default database is, for this user and environment; creates nothing. */
export function defaultDatabasePath(env: NodeJS.ProcessEnv = process.env): string {
  const uid = process.getuid?.();
  // Windows has no uids; its temp directory is already per user.
  if (uid === undefined) return join(tmpdir(), FILE);
  const runtime = env.XDG_RUNTIME_DIR;
  if (runtime !== undefined && runtime !== '' && isAbsolute(runtime) && isPrivateDirectory(runtime, uid)) {
    return join(runtime, 'concord', FILE);
  }
  return join(tmpdir(), `concord-${String(uid)}`, FILE);
}

function refuse(what: string, path: string, problem: string): never {
  throw new CliError(`refusing the default database ${what} ${path}: ${problem} (pass --url to choose a database)`);
}

/** Creates the default database's folder if needed, checks that it and the file are this user's alone, returns the URL. */
export function privateDefaultUrl(env: NodeJS.ProcessEnv = process.env): string {
  const path = defaultDatabasePath(env);
  const uid = process.getuid?.();
  if (uid !== undefined) {
    const dir = dirname(path);
    try {
      mkdirSync(dir, { mode: 0o700 });
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if (code !== 'EEXIST') refuse('folder', dir, `cannot create it (${code ?? (error as Error).message})`);
    }
    const folder = lstatOrUndefined(dir);
    if (folder === undefined) refuse('folder', dir, 'it vanished while being created');
    if (folder.isSymbolicLink()) refuse('folder', dir, 'it is a symbolic link');
    if (!folder.isDirectory()) refuse('folder', dir, 'it is not a directory');
    if (folder.uid !== uid) refuse('folder', dir, `it belongs to uid ${String(folder.uid)}, not to uid ${String(uid)}`);
    if ((folder.mode & 0o077) !== 0) {
      const mode = (folder.mode & 0o777).toString(8).padStart(4, '0');
      refuse('folder', dir, `other users may use it (mode ${mode}; chmod 700 it)`);
    }
    const file = lstatOrUndefined(path);
    if (file?.isSymbolicLink()) refuse('file', path, 'it is a symbolic link');
    if (file && !file.isFile()) refuse('file', path, 'it is not a regular file');
    if (file && file.uid !== uid) refuse('file', path, `it belongs to uid ${String(file.uid)}, not to uid ${String(uid)}`);
  }
  return `sqlite://${pathToFileURL(path).pathname}`;
}
