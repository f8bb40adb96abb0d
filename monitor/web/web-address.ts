// The `--web [HOST:]PORT` flag of `gan-dist train` and `gan-dist watch`: where the dashboard
// listens. A bare port means loopback; port 0 picks a free one (the URL printed says which).

import { hostname } from 'node:os';
import { GanDistError } from '../../protocol/errors.ts';
import { isLoopbackHost } from '../../protocol/wire/tls.ts';

export interface WebAddress {
  host: string;
  port: number;
  /** Beyond loopback the page is served over TLS only. */
  loopback: boolean;
}

/** Parses `--web` (`8080`, `127.0.0.1:8080`, `0.0.0.0:0`, `[::1]:8080`); the error names the flag. */
export function parseWebAddress(raw: string, flag = '--web'): WebAddress {
  const text = raw.trim();
  const m = /^(?:(?:\[([^\]]+)\]|([^:[\]]+)):)?(\d{1,5})$/.exec(text);
  const port = m ? Number(m[3]) : Number.NaN;
  if (!m || !(port >= 0 && port <= 65535)) {
    throw new GanDistError(
      'GAN_DIST_E_CONFIG',
      `${flag}: "${raw}" is not [HOST:]PORT`,
      `e.g. ${flag} 8080 (loopback), ${flag} 127.0.0.1:0 (a free port) or ${flag} 0.0.0.0:8080 (every interface, over TLS)`,
    );
  }
  const host = m[1] ?? m[2] ?? '127.0.0.1';
  return { host, port, loopback: isLoopbackHost(host) };
}

/** The origin a browser uses: https beyond loopback, IPv6 in brackets, a wildcard host shown as this machine's name. */
export function originOf(address: { host: string; port: number }, tls: boolean): string {
  const wildcard = address.host === '0.0.0.0' || address.host === '::';
  const host = wildcard ? hostname() : address.host;
  const shown = host.includes(':') && !host.startsWith('[') ? `[${host}]` : host;
  return `${tls ? 'https' : 'http'}://${shown}:${address.port}`;
}
