// `gan-dist watch RUN --web` and `gan-dist watch ws://HOST:PORT --web`: the dashboard for a run
// directory (live or finished; Stop through the coordinator's socket where control.token is
// here) or for a remote coordinator through the monitor connection. Serves until `signal`.

import { dirname, join } from 'node:path';
import type { MonitorTarget } from '../remote.ts';
import { logPathOf } from '../logs.ts';
import { dashboardLines, startDashboard } from './dashboard.ts';
import { DashboardFeed } from './feed.ts';
import { followRunDir, remoteFeed, runDirCredentials, runDirPage, stopThroughEndpoint } from './sources.ts';
import type { WebAddress } from './web-address.ts';
import { existsSync } from 'node:fs';

export interface WatchDashboardOptions {
  address: WebAddress;
  print: (line: string) => void;
  signal: AbortSignal;
  ganDistVersion: string;
  /** Called once the page listens (tests read the login link from it). */
  onListening?: (loginUrl: string) => void;
}

const aborted = (signal: AbortSignal) =>
  new Promise<void>((resolve) => {
    if (signal.aborted) resolve();
    signal.addEventListener('abort', () => resolve(), { once: true });
  });

/** Serves a run directory's page, following its train.log, until `signal`. */
export async function serveRunDirDashboard(
  target: string,
  opts: WatchDashboardOptions & { cwd?: string },
): Promise<void> {
  const runDir = dirname(logPathOf(target, opts.cwd));
  const feed = new DashboardFeed();
  const credentials = await runDirCredentials(runDir);
  const following = new AbortController();
  const followed = followRunDir(runDir, feed, following.signal);
  const dashboard = await startDashboard({
    ...runDirPage(runDir, feed, credentials),
    address: opts.address,
    stop: credentials.controlFile
      ? stopThroughEndpoint(runDir, credentials.controlFile, opts.ganDistVersion)
      : undefined,
    // The run's certificate where it has one; a viewer writes nothing into the run directory.
    runDir: ['tls-cert.pem', 'tls-key.pem'].every((f) => existsSync(join(runDir, f))) ? runDir : undefined,
  }).catch(async (err) => {
    following.abort();
    await followed.catch(() => undefined);
    throw err;
  });
  for (const line of dashboardLines(dashboard)) opts.print(line);
  opts.print('  (Ctrl-C stops serving; the run is not touched)');
  opts.onListening?.(dashboard.loginUrl);
  try {
    await Promise.race([aborted(opts.signal), followed]);
  } finally {
    following.abort();
    await followed.catch(() => undefined);
    await dashboard.close();
  }
}

export interface RemoteDashboardOptions extends WatchDashboardOptions, MonitorTarget {}

/** Serves a remote coordinator's page through the monitor connection, until `signal`. */
export async function serveRemoteDashboard(opts: RemoteDashboardOptions): Promise<void> {
  const feed = new DashboardFeed();
  const { connection, credentials, canStop } = await remoteFeed({
    ...opts,
    feed,
    onClose: (reason) =>
      opts.print(`the coordinator's connection ended: ${reason} (the page keeps the run; Ctrl-C stops serving)`),
  });
  // The coordinator's samples are on its machine; on the same one, the page shows them.
  const samplePath = (file: string) => {
    const path = feed.loggedSamplePath(file);
    return path && existsSync(path) ? path : undefined;
  };
  try {
    const dashboard = await startDashboard({
      address: opts.address,
      feed,
      title: opts.url,
      credentials,
      samplePath,
      stop: canStop ? (reason) => connection.requestStop(reason) : undefined,
    });
    for (const line of dashboardLines(dashboard)) opts.print(line);
    opts.onListening?.(dashboard.loginUrl);
    try {
      await aborted(opts.signal);
    } finally {
      await dashboard.close();
    }
  } finally {
    connection.close();
  }
}
