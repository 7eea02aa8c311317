/**
 * The parts etcd transactions are built of here: the comparisons a write is guarded by, the reads that ride along,
 * and the readers of their answers.
 */
import type { ICompare, IKeyValue, IRequestOp, ITxnResponse } from 'etcd3';
import { prefixEnd } from './keys.js';

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

/** Reads one key (or only whether it exists). */
export const get = (key: string, countOnly = false): IRequestOp => ({ request_range: { key: b(key), count_only: countOnly } });

/** Reads the first `limit` keys under `prefix` by create revision, optionally only those created up to `maxCreate`. */
export const lowest = (prefix: string, order: 'Ascend' | 'Descend', limit: number, maxCreate?: bigint): IRequestOp => ({
  request_range: {
    key: b(prefix),
    range_end: prefixEnd(prefix),
    sort_target: 'Create',
    sort_order: order,
    limit,
    max_create_revision: maxCreate?.toString(),
  },
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
