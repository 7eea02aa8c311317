/**
 * The etcd key layout. Every name is percent-encoded into one path segment, so a '/' inside a group or lock name can
 * never make one prefix contain another (group "a" must not see the members of group "a/b").
 *
 *   <ns>/groups/<group>                      group marker
 *   <ns>/members/<group>/<member>            membership, on the session lease, value = JSON capabilities
 *   <ns>/locks/<kind>/<name>/<lease hex>     one contender, on the session lease, value = member id
 *   <ns>/sessions/<lease hex>                one per session, on its lease, value = member id: watched, so a revoked
 *                                            or expired lease is heard of at once
 */
import type { LockKind } from '../../src/driver.js';

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
