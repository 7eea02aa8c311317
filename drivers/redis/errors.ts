/**
 * What a Redis reply means to a caller: a script's refusal is its ConcordError (worded by the driver kit), a reply that
 * retrying will not change is ERR_REFUSED with the server's message, anything else from the server or the link is
 * ERR_CONNECTION. No message carries a command's arguments (for AUTH they are the password).
 */
import { ConcordError, refusedError, type ErrorCode } from '../../src/errors.js';
import { groupExists, groupNotEmpty, groupNotFound, memberExists, memberNotJoined, sessionGone } from '../../src/kit/index.js';

/** The group and member a script was called about, for the wording of its refusals. */
export interface ErrorContext {
  readonly group?: string;
  readonly member?: string;
}

/** A script's `CONCORD <code>` refusal as the kit words it. */
function scriptError(code: ErrorCode, context: ErrorContext): ConcordError {
  const group = context.group ?? '';
  const member = context.member ?? '';
  switch (code) {
    case 'ERR_GROUP_EXISTS':
      return groupExists(group);
    case 'ERR_GROUP_NOT_FOUND':
      return groupNotFound(group);
    case 'ERR_GROUP_NOT_EMPTY':
      return groupNotEmpty(group);
    case 'ERR_MEMBER_EXISTS':
      return memberExists(group, member);
    case 'ERR_MEMBER_NOT_JOINED':
      return memberNotJoined(group, member);
    case 'ERR_SESSION_LOST':
      return sessionGone();
    default:
      return new ConcordError(code, code);
  }
}

/**
 * Script refusals become their ConcordError; a refusal retrying will not fix (OOM, READONLY, NOPERM, WRONGTYPE) is
 * ERR_REFUSED with the server's message; anything else from the server or the link is ERR_CONNECTION.
 */
export function toConcordError(error: unknown, context: ErrorContext = {}, sentinel = false): ConcordError {
  if (error instanceof ConcordError) return error;
  const text = error instanceof Error ? error.message : String(error);
  const match = /CONCORD (ERR_[A-Z_]+)/.exec(text);
  if (match?.[1]) return scriptError(match[1] as ErrorCode, context);
  const cause = error instanceof Error ? withoutCommand(error) : error;
  if (isRefusal(error, sentinel)) return refusedError(`redis refused the request: ${text}`, cause);
  return new ConcordError('ERR_CONNECTION', `redis: ${text}`, { cause });
}

/** A reply from the server that retrying will not change (it needs an operator): ERR_REFUSED rather than ERR_CONNECTION. */
const REFUSAL = /(?:^|: -|\s-)(OOM|READONLY|NOPERM|WRONGTYPE)\b|The user executing the script can't/;

/**
 * Whether an error is the server refusing the request for good: out of memory, a read-only replica, a missing
 * permission, a key of the wrong type. Behind Sentinel a READONLY reply means the master moved: a connection problem.
 */
export function isRefusal(error: unknown, sentinel: boolean): boolean {
  const text = error instanceof Error ? error.message : String(error);
  const match = REFUSAL.exec(text);
  if (!match) return false;
  return !(sentinel && match[1] === 'READONLY');
}

/**
 * The server refused to log the connection in: a wrong user name or password (WRONGPASS), or none given to a server
 * that needs one (NOAUTH). Trying again will not change it, as with etcd's refused credentials.
 */
export function isAuthFailure(error: Error): boolean {
  return /^(WRONGPASS|NOAUTH)\b/.test(error.message);
}

/** A server busy loading its data (or running a long script): connecting waits for it rather than failing. */
export function isTransient(error: unknown): boolean {
  return error instanceof Error && /^(LOADING|BUSY)\b/.test(error.message);
}

export function isNoScript(error: unknown): boolean {
  return error instanceof Error && error.message.startsWith('NOSCRIPT');
}

/** A server's reply error carries the command's arguments, which for AUTH is the password: keep only what it said. */
export function withoutCommand(error: Error): Error {
  if (!('command' in error)) return error;
  const copy = new Error(error.message);
  copy.name = error.name;
  return copy;
}
