// `gan-dist watch`: thin command over monitor/watch.ts.

import type { Command } from 'commander';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { requireRole, resolveToken } from '../protocol/wire/auth.ts';
import { watchRemote, watchRun } from '../monitor/watch.ts';
import { integerArg } from './options.ts';
import { serveRemoteDashboard, serveRunDirDashboard } from '../monitor/web/watch-dashboard.ts';
import { parseWebAddress, type WebAddress } from '../monitor/web/web-address.ts';

const { version } = createRequire(import.meta.url)('../package.json') as { version: string };

interface WatchFlags {
  tokenFile?: string;
  ca?: string;
  once?: boolean;
  width?: number;
  height?: number;
  web?: WebAddress;
}

export function registerWatchCommand(program: Command): void {
  program
    .command('watch')
    .description('terminal UI of a run: both scores, progress, workers, the latest sample grid, events')
    .argument('<run>', 'a run directory (e.g. runs/latest), or a coordinator ws://HOST:PORT to watch as a monitor')
    .option(
      '--token-file <file>',
      "with ws:// or wss://: the run's monitor.token (watch) or control.token (watch and Stop), or set GAN_DIST_TOKEN; it pins a wss certificate",
    )
    .option(
      '--ca <file>',
      'wss: trust the coordinator certificate signed by this CA (PEM) instead of a pinned fingerprint',
    )
    .option('--once', 'print one frame and exit (also what happens when stdout is not a terminal)')
    .option('--width <columns>', 'with --once: the frame width (default: the terminal, else 80)', integerArg(1))
    .option('--height <rows>', 'with --once: the frame height (default: the terminal, else 24)', integerArg(1))
    .option(
      '--web <[host:]port>',
      'serve the dashboard page instead of the terminal UI: loopback unless a host is given, then TLS; port 0 picks one',
      (raw: string) => parseWebAddress(raw),
    )
    .action(async (target: string, opts: WatchFlags) => {
      const stop = new AbortController();
      const onSignal = () => stop.abort();
      process.once('SIGTERM', onSignal);
      process.once('SIGHUP', onSignal);
      // The terminal UI reads Ctrl-C as a key; a page server has only the signal.
      if (opts.web) process.once('SIGINT', onSignal);
      const print = (line: string) => console.log(line);
      try {
        if (/^wss?:\/\//.test(target)) {
          const resolved = await resolveToken({ tokenFile: opts.tokenFile });
          requireRole(resolved, ['monitor', 'control'], 'watch');
          const { token, fingerprint } = resolved;
          const ca = opts.ca === undefined ? undefined : readFileSync(opts.ca, 'utf8');
          if (opts.web) {
            const web = { address: opts.web, print, signal: stop.signal, ganDistVersion: version };
            await serveRemoteDashboard({ ...web, url: target, token, credential: resolved.role, fingerprint, ca });
            return;
          }
          await watchRemote({
            url: target,
            token,
            credential: resolved.role,
            fingerprint,
            ca,
            ganDistVersion: version,
            stdout: process.stdout,
            stdin: process.stdin,
            signal: stop.signal,
          });
        } else if (opts.web) {
          await serveRunDirDashboard(target, {
            address: opts.web,
            print,
            signal: stop.signal,
            ganDistVersion: version,
          });
        } else {
          await watchRun({
            target,
            once: opts.once,
            width: opts.width,
            height: opts.height,
            stdout: process.stdout,
            stdin: process.stdin,
            signal: stop.signal,
          });
        }
      } finally {
        process.off('SIGTERM', onSignal);
        process.off('SIGHUP', onSignal);
        process.off('SIGINT', onSignal);
      }
    });
}
