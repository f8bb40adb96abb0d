// `gan-dist watch`: the terminal UI over a local run directory (following a live run, replaying a
// finished one; q quits the viewer, the run is not touched) or over a coordinator's address as a
// monitor peer (with control.token q asks the coordinator to stop the run; d leaves it running).

import { existsSync } from 'node:fs';
import { basename, join } from 'node:path';
import type { CredentialRole } from '../protocol/wire/auth.ts';
import type { ColorMode } from './ansi.ts';
import { followLog } from './follow.ts';
import type { TerminalIn } from './keys.ts';
import { classifyRecord, parseLogLine } from './log-reader.ts';
import { logPathOf } from './logs.ts';
import { connectMonitor, type MonitorTarget } from './remote.ts';
import type { TerminalOut } from './screen.ts';
import { WatchUi } from './watch-ui.ts';

export interface WatchTerminal {
  stdout: TerminalOut;
  stdin?: TerminalIn;
  colorMode?: ColorMode;
}

/** Where a sample named in a run's log is on this machine: in the run's samples/ (the run may have moved), else where the log says. */
export function sampleLocator(runDir: string): (path: string) => string | undefined {
  return (path) => {
    const inRun = join(runDir, 'samples', basename(path));
    if (existsSync(inRun)) return inRun;
    return existsSync(path) ? path : undefined;
  };
}

export interface WatchRunOptions extends WatchTerminal {
  target: string;
  cwd?: string;
  /** Print one frame and return (also what happens without a terminal). */
  once?: boolean;
  width?: number;
  height?: number;
  signal?: AbortSignal;
}

/** Watches a local run directory until q, Ctrl-C or `signal`; with `once`, prints one frame. */
export async function watchRun(opts: WatchRunOptions): Promise<void> {
  const logPath = logPathOf(opts.target, opts.cwd);
  const runDir = join(logPath, '..');
  const interactive = !opts.once && opts.stdout.isTTY === true;
  const stop = new AbortController();
  opts.signal?.addEventListener('abort', () => stop.abort(), { once: true });
  const ui = new WatchUi({
    stdout: opts.stdout,
    stdin: opts.stdin,
    title: opts.target,
    keys: ' q quit ',
    // Colour on a terminal (or when asked); a frame written to a file or pipe is plain text.
    colorMode: opts.colorMode ?? (interactive ? undefined : 'none'),
    locateSample: sampleLocator(runDir),
    onKey: (key) => {
      if (key === 'quit' || key === 'interrupt' || key === 'detach') stop.abort();
    },
  });
  if (!interactive) {
    await followLog(logPath, { follow: false, onLines: (lines) => ui.feed(lines.map(parseLogLine)) });
    await ui.settled();
    opts.stdout.write(
      `${ui.frame(opts.width ?? opts.stdout.columns ?? 80, opts.height ?? opts.stdout.rows ?? 24).join('\n')}\n`,
    );
    return;
  }
  ui.start();
  try {
    await followLog(logPath, {
      follow: true,
      signal: stop.signal,
      onLines: (lines) => ui.feed(lines.map(parseLogLine)),
    });
  } finally {
    ui.stop();
  }
}

export interface WatchRemoteOptions extends WatchTerminal, MonitorTarget {
  signal?: AbortSignal;
}

/** The keys line of a remote watch: what q does depends on the credential. */
export function remoteKeys(credential: CredentialRole | undefined): string {
  return credential === 'monitor'
    ? ' q/d leave  (watch only: Stop needs control.token) '
    : ' q stop the run  d detach ';
}

/**
 * Watches a coordinator as a monitor peer. q (or Ctrl-C) asks it to stop the run, then keeps
 * showing the run until it ends; pressed again, or d at any time, leaves the viewer. With a
 * monitor credential, which cannot Stop, q leaves at once; a Stop the coordinator refuses (a
 * token of unknown role) is shown in the status line.
 */
export async function watchRemote(opts: WatchRemoteOptions): Promise<void> {
  const leave = new AbortController();
  opts.signal?.addEventListener('abort', () => leave.abort(), { once: true });
  let stopAsked = false;
  let connected = true;
  const ui = new WatchUi({
    stdout: opts.stdout,
    stdin: opts.stdin,
    title: opts.url,
    keys: remoteKeys(opts.credential),
    colorMode: opts.colorMode,
    onKey: (key) => {
      if (key === 'detach' || !connected || stopAsked || opts.credential === 'monitor') return leave.abort();
      if (key === 'quit' || key === 'interrupt') {
        stopAsked = true;
        conn.requestStop('q pressed in gan-dist watch');
        ui.keys = ' q/d leave ';
        ui.setStatus('stop requested: the coordinator finishes the iteration and writes a checkpoint');
      }
    },
  });
  const conn = await connectMonitor({
    url: opts.url,
    token: opts.token,
    fingerprint: opts.fingerprint,
    ca: opts.ca,
    ganDistVersion: opts.ganDistVersion,
    onLine: (line) => ui.feed([classifyRecord(line)]),
    onRefused: (message) => {
      ui.keys = ' q/d leave ';
      ui.setStatus(message);
    },
    onClose: (reason) => {
      connected = false;
      // A coordinator closes its monitors' connections while stopping: the run has ended there.
      if (ui.view.state === 'stopping') ui.view.finished = true;
      ui.keys = ' q leave ';
      ui.setStatus(ui.view.state === 'stopping' || ui.view.finished ? `the run has ended; ${reason}` : reason);
    },
  });
  ui.start();
  try {
    await new Promise<void>((resolve) => {
      if (leave.signal.aborted) resolve();
      leave.signal.addEventListener('abort', () => resolve(), { once: true });
    });
  } finally {
    conn.close();
    ui.stop();
  }
}
