import { ConcordError } from './errors.js';

/** Query parameters whose values are secrets, whatever the driver (sentinelPassword=, password=, authToken=...). */
const SECRET_PARAM = /([?&](?!key=)(?:[a-z0-9_]*(?:password|passwd|pass|secret|token|key)[a-z0-9_]*)=)[^&#]*/gi;

/** Replaces the password of a URL-looking string, and secret query values, with '***', also in strings `new URL` refuses. */
export function redact(url: string): string {
  // Up to the last '@' of the authority, as URL parsers read it: a password may itself contain '@'.
  return url.replace(/^([a-z][a-z0-9+.-]*:\/\/[^/@:?#]*):[^/?#]*@/i, '$1:***@').replace(SECRET_PARAM, '$1***');
}

export function parseUrl(raw: unknown): URL {
  if (typeof raw !== 'string' || raw.length === 0) {
    throw new ConcordError('ERR_INVALID_URL', `url must be a non-empty string, got ${typeof raw}`);
  }
  let url: URL;
  try {
    // Multiple hosts (h:p,h:p) are not valid in WHATWG URLs; parse them as a dummy host and keep the list.
    url = new URL(raw.replace(/^([a-z][a-z0-9+.-]*:\/\/)([^/?#]*,[^/?#]*)/i, (_m, scheme: string) => `${scheme}multi-host.invalid`));
  } catch (cause) {
    throw new ConcordError('ERR_INVALID_URL', `url is not a valid URL: ${redact(raw)}`, { cause: new Error(redact(String(cause))) });
  }
  return url;
}

/** The host list of a URL, keeping the comma-separated form `h:p,h:p` that several drivers accept. */
export function hostList(raw: string, defaultPort: number): Array<{ host: string; port: number }> {
  const match = /^[a-z][a-z0-9+.-]*:\/\/(?:[^@/?#]*@)?([^/?#]*)/i.exec(raw);
  const hosts = match?.[1] ?? '';
  if (hosts === '') return [];
  return hosts.split(',').map((entry) => {
    const m = /^(\[[^\]]+\]|[^:]+)(?::(\d+))?$/.exec(entry);
    if (!m?.[1]) throw new ConcordError('ERR_INVALID_URL', `url has a malformed host "${entry}"`);
    const port = m[2] === undefined ? defaultPort : Number(m[2]);
    if (!Number.isInteger(port) || port <= 0 || port > 65535) {
      throw new ConcordError('ERR_INVALID_URL', `url has a bad port in "${entry}"`);
    }
    return { host: m[1].replace(/^\[|\]$/g, ''), port };
  });
}
