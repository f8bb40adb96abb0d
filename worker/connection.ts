// How a worker reaches its coordinator safely: TLS with a pinned certificate (the run's token
// file) or a CA's, and plain ws:// only on this machine.

import { GanDistError } from '../protocol/errors.ts';
import { isLoopbackHost } from '../protocol/wire/tls.ts';

/** What the connection policy needs to know of a worker's options. */
export interface ConnectionTarget {
  url: string;
  /** wss: the SHA-256 fingerprint (from the token file) the coordinator's certificate must have. */
  fingerprint?: string;
  /** wss: a CA certificate (PEM) that signed the coordinator's certificate (--ca). */
  ca?: string;
}

export function tlsOptions(opts: ConnectionTarget): Record<string, unknown> {
  if (!opts.url.startsWith('wss:')) {
    // Plain ws only on this machine: beyond it the weights and gradients would travel in clear
    // and anyone on the path could feed the run; and a pinned certificate means the run is TLS.
    let host = '';
    try {
      host = new URL(opts.url).hostname;
    } catch {
      throw new GanDistError('GAN_DIST_E_CONFIG', `--join: "${opts.url}" is not a URL`, 'e.g. --join wss://host:7070');
    }
    if (opts.fingerprint)
      throw new GanDistError(
        'GAN_DIST_E_AUTH',
        `${opts.url}: the token file pins the coordinator's certificate, but the URL is plain ws://`,
        `join with wss://${opts.url.slice('ws://'.length)}`,
      );
    if (!isLoopbackHost(host))
      throw new GanDistError(
        'GAN_DIST_E_AUTH',
        `${opts.url}: plain ws:// is refused beyond this machine (${host})`,
        'join with wss:// (a coordinator listening beyond loopback always serves TLS)',
      );
    return {};
  }
  if (opts.ca) return { ca: opts.ca };
  if (opts.fingerprint) {
    // A self-signed certificate cannot chain to a CA: its identity is the pinned fingerprint,
    // checked on 'upgrade' before anything is sent.
    return { rejectUnauthorized: false };
  }
  throw new GanDistError(
    'GAN_DIST_E_AUTH',
    `${opts.url}: no way to check the coordinator's certificate`,
    "use the run's token file (it carries the certificate's fingerprint) or --ca FILE for a certificate your CA signed",
  );
}
