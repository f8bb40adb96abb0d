// What feeds the dashboard: a run directory (its train.log followed as it grows, or replayed
// when finished; its own credentials; Stop through the coordinator's monitor socket, with the
// run's control.token) or a remote coordinator's monitor connection. `gan-dist train` feeds its
// own lines in-process instead (train-dashboard.ts).

import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { GanDistError } from '../../protocol/errors.ts';
import { monitorTokenOf, readTokenFile, type ResolvedToken } from '../../protocol/wire/auth.ts';
import { runDirLayout } from '../../protocol/run/run-dir.ts';
import { followLog } from '../follow.ts';
import { classifyRecord, parseLogLine } from '../log-reader.ts';
import { connectMonitor, type MonitorConnection, type MonitorTarget } from '../remote.ts';
import type { DashboardFeed } from './feed.ts';
import type { WebCredentials } from './sessions.ts';

/** The run directory's secrets that may log in to its page; an older run's one `token` is control's. */
export async function runDirCredentials(runDir: string): Promise<WebCredentials & { controlFile?: ResolvedToken }> {
  const layout = runDirLayout(runDir);
  const read = async (path: string) => (existsSync(path) ? await readTokenFile(path) : undefined);
  const control = (await read(layout.roleTokenPaths.control)) ?? (await read(layout.tokenPath));
  const monitor = await read(layout.roleTokenPaths.monitor);
  return {
    control: control?.token,
    monitor: monitor?.token ?? (control && control.role === 'control' ? monitorTokenOf(control.token) : undefined),
    controlFile: control,
  };
}

/** What every page of a run directory shows: its log's fold, titled by the directory, its secrets, its sample grids. */
export function runDirPage(runDir: string, feed: DashboardFeed, credentials: WebCredentials) {
  return {
    feed,
    title: runDir,
    credentials: { monitor: credentials.monitor, control: credentials.control },
    samplePath: runDirSamples(runDir),
  };
}

/** A sample grid of the run directory (where it is now: the run may have moved since its log was written). */
export function runDirSamples(runDir: string): (file: string) => string | undefined {
  const dir = runDirLayout(runDir).samplesDir;
  return (file) => {
    const path = join(dir, file);
    return existsSync(path) ? path : undefined;
  };
}

/** Feeds `feed` from the run's train.log until `signal` aborts. */
export function followRunDir(runDir: string, feed: DashboardFeed, signal: AbortSignal): Promise<void> {
  return followLog(runDirLayout(runDir).logPath, {
    follow: true,
    signal,
    onLines: (lines) => {
      for (const line of lines) feed.push(parseLogLine(line));
    },
  });
}

/**
 * Stop for a run directory's page: a monitor connection to the coordinator at RUN_DIR/endpoint,
 * proved with control.token (which pins a wss certificate), that asks it to stop and leaves.
 */
export function stopThroughEndpoint(
  runDir: string,
  control: ResolvedToken,
  ganDistVersion: string,
): (reason: string) => Promise<void> {
  return async (reason) => {
    const endpointPath = runDirLayout(runDir).endpointPath;
    const endpoint = existsSync(endpointPath) ? readFileSync(endpointPath, 'utf8').trim() : '';
    if (!endpoint) throw new GanDistError('GAN_DIST_E_RUN_DIR', `${runDir} has no endpoint: the run is not live`);
    // A coordinator on every interface is reached on this machine's loopback.
    const local = endpoint.replace(/^(0\.0\.0\.0|\[::\]):/, '127.0.0.1:');
    const conn = await connectMonitor({
      url: `${control.fingerprint ? 'wss' : 'ws'}://${local}`,
      token: control.token,
      fingerprint: control.fingerprint,
      ganDistVersion,
      onLine: () => {},
      onClose: () => {},
    });
    conn.requestStop(reason);
    // Asked; the run's log says when it stops. The frame is flushed before the socket closes.
    setTimeout(() => conn.close(), 1000).unref();
  };
}

export interface RemoteFeedOptions extends MonitorTarget {
  feed: DashboardFeed;
  onClose: (reason: string) => void;
}

/** Feeds `feed` from a coordinator's monitor connection; the page's secrets are the one held (and, for control, its monitor secret). */
export async function remoteFeed(
  opts: RemoteFeedOptions,
): Promise<{ connection: MonitorConnection; credentials: WebCredentials; canStop: boolean }> {
  const connection = await connectMonitor({
    url: opts.url,
    token: opts.token,
    fingerprint: opts.fingerprint,
    ca: opts.ca,
    ganDistVersion: opts.ganDistVersion,
    onLine: (line) => opts.feed.push(classifyRecord(line)),
    onClose: opts.onClose,
  });
  // A token of no role (an older run's, GAN_DIST_TOKEN) may Stop: the coordinator decides.
  const canStop = opts.credential !== 'monitor';
  const credentials: WebCredentials = canStop
    ? { control: opts.token, monitor: monitorTokenOf(opts.token) }
    : { monitor: opts.token };
  return { connection, credentials, canStop };
}
