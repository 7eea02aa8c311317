/**
 * The built-in drivers, one line each. A descriptor is small: each driver's implementation and client library load
 * only when a URL needs them.
 */
import type { DriverDescriptor } from '../src/driver.js';
import { driver as memory } from './memory/index.js';
import { driver as mysql } from './mysql/index.js';
import { driver as postgres } from './postgres/index.js';
import { driver as redis } from './redis/index.js';
import { driver as sqlite } from './sqlite/index.js';
import { driver as etcd } from './etcd/index.js';
import { driver as zookeeper } from './zookeeper/index.js';

export const builtinDrivers: readonly DriverDescriptor[] = [memory, sqlite, redis, etcd, zookeeper, postgres, mysql];
