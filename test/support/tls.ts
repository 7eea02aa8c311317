/**
 * Throwaway certificates for TLS tests, made with the `openssl` command at test time: a CA, a server certificate it
 * signed for DNS:localhost and IP:127.0.0.1, and a second CA that signed nothing (a client trusting only it must
 * refuse the server).
 */
import { execFileSync } from 'node:child_process';
import { lookup } from 'node:dns/promises';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { requireBinary, requireServer, type Availability } from './servers.js';

export interface TestCertificates {
  /** Folder holding every file below; remove() deletes it. */
  readonly dir: string;
  /** PEM of the CA that signed the server certificate. */
  readonly ca: string;
  /** PEM of a CA that signed nothing here. */
  readonly otherCa: string;
  /** The server's certificate and its key (PEM files). */
  readonly server: { readonly cert: string; readonly key: string };
  /** A client certificate the CA signed (for clientAuth) and its key, when asked for. */
  readonly client?: { readonly cert: string; readonly key: string };
  remove(): void;
}

/** The server kind can be started here and `openssl` is installed (under CI a missing one throws, as requireServer). */
export function tlsAvailability(kind: 'postgres' | 'mysql'): Availability {
  const server = requireServer(kind);
  if (!server.ok) return server;
  return requireBinary('openssl', 'apt-get install -y openssl');
}

/**
 * Makes the files in a fresh temporary folder (EC P-256 keys: quick to generate; valid for two days): ca.pem,
 * other-ca.pem, server.pem and server.key, and with \`client\` (its common name) client.pem and client.key.
 */
export function makeCertificates(options: { readonly client?: string } = {}): TestCertificates {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'concord-certs-'));
  const ssl = (args: string[]): void => {
    execFileSync('openssl', args, { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'], timeout: 30_000 });
  };
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  try {
    for (const name of ['ca', 'other-ca']) {
      ssl(['req', '-x509', ...ec, '-keyout', `${name}.key`, '-out', `${name}.pem`, '-days', '2', '-subj', `/CN=concord test ${name}`]);
    }
    fs.writeFileSync(path.join(dir, 'server.ext'), 'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n');
    fs.writeFileSync(path.join(dir, 'client.ext'), 'extendedKeyUsage=clientAuth\n');
    const signed = (who: string, commonName: string): void => {
      ssl(['req', ...ec, '-keyout', `${who}.key`, '-out', `${who}.csr`, '-subj', `/CN=${commonName}`]);
      ssl([
        'x509',
        '-req',
        '-in',
        `${who}.csr`,
        '-CA',
        'ca.pem',
        '-CAkey',
        'ca.key',
        '-CAcreateserial',
        '-out',
        `${who}.pem`,
        '-days',
        '2',
        '-extfile',
        `${who}.ext`,
      ]);
    };
    signed('server', 'localhost');
    if (options.client !== undefined) signed('client', options.client);
  } catch (error) {
    fs.rmSync(dir, { recursive: true, force: true });
    const stderr = (error as { stderr?: Buffer }).stderr?.toString() ?? '';
    throw new Error(`openssl could not make the test certificates: ${(error as Error).message}\n${stderr}`, { cause: error });
  }
  return {
    dir,
    ca: path.join(dir, 'ca.pem'),
    otherCa: path.join(dir, 'other-ca.pem'),
    server: { cert: path.join(dir, 'server.pem'), key: path.join(dir, 'server.key') },
    ...(options.client === undefined ? {} : { client: { cert: path.join(dir, 'client.pem'), key: path.join(dir, 'client.key') } }),
    remove: () => fs.rmSync(dir, { recursive: true, force: true }),
  };
}

/**
 * A host name other than localhost that reaches 127.0.0.1 here (often the machine's own name), to connect by a name
 * the server certificate does not carry; undefined when there is none.
 */
export async function otherLoopbackName(): Promise<string | undefined> {
  const name = os.hostname();
  if (name === '' || name === 'localhost') return undefined;
  try {
    const { address } = await lookup(name, { family: 4 });
    return address === '127.0.0.1' ? name : undefined;
  } catch {
    return undefined;
  }
}
