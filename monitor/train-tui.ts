// `gan-dist train`'s own terminal UI: the watch view over the run's train.log while it is being
// written, where q or Ctrl-C means Stop (finish the iteration, write a checkpoint, exit) and a
// second Ctrl-C quits at once. The lines train would print go to the UI's bottom line while it
// runs; the last of them is printed when the terminal is given back.

import { join } from 'node:path';
import type { ColorMode } from './ansi.ts';
import { followLog } from './follow.ts';
import { formatIteration } from './format.ts';
import type { TerminalIn } from './keys.ts';
import { parseLogLine } from './log-reader.ts';
import type { TerminalOut } from './screen.ts';
import { sampleLocator } from './watch.ts';
import { WatchUi } from './watch-ui.ts';

export interface TrainTuiOptions {
  /** The coordinator (only requestStop is used). */
  coordinator: { requestStop(reason?: string): void };
  runDir: string;
  stdout: TerminalOut;
  stdin: TerminalIn;
  colorMode?: ColorMode;
  /** A second Ctrl-C after Stop; default: give the terminal back and exit with 130. */
  onForceQuit?: () => void;
}

export interface TrainTui {
  /** A line train would have printed: shown on the bottom line. */
  print(line: string): void;
  /** Text that stays in the header while the UI runs (the dashboard's address), unlike print's bottom line. */
  pin(text: string): void;
  /** Gives the terminal back and prints the run's last line; safe to call twice. */
  stop(): void;
}

export function startTrainTui(opts: TrainTuiOptions): TrainTui {
  const following = new AbortController();
  let stopping = false;
  let lastPrinted: string | undefined;
  let stopped = false;
  const ui: WatchUi = new WatchUi({
    stdout: opts.stdout,
    stdin: opts.stdin,
    title: opts.runDir,
    keys: ' q/Ctrl-C stop: checkpoint and exit ',
    colorMode: opts.colorMode,
    locateSample: sampleLocator(opts.runDir),
    onKey: (key) => {
      if (key !== 'quit' && key !== 'interrupt') return;
      if (!stopping) {
        stopping = true;
        opts.coordinator.requestStop('stop requested from the terminal UI');
        ui.keys = ' Ctrl-C again: quit at once ';
        ui.setStatus('finishing the iteration, then a checkpoint');
      } else if (key === 'interrupt') {
        tui.stop();
        if (opts.onForceQuit) opts.onForceQuit();
        else process.exit(130);
      }
    },
  });
  ui.start();
  void followLog(join(opts.runDir, 'train.log'), {
    follow: true,
    signal: following.signal,
    onLines: (lines) => ui.feed(lines.map(parseLogLine)),
  }).catch((err: Error) => ui.setStatus(`cannot read train.log: ${err.message}`));

  const tui: TrainTui = {
    print(line) {
      lastPrinted = line;
      if (stopped) opts.stdout.write(`${line}\n`);
      else ui.setStatus(line);
    },
    pin(text) {
      ui.setTitle(`${opts.runDir}  ${text}`);
    },
    stop() {
      if (stopped) return;
      stopped = true;
      following.abort();
      ui.stop();
      const last = ui.view.last;
      if (last) opts.stdout.write(`${formatIteration(last)}\n`);
      if (lastPrinted) opts.stdout.write(`${lastPrinted}\n`);
    },
  };
  return tui;
}

export interface TrainTuiHooks {
  print: (line: string) => void;
  /** Header text while the UI runs; nothing without the UI (print's lines say it there). */
  pin: (text: string) => void;
  onCoordinator: (coordinator: { requestStop(reason?: string): void }, runDir?: string) => void;
  stop: () => void;
}

export interface TrainTuiHookOptions {
  /** --tui / --no-tui. */
  enabled: boolean;
  stdout: TerminalOut;
  stdin: TerminalIn;
  /** Where lines go without the UI (console.log). */
  print: (line: string) => void;
  /** The run directory when train() does not hand it over: --resume or --run-dir, else runs/latest. */
  runDir?: string;
}

/**
 * The hooks `gan-dist train` passes to train(): the UI on a terminal (both stdin and stdout),
 * plain lines otherwise. `onCoordinator` starts the UI once the coordinator exists.
 */
export function trainTuiHooks(opts: TrainTuiHookOptions): TrainTuiHooks {
  const usable = opts.enabled && opts.stdout.isTTY === true && opts.stdin.isTTY === true;
  let tui: TrainTui | undefined;
  return {
    print: (line) => (tui ? tui.print(line) : opts.print(line)),
    pin: (text) => tui?.pin(text),
    onCoordinator: (coordinator, runDir) => {
      if (!usable || tui) return;
      tui = startTrainTui({
        coordinator,
        runDir: runDir ?? opts.runDir ?? join(process.cwd(), 'runs', 'latest'),
        stdout: opts.stdout,
        stdin: opts.stdin,
      });
    },
    stop: () => tui?.stop(),
  };
}
