/**
 * The errors every driver raises for the same group cases, worded once: the same case reads the same on every
 * backend (as tooz's `GroupNotCreated(group_id)` does).
 */
import { ConcordError } from '../errors.js';

export function groupNotFound(group: string): ConcordError {
  return new ConcordError('ERR_GROUP_NOT_FOUND', `group "${group}" does not exist`);
}

export function groupExists(group: string): ConcordError {
  return new ConcordError('ERR_GROUP_EXISTS', `group "${group}" already exists`);
}

export function groupNotEmpty(group: string): ConcordError {
  return new ConcordError('ERR_GROUP_NOT_EMPTY', `group "${group}" still has members`);
}

export function memberExists(group: string, member: string): ConcordError {
  return new ConcordError('ERR_MEMBER_EXISTS', `member "${member}" is already in group "${group}"`);
}

export function memberNotJoined(group: string, member: string): ConcordError {
  return new ConcordError('ERR_MEMBER_NOT_JOINED', `member "${member}" has not joined group "${group}"`);
}

/** The backend no longer knows the session a request was made in. */
export function sessionGone(): ConcordError {
  return new ConcordError('ERR_SESSION_LOST', 'the session has expired');
}

/** A request on a driver whose connections were closed. */
export function connectionClosed(backend: string): ConcordError {
  return new ConcordError('ERR_CONNECTION', `the ${backend} connection is closed`);
}

/** A semaphore acquired with another limit than the one its holders and waiters use. */
export function limitMismatch(name: string, asked: number, existing: number): ConcordError {
  return new ConcordError(
    'ERR_INVALID_ARGUMENT',
    `semaphore "${name}" is in use with limit ${String(existing)}; this acquire asked for limit ${String(asked)}`,
  );
}
