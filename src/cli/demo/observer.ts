/**
 * The demo's own view of its group, as a member that only watches: it places the tasks on the members it sees, as
 * the workers do, to show each worker's share and to see the killed worker leave.
 */
import { HashRing, Rendezvous, ToozHashRing, type Placement } from '../../placement/index.js';
import type { Coordinator, GroupEvent, GroupWatch } from '../../types.js';
import { taskKey } from './protocol.js';

function placementFor(algorithm: string): Placement {
  if (algorithm === 'ring') return new HashRing();
  if (algorithm === 'tooz') return new ToozHashRing();
  return new Rendezvous();
}

export class Observer {
  readonly #placement: Placement;
  readonly #taskCount: number;
  readonly #owner: Array<string | undefined>;
  #watch: GroupWatch | undefined;
  #watching: Promise<void> | undefined;

  constructor(algorithm: string, taskCount: number) {
    this.#placement = placementFor(algorithm);
    this.#taskCount = taskCount;
    this.#owner = new Array<string | undefined>(taskCount + 1).fill(undefined);
  }

  /** Follows the group: `onEvent` runs after each event is applied; `onError` if the watch fails. */
  follow(coordinator: Coordinator, group: string, onEvent: (event: GroupEvent) => void, onError: (error: unknown) => void): void {
    const watch = coordinator.group(group).watch({ initial: true });
    this.#watch = watch;
    this.#watching = (async () => {
      for await (const event of watch) {
        if (event.type === 'leave') this.#placement.remove(event.member);
        else {
          const weight = event.capabilities.weight;
          this.#placement.add(event.member, typeof weight === 'number' && weight > 0 ? weight : 1);
        }
        for (let task = 1; task <= this.#taskCount; task++) this.#owner[task] = this.#placement.get(taskKey(task));
        onEvent(event);
      }
    })().catch(onError);
  }

  isMember(member: string): boolean {
    return this.#placement.has(member);
  }

  owner(task: number): string | undefined {
    return this.#owner[task];
  }

  /** Per member: the tasks it owns now, and how many of them are done. */
  holdings(isDone: (task: number) => boolean): Map<string, { total: number; done: number }> {
    const owned = new Map<string, { total: number; done: number }>();
    for (let task = 1; task <= this.#taskCount; task++) {
      const member = this.#owner[task];
      if (member === undefined) continue;
      const entry = owned.get(member) ?? { total: 0, done: 0 };
      entry.total++;
      if (isDone(task)) entry.done++;
      owned.set(member, entry);
    }
    return owned;
  }

  async close(): Promise<void> {
    await this.#watch?.close().catch(() => undefined);
    await this.#watching;
  }
}
