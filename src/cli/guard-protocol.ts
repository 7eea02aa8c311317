/** The messages between concord and its guard (guard.ts), over the guard's IPC channel. */

/** From concord: signal the whole group, or end it (`first`, unless null, then SIGKILL after `graceMs`). */
export type GuardRequest =
  | { readonly type: 'signal'; readonly signal: NodeJS.Signals }
  | { readonly type: 'stop'; readonly graceMs: number; readonly first: NodeJS.Signals | null };

/** From the guard: the command runs (its pid is its group's id), could not start, exited, or its whole group is gone. */
export type GuardReport =
  | { readonly type: 'spawned'; readonly pid: number }
  | { readonly type: 'error'; readonly code: string; readonly message: string }
  | { readonly type: 'exit'; readonly code: number | null; readonly signal: NodeJS.Signals | null }
  | { readonly type: 'stopped' };
