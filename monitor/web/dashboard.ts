// Starting the dashboard for a run, whoever feeds it: the run's certificate beyond loopback,
// the login link printed (and, for train, written to RUN_DIR/web.url, mode 0600: it is a
// secret until used), and a close that ends every page's stream.

import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { GanDistError } from '../../protocol/errors.ts';
import { writeSecretFile } from '../../protocol/wire/auth.ts';
import { loadTlsIdentity, runTlsIdentity, type TlsIdentity } from '../../protocol/wire/tls.ts';
import type { DashboardFeed } from './feed.ts';
import type { WebLimits } from './limits.ts';
import { DashboardServer } from './server.ts';
import type { WebCredentials } from './sessions.ts';
import type { WebAddress } from './web-address.ts';

export interface DashboardOptions {
  address: WebAddress;
  feed: DashboardFeed;
  title: string;
  credentials: WebCredentials;
  samplePath: (file: string) => string | undefined;
  stop?: (reason: string) => void | Promise<void>;
  /** The run directory whose certificate (tls-cert.pem, made if absent) serves TLS beyond loopback. */
  runDir?: string;
  /** --tls-cert / --tls-key: the user's certificate instead of the run's. */
  tlsCert?: string;
  tlsKey?: string;
  /** Serve TLS on loopback too. */
  tls?: boolean;
  /** Where to write the login link (train: RUN_DIR/web.url). */
  urlFile?: string;
  limits?: Partial<WebLimits>;
}

export interface Dashboard {
  /** The page's origin. */
  origin: string;
  /** The one-time login link (control where the page can Stop, else monitor). */
  loginUrl: string;
  /** SHA-256 of the TLS certificate the page is served with, for the user to check. */
  fingerprint?: string;
  server: DashboardServer;
  close(): Promise<void>;
}

/** The certificate beyond loopback: the user's, the run's, or (a remote watch has no run directory) one made for this process. */
async function identityFor(opts: DashboardOptions): Promise<{ identity?: TlsIdentity; cleanup?: () => Promise<void> }> {
  if (opts.address.loopback && !opts.tls) return {};
  if (opts.tlsCert && opts.tlsKey) return { identity: loadTlsIdentity(opts.tlsCert, opts.tlsKey) };
  if (opts.runDir) return { identity: await runTlsIdentity(opts.runDir) };
  const dir = await mkdtemp(join(tmpdir(), 'gan-dist-web-'));
  return { identity: await runTlsIdentity(dir), cleanup: () => rm(dir, { recursive: true, force: true }) };
}

export async function startDashboard(opts: DashboardOptions): Promise<Dashboard> {
  const { identity, cleanup } = await identityFor(opts);
  const server = new DashboardServer({
    feed: opts.feed,
    title: opts.title,
    credentials: opts.credentials,
    samplePath: opts.samplePath,
    stop: opts.stop,
    host: opts.address.host,
    port: opts.address.port,
    tls: identity,
    limits: opts.limits,
  });
  let origin: string;
  try {
    origin = await server.listen();
  } catch (err) {
    await cleanup?.();
    const e = err as NodeJS.ErrnoException;
    throw new GanDistError(
      'GAN_DIST_E_CONFIG',
      `--web ${opts.address.host}:${opts.address.port}: cannot listen (${e.code ?? e.message})`,
      e.code === 'EADDRINUSE' ? 'pick another port, or port 0 for a free one' : undefined,
    );
  }
  const loginUrl = server.loginUrl(server.canStop ? 'control' : 'monitor');
  if (opts.urlFile) await writeSecretFile(opts.urlFile, `${loginUrl}\n`);
  return {
    origin,
    loginUrl,
    fingerprint: identity?.fingerprint,
    server,
    close: async () => {
      await server.close();
      await cleanup?.();
    },
  };
}

/** What gan-dist prints once the page listens. */
export function dashboardLines(d: Dashboard, urlFile?: string): string[] {
  const lines = [`dashboard: ${d.loginUrl}`];
  lines.push(
    `  (a one-time login link${urlFile ? `, also in ${urlFile}` : ''}; more browsers log in at ${d.origin} with the token= line of monitor.token or control.token)`,
  );
  if (d.fingerprint)
    lines.push(`  TLS certificate SHA-256 ${d.fingerprint} (self-signed: check it when the browser asks)`);
  return lines;
}
