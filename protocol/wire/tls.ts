// TLS for connections beyond loopback: the user's certificate, or a self-signed one made for the
// run (kept in the run directory, so a resume keeps its identity) whose SHA-256 fingerprint goes
// into the token file for workers to pin.

import { X509Certificate } from 'node:crypto';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { GanDistError } from '../errors.ts';
import { writeSecretFile } from './auth.ts';

/**
 * Whether `host` is this machine's loopback, the one place plain ws is allowed: the coordinator
 * serves TLS beyond it, and a worker refuses ws:// beyond it. IPv6 in either form ("::1", "[::1]").
 */
export function isLoopbackHost(host: string): boolean {
  return ['127.0.0.1', 'localhost', '::1'].includes(host.replace(/^\[(.*)\]$/, '$1'));
}

export interface TlsIdentity {
  cert: string;
  key: string;
  /** SHA-256 of the certificate's DER bytes, 64 lowercase hex digits. */
  fingerprint: string;
  /** 'run' for a self-signed certificate made for the run, else the user's certificate file. */
  source: string;
}

export function fingerprintOf(certPem: string): string {
  return new X509Certificate(certPem).fingerprint256.replaceAll(':', '').toLowerCase();
}

/** The user's --tls-cert / --tls-key. */
export function loadTlsIdentity(certFile: string, keyFile: string): TlsIdentity {
  let cert: string;
  let key: string;
  try {
    cert = readFileSync(certFile, 'utf8');
    key = readFileSync(keyFile, 'utf8');
    return { cert, key, fingerprint: fingerprintOf(cert), source: certFile };
  } catch (err) {
    throw new GanDistError(
      'GAN_DIST_E_CONFIG',
      `--tls-cert ${certFile} / --tls-key ${keyFile}: cannot use them (${(err as Error).message})`,
      'give a PEM certificate and its PEM private key',
    );
  }
}

/** The run's own self-signed certificate: made once, then reused from the run directory. */
export async function runTlsIdentity(runDir: string): Promise<TlsIdentity> {
  const certFile = path.join(runDir, 'tls-cert.pem');
  const keyFile = path.join(runDir, 'tls-key.pem');
  if (existsSync(certFile) && existsSync(keyFile)) {
    // As a token file: a private key group or others can read is no longer private.
    const mode = statSync(keyFile).mode & 0o777;
    if (mode & 0o077) {
      throw new GanDistError(
        'GAN_DIST_E_AUTH',
        `${keyFile} can be read by group or others (mode ${mode.toString(8).padStart(4, '0')}), so the run's TLS key is not private`,
        `chmod 600 ${keyFile}, or delete it and the certificate beside it for a new pair (workers then need the new token file)`,
      );
    }
    const cert = readFileSync(certFile, 'utf8');
    return { cert, key: readFileSync(keyFile, 'utf8'), fingerprint: fingerprintOf(cert), source: 'run' };
  }
  const { generate } = await import('selfsigned');
  const pems = await generate([{ name: 'commonName', value: 'gan-dist coordinator' }], {
    notAfterDate: new Date(Date.now() + 3650 * 864e5),
    keyType: 'ec',
    curve: 'P-256',
  });
  // The key first, synced and renamed into place: a crash leaves either no pair or a whole key.
  await writeSecretFile(keyFile, pems.private);
  await writeFile(certFile, pems.cert);
  return { cert: pems.cert, key: pems.private, fingerprint: fingerprintOf(pems.cert), source: 'run' };
}
