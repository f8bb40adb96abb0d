// The terminal UI's controller: folds incoming log records into the view, decodes the latest
// sample grid in the background, and redraws at most every 50 ms (and each second, for the
// elapsed time) on the screen. Where the records come from (a log file, a remote coordinator,
// train's own log) and what the keys do is its caller's business.

import { detectColorMode, type ColorMode } from './ansi.ts';
import { loadImage } from './image-block.ts';
import { listenKeys, type Key, type TerminalIn } from './keys.ts';
import type { ParsedLine } from './log-reader.ts';
import { renderScreen, type SampleImage } from './render.ts';
import { Screen, type TerminalOut } from './screen.ts';
import { applyLine, createRunView, type RunView } from './view-model.ts';

export interface WatchUiOptions {
  stdout: TerminalOut;
  stdin?: TerminalIn;
  /** The run directory or coordinator address shown in the header. */
  title: string;
  /** The keys line. */
  keys: string;
  onKey?: (key: Key) => void;
  /** The local file for a sample path from the log, or undefined where it is not on this machine. */
  locateSample?: (path: string) => string | undefined;
  colorMode?: ColorMode;
  now?: () => number;
}

export class WatchUi {
  readonly view: RunView = createRunView();
  /** The header's text; may change while it runs (train adds the dashboard's address). */
  title: string;
  keys: string;
  status?: string;
  private sample?: SampleImage;
  private sampleLoading?: Promise<void>;
  private wantedSample?: string;
  private readonly screen: Screen;
  private readonly mode: ColorMode;
  private timer?: NodeJS.Timeout;
  private ticker?: NodeJS.Timeout;
  private stopKeys?: () => void;
  private running = false;

  constructor(private readonly opts: WatchUiOptions) {
    this.title = opts.title;
    this.keys = opts.keys;
    this.mode = opts.colorMode ?? detectColorMode();
    this.screen = new Screen(opts.stdout, () => this.render());
  }

  /** Folds records into the view and schedules a redraw. */
  feed(lines: readonly ParsedLine[]): void {
    for (const l of lines) applyLine(this.view, l);
    if (this.view.sample && this.view.sample.path !== this.wantedSample)
      this.loadSample(this.view.sample.path, this.view.sample.iteration);
    this.schedule();
  }

  setTitle(title: string): void {
    this.title = title;
    this.schedule();
  }

  setStatus(status: string | undefined): void {
    this.status = status;
    this.schedule();
  }

  private loadSample(path: string, iteration: number): void {
    this.wantedSample = path;
    const local = this.opts.locateSample?.(path);
    if (local === undefined) {
      this.sample = {
        path,
        iteration,
        note: this.opts.locateSample ? 'sample file not found' : 'the sample grid is on the coordinator',
      };
      return;
    }
    if (!this.sample?.image) this.sample = { path, iteration, note: 'loading…' };
    // The grid on screen stays until the next one is decoded; a newer request wins over an older.
    this.sampleLoading = loadImage(local).then(
      (image) => {
        if (this.wantedSample === path) this.sample = { path, iteration, image };
        this.schedule();
      },
      (err: NodeJS.ErrnoException) => {
        if (this.wantedSample === path)
          this.sample = { path, iteration, note: `cannot read the sample grid (${err.code ?? err.message})` };
        this.schedule();
      },
    );
  }

  /** Waits for the sample grid being decoded, if any (a one-shot frame wants it drawn). */
  async settled(): Promise<void> {
    while (this.sampleLoading) {
      const p = this.sampleLoading;
      await p;
      if (p === this.sampleLoading) this.sampleLoading = undefined;
    }
  }

  /** The screen as lines, at the terminal's size or the one given. */
  frame(width = this.screen.size.width, height = this.screen.size.height, mode = this.mode): string[] {
    return renderScreen(this.view, {
      width,
      height,
      mode,
      now: (this.opts.now ?? Date.now)(),
      title: this.title,
      sample: this.sample,
      keys: this.keys,
      status: this.status,
    });
  }

  private schedule(): void {
    if (!this.running || this.timer) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.render();
    }, 50);
    this.timer.unref();
  }

  render(): void {
    if (this.running) this.screen.draw(this.frame());
  }

  /** Takes over the terminal: alternate screen, raw keys, redraws. */
  start(): void {
    if (this.running) return;
    this.running = true;
    this.screen.enter();
    if (this.opts.stdin) {
      this.stopKeys = listenKeys(this.opts.stdin, (key) => {
        if (key === 'redraw') {
          this.screen.invalidate();
          this.render();
        }
        this.opts.onKey?.(key);
      });
    }
    this.ticker = setInterval(() => this.render(), 1000);
    this.ticker.unref();
    this.render();
  }

  /** Gives the terminal back. */
  stop(): void {
    if (!this.running) return;
    this.running = false;
    clearTimeout(this.timer);
    this.timer = undefined;
    clearInterval(this.ticker);
    this.stopKeys?.();
    this.screen.leave();
  }
}
