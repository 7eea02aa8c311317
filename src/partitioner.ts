import { ConcordError } from './errors.js';
import type { Group, Partitioner, PartitionerOptions } from './types.js';

export interface PartitionerHost {
  assertOpen(): void;
}

export function openPartitioner(host: PartitionerHost, _group: Group, _options?: PartitionerOptions): Promise<Partitioner> {
  host.assertOpen();
  return Promise.reject(new ConcordError('ERR_NOT_SUPPORTED', 'the partitioner is not available yet'));
}
