// Terminal text for the monitor views: colour modes and SGR sequences, the visible width of a
// string (escape sequences take no columns, wide characters two), fitting text to columns, and
// making text from a log safe to print (a worker's device name is chosen by that worker).

export type ColorMode = 'truecolor' | '256' | 'none';

export type Rgb = readonly [number, number, number];

/** Truecolor where the terminal says so (COLORTERM=truecolor or 24bit), 256 colours otherwise. */
export function detectColorMode(env: NodeJS.ProcessEnv = process.env): Exclude<ColorMode, 'none'> {
  const ct = (env.COLORTERM ?? '').toLowerCase();
  return ct === 'truecolor' || ct === '24bit' ? 'truecolor' : '256';
}

/** Whether plain text output (`gan-dist logs`) should be coloured: a TTY, unless NO_COLOR; FORCE_COLOR wins. */
export function wantsColor(stream: { isTTY?: boolean }, env: NodeJS.ProcessEnv = process.env): boolean {
  if (env.FORCE_COLOR !== undefined && env.FORCE_COLOR !== '0') return true;
  if (env.NO_COLOR !== undefined && env.NO_COLOR !== '') return false;
  return stream.isTTY === true;
}

export const RESET = '\x1b[0m';
export const BOLD = '\x1b[1m';
export const DIM = '\x1b[2m';
export const INVERSE = '\x1b[7m';

/** The xterm 256-colour index nearest to `rgb` in the 6x6x6 cube or the grey ramp. */
export function rgbTo256([r, g, b]: Rgb): number {
  const level = (v: number) => (v < 48 ? 0 : v < 115 ? 1 : Math.min(5, Math.floor((v - 35) / 40)));
  const cube = [0, 95, 135, 175, 215, 255];
  const [lr, lg, lb] = [level(r), level(g), level(b)];
  const cubeIndex = 16 + 36 * lr + 6 * lg + lb;
  const cubeErr = (cube[lr] - r) ** 2 + (cube[lg] - g) ** 2 + (cube[lb] - b) ** 2;
  const mean = (r + g + b) / 3;
  const grey = Math.max(0, Math.min(23, Math.round((mean - 8) / 10)));
  const greyValue = 8 + 10 * grey;
  const greyErr = (greyValue - r) ** 2 + (greyValue - g) ** 2 + (greyValue - b) ** 2;
  return greyErr < cubeErr ? 232 + grey : cubeIndex;
}

/** The SGR parameters for a foreground (38) or background (48) colour; '' without colour. */
export function colorParams(rgb: Rgb, mode: ColorMode, layer: 'fg' | 'bg'): string {
  const base = layer === 'fg' ? 38 : 48;
  if (mode === 'truecolor') return `${base};2;${rgb[0]};${rgb[1]};${rgb[2]}`;
  if (mode === '256') return `${base};5;${rgbTo256(rgb)}`;
  return '';
}

/** `text` in colour `rgb`, reset after; unchanged without colour. */
export function paint(text: string, rgb: Rgb, mode: ColorMode, extra = ''): string {
  if (mode === 'none' || text === '') return text;
  return `\x1b[${extra}${colorParams(rgb, mode, 'fg')}m${text}${RESET}`;
}

/** `text` with a plain SGR attribute (BOLD, DIM, ...); unchanged without colour. */
export function style(text: string, sgr: string, mode: ColorMode): string {
  return mode === 'none' || text === '' ? text : `${sgr}${text}${RESET}`;
}

/** Colours the views use, named by what they mean. */
export const palette = {
  // MATLAB's first two line colours, as trainingProgressMonitor draws the two scores.
  generator: [0, 114, 189] as Rgb,
  discriminator: [217, 83, 25] as Rgb,
  warn: [230, 180, 0] as Rgb,
  error: [230, 50, 50] as Rgb,
  ok: [60, 180, 75] as Rgb,
  muted: [128, 128, 128] as Rgb,
  accent: [80, 160, 220] as Rgb,
  // MATLAB's fifth line colour: the SWD of --eval-every, apart from both scores.
  swd: [119, 172, 48] as Rgb,
} as const;

// CSI sequences (colours, cursor moves) and OSC sequences (titles, links) take no columns.
const ANSI = /\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[@-Z\\-_]/g;

export function stripAnsi(s: string): string {
  return s.replace(ANSI, '');
}

/**
 * Replaces control characters (escape sequences included) by visible stand-ins, so that text
 * from a log can never move the cursor, clear the screen or set the terminal's title.
 */
export function sanitize(s: string): string {
  return s.replace(/[\x00-\x08\x0b-\x1f\x7f-\x9f]/g, (c) => (c === '\x1b' ? '␛' : '�')).replace(/[\t\n]/g, ' ');
}

/** Columns a code point takes: 0 for combining marks, 2 for East Asian wide and emoji, else 1. */
function charWidth(cp: number): number {
  if ((cp >= 0x300 && cp <= 0x36f) || (cp >= 0x200b && cp <= 0x200f) || (cp >= 0xfe00 && cp <= 0xfe0f)) return 0;
  if (
    (cp >= 0x1100 && cp <= 0x115f) ||
    (cp >= 0x2e80 && cp <= 0xa4cf) ||
    (cp >= 0xac00 && cp <= 0xd7a3) ||
    (cp >= 0xf900 && cp <= 0xfaff) ||
    (cp >= 0xfe30 && cp <= 0xfe4f) ||
    (cp >= 0xff00 && cp <= 0xff60) ||
    (cp >= 0xffe0 && cp <= 0xffe6) ||
    (cp >= 0x1f300 && cp <= 0x1faff) ||
    (cp >= 0x20000 && cp <= 0x3fffd)
  ) {
    return 2;
  }
  return 1;
}

/** The columns `s` takes on a terminal. */
export function visibleWidth(s: string): number {
  let w = 0;
  for (const ch of stripAnsi(s)) w += charWidth(ch.codePointAt(0)!);
  return w;
}

/**
 * `s` cut to at most `width` columns, keeping its escape sequences (a cut inside a coloured run
 * ends with a reset); with `ellipsis` a cut line ends in '…'.
 */
export function truncate(s: string, width: number, ellipsis = false): string {
  if (width <= 0) return '';
  if (visibleWidth(s) <= width) return s;
  const room = ellipsis ? width - 1 : width;
  let out = '';
  let w = 0;
  let last = 0;
  let styled = false;
  ANSI.lastIndex = 0;
  const pushText = (text: string): boolean => {
    for (const ch of text) {
      const cw = charWidth(ch.codePointAt(0)!);
      if (w + cw > room) return false;
      out += ch;
      w += cw;
    }
    return true;
  };
  for (let m = ANSI.exec(s); m !== null; m = ANSI.exec(s)) {
    if (!pushText(s.slice(last, m.index))) return finishCut(out, styled, ellipsis);
    out += m[0];
    styled = m[0] !== RESET;
    last = m.index + m[0].length;
  }
  pushText(s.slice(last));
  return finishCut(out, styled, ellipsis);
}

function finishCut(out: string, styled: boolean, ellipsis: boolean): string {
  return `${out}${ellipsis ? '…' : ''}${styled ? RESET : ''}`;
}

/** `s` made exactly `width` columns: cut, or padded with spaces on the right (or left). */
export function fitWidth(s: string, width: number, align: 'left' | 'right' = 'left'): string {
  const cut = truncate(s, width, true);
  const pad = ' '.repeat(Math.max(0, width - visibleWidth(cut)));
  return align === 'left' ? cut + pad : pad + cut;
}
