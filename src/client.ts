import { ConcordError } from './errors.js';

/**
 * Imports a driver's client library, which is an optional peer dependency: its absence is ERR_DRIVER_UNAVAILABLE
 * naming the package to install, not a module-resolution stack trace.
 */
export async function importClient<T>(pkg: string, scheme: string): Promise<T> {
  try {
    return (await import(pkg)) as T;
  } catch (cause) {
    const code = (cause as { code?: unknown }).code;
    if (code === 'ERR_MODULE_NOT_FOUND' || code === 'MODULE_NOT_FOUND') {
      throw new ConcordError('ERR_DRIVER_UNAVAILABLE', `the ${scheme}: driver needs the "${pkg}" package: npm install ${pkg}`, { cause });
    }
    throw cause;
  }
}
