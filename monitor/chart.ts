// A line chart of several series in braille characters (2 x 4 dots a cell), each series in its
// own colour, with a y axis on the left and the first and last x on the bottom line: the
// terminal's version of the seed's trainingProgressMonitor plot of the two scores. Dotted
// horizontal rules mark reference values (the SWD's real-vs-real floor).

import { paint, stripAnsi, visibleWidth, type ColorMode, type Rgb } from './ansi.ts';

export interface ChartSeries {
  label: string;
  values: readonly number[];
  color: Rgb;
  /** x of each value, where the series has its own (with ChartOptions.xRange); default: ChartOptions.xs. */
  xs?: readonly number[];
  /** Decimals of the legend's latest value (default 3). */
  digits?: number;
}

/** A dotted horizontal line at `value`, under the series. */
export interface ChartRule {
  label: string;
  value: number;
  color: Rgb;
}

export interface ChartOptions {
  /** x of each point (iterations), shared by all series. */
  xs: readonly number[];
  series: readonly ChartSeries[];
  width: number;
  /** Lines, the x-axis line included. */
  height: number;
  yMin?: number;
  yMax?: number;
  /**
   * Place points by their x within [first, last] instead of spreading them evenly by index: for
   * series sampled at other iterations than the chart's (SWD every K), or two charts that share
   * one x axis. The axis line then shows these ends.
   */
  xRange?: readonly [number, number];
  rules?: readonly ChartRule[];
  /** Draw the x axis line (default true); without it every line is plot. */
  xAxis?: boolean;
  mode: ColorMode;
}

// Braille dot bits by [dot x][dot y] inside a cell (Unicode's numbering of the eight dots).
const DOT = [
  [0x01, 0x02, 0x04, 0x40],
  [0x08, 0x10, 0x20, 0x80],
];

/** The dot row (0 at the top) of value v on a plot `dotsH` dots high spanning [yMin, yMax]. */
export function dotRow(v: number, dotsH: number, yMin = 0, yMax = 1): number {
  const f = (Math.min(yMax, Math.max(yMin, v)) - yMin) / (yMax - yMin || 1);
  return Math.round((1 - f) * (dotsH - 1));
}

/** The dot column of point i of n on a plot `dotsW` dots wide; the points spread over the width. */
export function dotColumn(i: number, n: number, dotsW: number): number {
  return n <= 1 ? 0 : Math.round((i * (dotsW - 1)) / (n - 1));
}

/** One y per dot column: the mean of the points that fall in it (more points than dots) or the points themselves. */
function columnsOf(values: readonly number[], dotsW: number): { x: number; y: number }[] {
  const n = values.length;
  if (n <= dotsW) return values.map((y, i) => ({ x: dotColumn(i, n, dotsW), y }));
  const sums = new Float64Array(dotsW);
  const counts = new Uint32Array(dotsW);
  for (let i = 0; i < n; i++) {
    const x = Math.min(dotsW - 1, Math.floor((i * dotsW) / n));
    sums[x] += values[i];
    counts[x]++;
  }
  const out: { x: number; y: number }[] = [];
  for (let x = 0; x < dotsW; x++) if (counts[x]) out.push({ x, y: sums[x] / counts[x] });
  return out;
}

/** One y per dot column by x value within `range`: the mean of the points that fall in a column. */
function columnsByX(
  values: readonly number[],
  xs: readonly number[],
  range: readonly [number, number],
  dotsW: number,
): { x: number; y: number }[] {
  const [lo, hi] = range;
  const sums = new Float64Array(dotsW);
  const counts = new Uint32Array(dotsW);
  for (let i = 0; i < values.length && i < xs.length; i++) {
    const f = hi > lo ? (xs[i] - lo) / (hi - lo) : 0;
    const x = Math.min(dotsW - 1, Math.max(0, Math.round(f * (dotsW - 1))));
    sums[x] += values[i];
    counts[x]++;
  }
  const out: { x: number; y: number }[] = [];
  for (let x = 0; x < dotsW; x++) if (counts[x]) out.push({ x, y: sums[x] / counts[x] });
  return out;
}

const AXIS_WIDTH = 4; // "1.0┤", "250┤"

/** A y-axis label in three columns: one decimal for small ranges (scores), whole numbers up to 999, then thousands. */
export function axisLabel(v: number, yMax: number): string {
  const text =
    Math.abs(yMax) < 10 ? v.toFixed(1) : Math.abs(v) < 999.5 ? String(Math.round(v)) : `${Math.round(v / 1000)}k`;
  return text.padStart(AXIS_WIDTH - 1);
}

/** The smallest 1, 2 or 5 x 10^k at or above v (v > 0): a chart's top that reads well. */
export function niceCeil(v: number): number {
  if (!(v > 0)) return 1;
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 5, 10]) if (m * p >= v * (1 - 1e-12)) return m * p;
  return 10 * p;
}

/** The chart as `height` lines of exactly `width` columns. */
export function renderChart(opts: ChartOptions): string[] {
  const { width, height, mode } = opts;
  const yMin = opts.yMin ?? 0;
  const yMax = opts.yMax ?? 1;
  const plotW = Math.max(1, width - AXIS_WIDTH);
  const withAxis = opts.xAxis !== false;
  const plotH = Math.max(1, withAxis ? height - 1 : height);
  const dotsW = plotW * 2;
  const dotsH = plotH * 4;
  // Dots per series per cell, to OR into one character and to colour each cell by its majority.
  const cells = opts.series.map(() => new Uint8Array(plotW * plotH));
  opts.series.forEach((s, si) => {
    const grid = cells[si];
    const set = (x: number, y: number) => {
      grid[Math.floor(y / 4) * plotW + Math.floor(x / 2)] |= DOT[x % 2][y % 4];
    };
    const placed = opts.xRange ? columnsByX(s.values, s.xs ?? opts.xs, opts.xRange, dotsW) : columnsOf(s.values, dotsW);
    const pts = placed.map(({ x, y }) => ({ x, y: dotRow(y, dotsH, yMin, yMax) }));
    pts.forEach((p, i) => {
      set(p.x, p.y);
      const q = pts[i + 1];
      if (!q) return;
      // Join to the next point with a dot at every step of the longer of the two distances.
      const steps = Math.max(Math.abs(q.x - p.x), Math.abs(q.y - p.y));
      for (let k = 1; k <= steps; k++)
        set(Math.round(p.x + ((q.x - p.x) * k) / steps), Math.round(p.y + ((q.y - p.y) * k) / steps));
    });
  });

  // Rules: a dot in every other dot column, drawn only in cells no series passes through.
  const ruleCells = (opts.rules ?? []).map((r) => {
    const grid = new Uint8Array(plotW * plotH);
    const y = dotRow(r.value, dotsH, yMin, yMax);
    for (let x = 0; x < dotsW; x += 2) grid[Math.floor(y / 4) * plotW + Math.floor(x / 2)] |= DOT[x % 2][y % 4];
    return grid;
  });

  const bitCount = (v: number) => {
    let c = 0;
    for (let b = v; b; b &= b - 1) c++;
    return c;
  };
  const label = (v: number) => axisLabel(v, yMax);
  const lines: string[] = [];
  for (let row = 0; row < plotH; row++) {
    let axis = '   │';
    if (row === 0) axis = `${label(yMax)}┤`;
    else if (row === plotH - 1) axis = `${label(yMin)}┤`;
    else if (plotH >= 5 && row === Math.round((plotH - 1) / 2)) axis = `${label((yMin + yMax) / 2)}┤`;
    let line = paint(axis.slice(0, AXIS_WIDTH), [128, 128, 128], mode);
    for (let col = 0; col < plotW; col++) {
      let bits = 0;
      let best = -1;
      let bestCount = 0;
      cells.forEach((grid, si) => {
        const b = grid[row * plotW + col];
        bits |= b;
        if (bitCount(b) > bestCount) {
          bestCount = bitCount(b);
          best = si;
        }
      });
      if (bits === 0) {
        const rule = ruleCells.findIndex((grid) => grid[row * plotW + col] !== 0);
        line +=
          rule < 0
            ? ' '
            : paint(String.fromCharCode(0x2800 + ruleCells[rule][row * plotW + col]), opts.rules![rule].color, mode);
      } else line += paint(String.fromCharCode(0x2800 + bits), opts.series[best].color, mode);
    }
    lines.push(line);
  }
  if (!withAxis) return lines.map((l) => l + ' '.repeat(Math.max(0, width - visibleWidth(l))));
  // The x axis: the first and last iteration under the plot's ends.
  const xs = opts.xRange ?? opts.xs;
  const first = xs.length ? String(xs[0]) : '';
  const last = xs.length > 1 ? String(xs[xs.length - 1]) : '';
  const name = 'iteration';
  const inner = plotW - first.length - last.length;
  let axisLine = ' '.repeat(AXIS_WIDTH) + first;
  if (inner >= name.length + 2) {
    const left = Math.floor((inner - name.length) / 2);
    axisLine += ' '.repeat(left) + name + ' '.repeat(inner - left - name.length) + last;
  } else axisLine += ' '.repeat(Math.max(1, inner)) + last;
  lines.push(paint(stripAnsi(axisLine).slice(0, width), [128, 128, 128], mode));
  return lines.map((l) => l + ' '.repeat(Math.max(0, width - visibleWidth(l))));
}

/** `━ Generator 0.192  ━ Discriminator 0.670`: each series' colour, name and latest value; then each rule's. */
export function renderLegend(
  series: readonly ChartSeries[],
  mode: ColorMode,
  rules: readonly ChartRule[] = [],
): string {
  return [
    ...series.map((s) => {
      const v = s.values.length ? s.values[s.values.length - 1].toFixed(s.digits ?? 3) : '-';
      return `${paint('━━', s.color, mode)} ${s.label} ${paint(v, s.color, mode, '1;')}`;
    }),
    ...rules.map((r) => `${paint('┄┄', r.color, mode)} ${r.label} ${paint(r.value.toFixed(1), r.color, mode)}`),
  ].join('   ');
}
