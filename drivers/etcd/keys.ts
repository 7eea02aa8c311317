/**
 * The etcd key layout. Every name is percent-encoded into one path segment, so a '/' inside a group or lock name can
 * never make one prefix contain another (group "a" must not see the members of group "a/b").
 *
 *   <ns>/groups/<group>                      group marker
 *   <ns>/members/<group>/<member>            membership, on the session lease, value = JSON capabilities
 *   <ns>/locks/<kind>/<name>/<lease hex>     one contender, on the session lease, value = member id, or for a request
 *                                            that entered the line to wait, member id "\n" when (see contenderValue):
 *                                            an exclusive lock or leadership (slot 0)
 *   <ns>/locks/lock/<name>/shared/<lease hex>/<slot>
 *                                            a shared hold of a lock, in the same line (no hex digit starts "shared",
 *                                            so the exclusive requests are the range <name>/0 .. <name>/g)
 *   <ns>/locks/semaphore/<name>/<limit>/<lease hex>/<slot>
 *                                            a semaphore permit; its limit in the key, so "no request with another
 *                                            limit" is a comparison of two key ranges
 *   <ns>/sessions/<lease hex>                one per session, on its lease, value = member id: watched, so a revoked
 *                                            or expired lease is heard of at once
 */
import type { LockKind, LockMode } from '../../src/driver.js';

const enc = encodeURIComponent;

export class Keys {
  readonly root: string;

  constructor(namespace: string) {
    this.root = `${enc(namespace)}/`;
  }

  get groups(): string {
    return `${this.root}groups/`;
  }

  group(group: string): string {
    return `${this.groups}${enc(group)}`;
  }

  /** Name of a group from its marker key. */
  groupName(key: string): string {
    return decodeURIComponent(key.slice(this.groups.length));
  }

  members(group: string): string {
    return `${this.root}members/${enc(group)}/`;
  }

  member(group: string, member: string): string {
    return `${this.members(group)}${enc(member)}`;
  }

  /** Member id from a membership key under `members(group)`. */
  memberName(group: string, key: string): string {
    return decodeURIComponent(key.slice(this.members(group).length));
  }

  session(lease: bigint): string {
    return `${this.root}sessions/${leaseHex(lease)}`;
  }

  /** Where every lock's contenders live. */
  get allLocks(): string {
    return `${this.root}locks/`;
  }

  locks(kind: LockKind, name: string): string {
    return `${this.allLocks}${kind}/${enc(name)}/`;
  }

  /** The lock a contender key under `allLocks` belongs to. */
  lockOf(key: string): [LockKind, string] {
    const [kind = '', name = ''] = key.slice(this.allLocks.length).split('/');
    return [kind as LockKind, decodeURIComponent(name)];
  }

  contender(kind: LockKind, name: string, lease: bigint): string {
    return `${this.locks(kind, name)}${leaseHex(lease)}`;
  }

  /** A shared hold's or a permit's key (exclusive requests use `contender`). */
  request(kind: LockKind, name: string, lease: bigint, mode: LockMode): string {
    if (kind === 'semaphore') return `${this.permits(name, mode.limit)}${leaseHex(lease)}/${String(mode.slot)}`;
    return `${this.locks(kind, name)}shared/${leaseHex(lease)}/${String(mode.slot)}`;
  }

  /** Where the permits of a semaphore with this limit live. */
  permits(name: string, limit: number): string {
    return `${this.locks('semaphore', name)}${String(limit)}/`;
  }

  /** The session (lease hex) a request key under `allLocks` belongs to. */
  leaseOf(key: string): string {
    const parts = key.slice(this.allLocks.length).split('/');
    // kind / name / lease, or kind / name / (shared | limit) / lease / slot
    return (parts.length === 3 ? parts[2] : parts[3]) ?? '';
  }
}

/**
 * A contender key's value. etcd keeps no time of its own for a key, so a request that enters the line to wait (the
 * queued path: acquire, not tryLock) records when it did, in ms since the epoch by its host's clock, after the member
 * id and a newline: locks() tells the first waiter's wait from it. A member id has no control characters, so the first
 * newline ends it.
 */
export function contenderValue(member: string, enteredMs?: number): string {
  return enteredMs === undefined ? member : `${member}\n${String(Math.round(enteredMs))}`;
}

/** A contender key's value read back: the member id, and when it entered the line if it says (an older release's does not). */
export function parseContender(value: string): { member: string; enteredMs?: number } {
  const newline = value.indexOf('\n');
  if (newline < 0) return { member: value };
  const member = value.slice(0, newline);
  const enteredMs = Number(value.slice(newline + 1));
  return Number.isSafeInteger(enteredMs) ? { member, enteredMs } : { member };
}

/** A key range [start, end). */
export interface KeyRange {
  readonly start: string;
  readonly end: Buffer;
}

/** Every key starting with `prefix`. */
export function prefixRange(prefix: string): KeyRange {
  return { start: prefix, end: prefixEnd(prefix) };
}

/** The exclusive requests of a lock under `prefix`: the keys that are a lease in hex (shared ones start with "shared/"). */
export function exclusiveRange(prefix: string): KeyRange {
  return { start: `${prefix}0`, end: Buffer.from(`${prefix}g`) };
}

/** How a request under a lock's `prefix` holds, from its key: see the layout above. */
export function modeOf(kind: LockKind, prefix: string, key: string): { shared: boolean; limit: number } {
  const rest = key.slice(prefix.length);
  if (kind === 'semaphore') return { shared: true, limit: Number.parseInt(rest, 10) };
  return { shared: rest.startsWith('shared/'), limit: 0 };
}

/** Fixed width, like etcd's own concurrency package, so every contender key of a lock has the same length. */
export function leaseHex(lease: bigint): string {
  return lease.toString(16).padStart(16, '0');
}

/** The end of the range of every key starting with `prefix` (etcd's "prefix + 1"). */
export function prefixEnd(prefix: string): Buffer {
  const end = Buffer.from(prefix);
  for (let i = end.length - 1; i >= 0; i--) {
    const byte = end[i] ?? 0;
    if (byte < 0xff) {
      end[i] = byte + 1;
      return end.subarray(0, i + 1);
    }
  }
  return Buffer.from([0]);
}
