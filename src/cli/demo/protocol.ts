/**
 * Messages between `concord demo` and its workers, over the IPC channel of each worker process: the workers ask the
 * demo's ledger (ledger.ts) whether a task is done, under the task's lock (claim), and report completions (done).
 */

export type ToWorker =
  | { readonly type: 'start'; readonly members: readonly string[] }
  | { readonly type: 'claimed'; readonly id: number; readonly done: boolean }
  | { readonly type: 'recorded'; readonly id: number; readonly accepted: boolean }
  | { readonly type: 'finish' };

export type FromWorker =
  | { readonly type: 'ready'; readonly member: string; readonly pid: number; readonly scope: string }
  /** Outside the lock, a hint only: is the task done already? Saves taking the lock of a task that is. */
  | { readonly type: 'peek'; readonly id: number; readonly task: number }
  | { readonly type: 'claim'; readonly id: number; readonly task: number; readonly token: string }
  | { readonly type: 'done'; readonly id: number; readonly task: number; readonly token: string; readonly digest: string }
  | { readonly type: 'fail'; readonly message: string };

/** The key a task is placed by, and the lock around it. */
export function taskKey(task: number): string {
  return `task-${task}`;
}

export function taskLock(group: string, task: number): string {
  return `${group}/${taskKey(task)}`;
}

export function isFromWorker(value: unknown): value is FromWorker {
  return typeof value === 'object' && value !== null && typeof (value as { type?: unknown }).type === 'string';
}

export function isToWorker(value: unknown): value is ToWorker {
  return typeof value === 'object' && value !== null && typeof (value as { type?: unknown }).type === 'string';
}
