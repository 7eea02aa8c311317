import { isAbsolute } from 'node:path';
import { ConcordError } from '../../src/errors.js';

/** sqlite:///ABS/PATH.db -> /ABS/PATH.db. The path must be absolute so every process finds the same file. */
export function databasePath(url: URL): string {
  const shown = `${url.protocol}//${url.host}${url.pathname}`;
  if (url.host !== '' && url.host !== 'localhost') {
    throw new ConcordError(
      'ERR_INVALID_URL',
      `url ${shown} must name an absolute path after sqlite:// (three slashes: sqlite:///var/tmp/app.db)`,
    );
  }
  let path: string;
  try {
    path = decodeURIComponent(url.pathname);
  } catch (cause) {
    throw new ConcordError('ERR_INVALID_URL', `url ${shown} has a malformed path`, { cause });
  }
  if (!isAbsolute(path) || path.endsWith('/')) {
    throw new ConcordError('ERR_INVALID_URL', `url ${shown} must name an absolute path to a database file, like sqlite:///var/tmp/app.db`);
  }
  if (path.includes('\u0000')) throw new ConcordError('ERR_INVALID_URL', `url ${shown} has a NUL byte in its path`);
  return path;
}
