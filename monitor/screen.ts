// The terminal the UI draws on: the alternate screen with the cursor hidden while it runs, only
// the lines that changed rewritten on each frame (no flicker, little output over ssh), the size
// followed through resize (SIGWINCH), and the terminal given back however the process ends.

export interface TerminalOut {
  columns?: number;
  rows?: number;
  isTTY?: boolean;
  write(s: string): boolean;
  on(event: 'resize', fn: () => void): unknown;
  off(event: 'resize', fn: () => void): unknown;
}

const ENTER = '\x1b[?1049h\x1b[?25l\x1b[2J';
const LEAVE = '\x1b[0m\x1b[?25h\x1b[?1049l';

export class Screen {
  private previous: string[] = [];
  private active = false;
  private readonly onResize = () => {
    this.previous = [];
    this.resized?.();
  };
  private readonly onExit = () => this.leave();

  constructor(
    private readonly out: TerminalOut,
    private readonly resized?: () => void,
  ) {}

  get size(): { width: number; height: number } {
    return { width: this.out.columns || 80, height: this.out.rows || 24 };
  }

  enter(): void {
    if (this.active) return;
    this.active = true;
    this.previous = [];
    this.out.write(ENTER);
    this.out.on('resize', this.onResize);
    process.once('exit', this.onExit);
  }

  /** Draws `lines` (one per screen row), writing only the rows that differ from the last frame. */
  draw(lines: readonly string[]): void {
    if (!this.active) return;
    let out = '';
    for (let i = 0; i < lines.length; i++) {
      if (this.previous[i] === lines[i]) continue;
      out += `\x1b[${i + 1};1H${lines[i]}\x1b[0m\x1b[K`;
    }
    for (let i = lines.length; i < this.previous.length; i++) out += `\x1b[${i + 1};1H\x1b[K`;
    this.previous = [...lines];
    if (out) this.out.write(out);
  }

  /** Forgets the last frame, so the next draw rewrites every line (Ctrl-L). */
  invalidate(): void {
    this.previous = [];
    if (this.active) this.out.write('\x1b[2J');
  }

  leave(): void {
    if (!this.active) return;
    this.active = false;
    this.out.off('resize', this.onResize);
    process.off('exit', this.onExit);
    this.out.write(LEAVE);
  }
}
