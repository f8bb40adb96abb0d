// `gan-dist train --web`: the dashboard fed in-process by every line the run logs (no file to
// poll: a line reaches the page as it is written), started once the coordinator exists, its
// Stop the coordinator's; closed when train() returns, after the run's last line was sent.

import type { WebAddress } from './web-address.ts';
import { DashboardFeed } from './feed.ts';
import { dashboardLines, startDashboard, type Dashboard } from './dashboard.ts';
import { parseLogLine } from '../log-reader.ts';
import { runDirCredentials, runDirPage } from './sources.ts';
import { join } from 'node:path';

export interface TrainDashboardOptions {
  address: WebAddress;
  print: (line: string) => void;
  /** Keeps the page's address in view (the terminal UI's header), where print's lines scroll away. */
  pin?: (text: string) => void;
  tls?: boolean;
  tlsCert?: string;
  tlsKey?: string;
}

/** What the dashboard needs of the coordinator. */
export interface StoppableRun {
  requestStop(reason?: string): void;
  fail(err: Error): void;
}

export interface TrainDashboardHooks {
  /** train()'s onLogLine: every serialized line of train.log. */
  onLogLine: (line: string) => void;
  /** train()'s onCoordinator: starts the page. */
  onCoordinator: (coordinator: StoppableRun, runDir: string) => void;
  /** Ends every page's stream and closes the server. */
  close: () => Promise<void>;
}

export function trainDashboardHooks(opts: TrainDashboardOptions): TrainDashboardHooks {
  const feed = new DashboardFeed();
  let starting: Promise<Dashboard | undefined> | undefined;
  return {
    onLogLine: (line) => {
      // Called from inside the logger's write: whatever the page makes of a line, the log goes on.
      try {
        feed.push(parseLogLine(line.trimEnd()));
      } catch {}
    },
    onCoordinator: (coordinator, runDir) => {
      if (starting) return;
      const urlFile = join(runDir, 'web.url');
      starting = (async () => {
        const credentials = await runDirCredentials(runDir);
        const dashboard = await startDashboard({
          ...runDirPage(runDir, feed, credentials),
          address: opts.address,
          stop: (reason) => coordinator.requestStop(reason),
          runDir,
          tls: opts.tls,
          tlsCert: opts.tlsCert,
          tlsKey: opts.tlsKey,
          urlFile,
        });
        for (const line of dashboardLines(dashboard, urlFile)) opts.print(line);
        opts.pin?.(`dashboard ${dashboard.origin} (login link in web.url)`);
        return dashboard;
      })().catch((err: Error) => {
        // The page was asked for and cannot be: the run does not go on without it.
        coordinator.fail(err);
        return undefined;
      });
    },
    close: async () => {
      const dashboard = await starting;
      await dashboard?.close();
    },
  };
}
