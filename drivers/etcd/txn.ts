/**
 * The parts etcd transactions are built of here: the comparisons a write is guarded by, the reads that ride along,
 * and the readers of their answers.
 */
import type { ICompare, IKeyValue, IRequestOp, ITxnResponse } from 'etcd3';
import { prefixEnd, type KeyRange } from './keys.js';

/** etcd 3.3+ compares a whole key range; the package's typings predate the field. */
export type Compare = ICompare & { range_end?: Buffer };

/** What a transaction asks: the guards, and what runs when they all hold (success) or not (failure). */
export interface TxnRequest {
  readonly compare?: Compare[];
  readonly success?: IRequestOp[];
  readonly failure?: IRequestOp[];
}

export const b = (key: string): Buffer => Buffer.from(key);

/** The key exists. */
export const exists = (key: string): Compare => ({ key: b(key), target: 'Version', result: 'Greater', version: 0 });

/** The key does not exist. */
export const absent = (key: string): Compare => ({ key: b(key), target: 'Create', result: 'Equal', create_revision: 0 });

/** The key exists with this create revision: the very key we wrote, not a later one of the same name. */
export const createdAt = (key: string, revision: bigint): Compare => ({
  key: b(key),
  target: 'Create',
  result: 'Equal',
  create_revision: revision.toString(),
});

/** The key hangs off this lease. */
export const onLease = (key: string, lease: string): Compare => ({ key: b(key), target: 'Lease', result: 'Equal', lease });

/** True when no key starts with `prefix` (an empty range compares like a missing key: version 0). */
export const emptyPrefix = (prefix: string): Compare => ({
  key: b(prefix),
  range_end: prefixEnd(prefix),
  target: 'Version',
  result: 'Equal',
  version: 0,
});

/** True when no key lies in the range. */
export const emptyRange = (range: KeyRange): Compare => ({
  key: b(range.start),
  range_end: range.end,
  target: 'Version',
  result: 'Equal',
  version: 0,
});

/** True when no key under `prefix` was created or changed after `revision`. */
export const unchangedSince = (prefix: string, revision: bigint): Compare => ({
  key: b(prefix),
  range_end: prefixEnd(prefix),
  target: 'Mod',
  result: 'Less',
  mod_revision: (revision + 1n).toString(),
});

/** Reads one key (or only whether it exists). */
export const get = (key: string, countOnly = false): IRequestOp => ({ request_range: { key: b(key), count_only: countOnly } });

/**
 * Reads the first `limit` keys under `prefix` (or in [prefix, end)) by create revision, optionally only those created up
 * to `maxCreate`.
 */
export const lowest = (prefix: string, order: 'Ascend' | 'Descend', limit: number, maxCreate?: bigint, end?: Buffer): IRequestOp => ({
  request_range: {
    key: b(prefix),
    range_end: end ?? prefixEnd(prefix),
    sort_target: 'Create',
    sort_order: order,
    limit,
    max_create_revision: maxCreate?.toString(),
  },
});

/**
 * Reads the keys (names only) in a range, optionally only those created up to `maxCreate`. (etcd's count ignores that
 * filter, so counting what is ahead of a key needs the keys.)
 */
export const keysIn = (range: KeyRange, maxCreate?: bigint, limit?: number): IRequestOp => ({
  request_range: { key: b(range.start), range_end: range.end, keys_only: true, max_create_revision: maxCreate?.toString(), limit },
});

/** Counts the keys under `prefix`. */
export const count = (prefix: string): IRequestOp => ({
  request_range: { key: b(prefix), range_end: prefixEnd(prefix), count_only: true },
});

/** Deletes one key. */
export const del = (key: string): IRequestOp => ({ request_delete_range: { key: b(key) } });

/** The keys the `index`th request of the taken branch read. */
export function kvsOf(response: ITxnResponse, index: number): IKeyValue[] {
  return response.responses[index]?.response_range.kvs ?? [];
}

/** The count the `index`th request of the taken branch read. */
export function countOf(response: ITxnResponse, index: number): number {
  return Number(response.responses[index]?.response_range.count ?? '0');
}
