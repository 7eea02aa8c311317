/**
 * Where everything lives, under the chroot and the namespace:
 *
 *   <root>/groups/<group>                 persistent; its children:
 *            m.<member>                    ephemeral, the member's capabilities (JSON)
 *            e.<seq>                       persistent sequential, one per join / update / leave: the change log
 *            t.<seq>                       persistent: log entries up to <seq> were trimmed
 *   <root>/locks/<name>/<session>-<seq>    ephemeral sequential contenders, data = member id; lowest holds
 *   <root>/locks/<name>/<session>-s<slot>-<seq>
 *                                          a shared hold in the same line (line.ts has the grant rule)
 *   <root>/semaphores/<name>/<session>-s<slot>.l<limit>-<seq>
 *                                          a semaphore permit
 *   <root>/leaders/<group>/<session>-<seq> the same as a lock's, for leadership
 *
 * A lock's, semaphore's or leadership's own node (<root>/locks/<name>) is a container: the server removes it once
 * its line has emptied, so names used once leave nothing behind. Everything else is persistent or ephemeral.
 *
 * Names are percent-encoded (as URI components, plus '.' and '*'), so any name, slashes included, is one node.
 */
import type { LockKind } from '../../src/driver.js';

export function encodeName(name: string): string {
  return encodeURIComponent(name).replace(/[.*!'()~]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
}

export function decodeName(node: string): string {
  return decodeURIComponent(node);
}

export const MEMBER = 'm.';

/** Each kind of lock in a key space of its own. */
const KINDS: Readonly<Record<LockKind, string>> = { lock: 'locks', leader: 'leaders', semaphore: 'semaphores' };
export const ENTRY = 'e.';
export const TRIMMED = 't.';

/** The sequence number ZooKeeper appended to a sequential node's name (ten digits, or more past 2^31). */
export function sequenceOf(node: string): number {
  const match = /(\d+)$/.exec(node);
  return match ? Number(match[1]) : -1;
}

export class Paths {
  readonly root: string;
  readonly groups: string;

  constructor(chroot: string, namespace: string) {
    this.root = `${chroot}/${encodeName(namespace)}`;
    this.groups = `${this.root}/groups`;
  }

  group(group: string): string {
    return `${this.groups}/${encodeName(group)}`;
  }

  member(group: string, member: string): string {
    return `${this.group(group)}/${MEMBER}${encodeName(member)}`;
  }

  entry(group: string): string {
    return `${this.group(group)}/${ENTRY}`;
  }

  kind(kind: LockKind): string {
    return `${this.root}/${KINDS[kind]}`;
  }

  lock(kind: LockKind, name: string): string {
    return `${this.kind(kind)}/${encodeName(name)}`;
  }

  /** Every ancestor of `path` below the filesystem root, outermost first. */
  static ancestors(path: string): string[] {
    const parts = path.split('/').filter((p) => p !== '');
    return parts.slice(0, -1).map((_p, i) => `/${parts.slice(0, i + 1).join('/')}`);
  }
}
