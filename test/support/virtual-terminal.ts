// A fake terminal for the monitor tests: a screen of cells that applies what the UI writes
// (cursor moves, clears, text; colours dropped), keys to type, a size to change, and a way to
// wait until the screen shows something.

import { EventEmitter } from 'node:events';

export class VirtualTerminal extends EventEmitter {
  readonly isTTY = true;
  columns: number;
  rows: number;
  cells: string[][] = [];
  written = '';
  altScreen = false;
  cursorHidden = false;
  private row = 0;
  private col = 0;
  private waiters: { test: () => boolean; resolve: () => void }[] = [];

  constructor(columns = 80, rows = 24) {
    super();
    this.columns = columns;
    this.rows = rows;
    this.clear();
  }

  private clear(): void {
    this.cells = Array.from({ length: this.rows }, () => Array(this.columns).fill(' '));
  }

  write(s: string): boolean {
    this.written += s;
    const re = /\x1b\[([?0-9;]*)([A-Za-z])|([^\x1b]+)/gu;
    for (let m = re.exec(s); m; m = re.exec(s)) {
      if (m[3] !== undefined) {
        for (const ch of m[3]) {
          if (ch === '\n') {
            this.row++;
            this.col = 0;
            continue;
          }
          if (this.row < this.rows && this.col < this.columns) this.cells[this.row][this.col] = ch;
          this.col++;
        }
        continue;
      }
      const [args, cmd] = [m[1], m[2]];
      if (cmd === 'H') {
        const [r, c] = args.split(';').map(Number);
        this.row = (r || 1) - 1;
        this.col = (c || 1) - 1;
      } else if (cmd === 'K') {
        if (this.row < this.rows) for (let c = this.col; c < this.columns; c++) this.cells[this.row][c] = ' ';
      } else if (cmd === 'J' && args === '2') this.clear();
      else if (cmd === 'h' && args === '?1049') this.altScreen = true;
      else if (cmd === 'l' && args === '?1049') this.altScreen = false;
      else if (args === '?25') this.cursorHidden = cmd === 'l';
    }
    for (const w of [...this.waiters]) {
      if (!w.test()) continue;
      this.waiters.splice(this.waiters.indexOf(w), 1);
      w.resolve();
    }
    return true;
  }

  /** The screen as text lines, trailing spaces kept. */
  get lines(): string[] {
    return this.cells.map((r) => r.join(''));
  }

  get text(): string {
    return this.lines.join('\n');
  }

  /** Resolves once the screen shows `pattern`; rejects, showing the screen, after `timeoutMs`. */
  until(pattern: string | RegExp, timeoutMs = 20_000): Promise<void> {
    const test = () => (typeof pattern === 'string' ? this.text.includes(pattern) : pattern.test(this.text));
    if (test()) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const waiter = {
        test,
        resolve: () => {
          clearTimeout(timer);
          resolve();
        },
      };
      const timer = setTimeout(() => {
        this.waiters.splice(this.waiters.indexOf(waiter), 1);
        reject(
          new Error(
            `timed out after ${timeoutMs} ms waiting for the screen to show ${pattern}; it shows:\n${this.text}`,
          ),
        );
      }, timeoutMs);
      this.waiters.push(waiter);
    });
  }

  resize(columns: number, rows: number): void {
    this.columns = columns;
    this.rows = rows;
    this.clear();
    this.emit('resize');
  }
}

/** The keyboard side: a TTY stdin whose raw mode is recorded and whose keys a test types. */
export class VirtualKeyboard extends EventEmitter {
  readonly isTTY = true;
  raw = false;
  setRawMode(raw: boolean): void {
    this.raw = raw;
  }
  resume(): void {}
  pause(): void {}
  type(keys: string): void {
    this.emit('data', Buffer.from(keys));
  }
}
