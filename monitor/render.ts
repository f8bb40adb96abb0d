// The terminal UI's screen as lines of text for a given size: header, progress, the two scores'
// chart (and under it, once the log has `eval` lines, the SWD with its floor on the same x axis)
// beside the latest sample grid, the workers table, recent events and the keys. Pure: the same
// view and size give the same lines, so tests read it as a string.
//
//   gan-dist · runs/latest                                   RUNNING · 2 workers · 45.2 img/s
//   epoch 3/500  iter 120/14000  elapsed 0:42  ETA 1:23:45  [████░░░░░░░░░░░░░░░░░░░░░]   1%
//   ━━ GeneratorScore 0.412   ━━ DiscriminatorScore 0.633      ▀▀▀▀▀▀▀▀▀▀▀▀▀▀▀▀▀▀▀▀▀▀
//   1.0┤ ⠀⠀⠀⠀⡀⠤⠒⠉ ...                                           (the sample grid)
//   ── workers ─────────────────────────────────────────────────────────────────────
//   ── events ──────────────────────────────────────────────────────────────────────
//   q quit

import {
  BOLD,
  DIM,
  INVERSE,
  fitWidth,
  paint,
  palette,
  sanitize,
  style,
  truncate,
  visibleWidth,
  type ColorMode,
  type Rgb,
} from './ansi.ts';
import { niceCeil, renderChart, renderLegend, type ChartRule, type ChartSeries } from './chart.ts';
import { fitImage, renderImage, type RgbImage } from './image-block.ts';
import { formatDuration, progressOf, type RunView } from './view-model.ts';

/** The sample grid beside the chart: decoded, or only its path with why it is not drawn. */
export interface SampleImage {
  path: string;
  iteration: number;
  image?: RgbImage;
  note?: string;
}

export interface RenderOptions {
  width: number;
  height: number;
  mode: ColorMode;
  /** ms since the epoch: elapsed time of a live run. */
  now: number;
  /** What is watched: a run directory or a coordinator's address. */
  title: string;
  sample?: SampleImage;
  /** The keys line: what q does here. */
  keys: string;
  /** A message for the bottom line (connection state, a stop in progress). */
  status?: string;
}

export const MIN_WIDTH = 40;
export const MIN_HEIGHT = 12;

const stateColor: Record<string, Rgb> = {
  running: palette.ok,
  finished: palette.ok,
  failed: palette.error,
  stopping: palette.warn,
  waiting: palette.warn,
  starting: palette.warn,
};

/** `left` and `right` on one line of `width` columns; the left side gives way. */
function spread(left: string, right: string, width: number): string {
  const room = width - visibleWidth(right) - 1;
  if (room < 8) return fitWidth(left, width);
  return `${fitWidth(left, room)} ${right}`;
}

/** A path shortened from the left ('…/run/train.log'), where its end says the most. */
function shortenLeft(s: string, width: number): string {
  if (visibleWidth(s) <= width) return s;
  if (width <= 1) return '…'.slice(0, width);
  return `…${[...s].slice(-(width - 1)).join('')}`;
}

/** Words of `text` in lines of at most `width` columns (a word longer than a line is cut). */
function wrap(text: string, width: number): string[] {
  const lines: string[] = [];
  let line = '';
  for (const word of text.split(/\s+/).filter(Boolean)) {
    if (line && visibleWidth(line) + 1 + visibleWidth(word) > width) {
      lines.push(line);
      line = '';
    }
    line = line ? `${line} ${word}` : truncate(word, width, true);
  }
  if (line) lines.push(line);
  return lines;
}

function rule(title: string, width: number, mode: ColorMode): string {
  const head = `── ${title} `;
  return style(fitWidth(head + '─'.repeat(Math.max(0, width - visibleWidth(head))), width), DIM, mode);
}

function header(view: RunView, opts: RenderOptions): string {
  const live = [...view.workers.values()].filter((w) => w.state === 'joined').length;
  const state = (view.state ?? 'starting').toUpperCase();
  const parts = [
    paint(state, stateColor[view.state ?? 'starting'] ?? palette.muted, opts.mode, '1;'),
    `${live} worker${live === 1 ? '' : 's'}`,
  ];
  if (view.monitors.size) parts.push(`${view.monitors.size} monitor${view.monitors.size === 1 ? '' : 's'}`);
  if (view.last) parts.push(`${view.last.imagesPerSec.toFixed(1)} img/s`);
  const right = parts.join(' · ');
  const room = opts.width - visibleWidth(right) - 12;
  return spread(
    `${style('gan-dist', BOLD, opts.mode)} · ${sanitize(shortenLeft(opts.title, Math.max(8, room)))}`,
    right,
    opts.width,
  );
}

function progressLine(view: RunView, opts: RenderOptions): string {
  const p = progressOf(view, opts.now);
  const epoch = `epoch ${p.epoch}${p.epochs ? `/${p.epochs}` : ''}`;
  const iter = `iter ${p.iteration}${p.total ? `/${p.total}` : ''}`;
  const text = `${epoch}  ${iter}  elapsed ${formatDuration(p.elapsedMs)}  ETA ${formatDuration(p.etaMs)}  `;
  const pct = p.fraction === undefined ? '   ?%' : `${Math.floor(p.fraction * 100)}%`.padStart(5);
  const barW = opts.width - visibleWidth(text) - pct.length - 3;
  if (barW < 5) return fitWidth(`${text}${pct.trim()}`, opts.width);
  const filled = Math.round((p.fraction ?? 0) * barW);
  const bar = paint('█'.repeat(filled), palette.accent, opts.mode) + style('░'.repeat(barW - filled), DIM, opts.mode);
  return fitWidth(`${text}[${bar}] ${pct}`, opts.width);
}

function workersTable(view: RunView, width: number, rows: number, mode: ColorMode): string[] {
  const all = [...view.workers.values()];
  // Live workers first, then the latest to leave; ids in order within each.
  all.sort((a, b) => (a.state === b.state ? a.id - b.id : a.state === 'joined' ? -1 : 1));
  const idW = 4;
  const addrW = Math.min(22, Math.max(12, Math.floor(width * 0.22)));
  const backendW = 8;
  const stateW = 10;
  const rateW = 7;
  const deviceW = Math.max(6, width - idW - addrW - backendW - stateW - rateW - 5);
  const row = (id: string, addr: string, device: string, backend: string, state: string, rate: string) =>
    `${fitWidth(id, idW, 'right')} ${fitWidth(addr, addrW)} ${fitWidth(device, deviceW)} ${fitWidth(backend, backendW)} ${fitWidth(state, stateW)} ${fitWidth(rate, rateW, 'right')}`;
  const lines = [style(fitWidth(row('id', 'address', 'device', 'backend', 'state', 'img/s'), width), DIM, mode)];
  if (all.length === 0) lines.push(fitWidth(style('  no worker has joined yet', DIM, mode), width));
  const rate = (r: number | undefined) => (r !== undefined ? r.toFixed(1) : '-');
  // A node's local workers follow it, indented, while it is joined.
  const entries = all.flatMap((w) => {
    const peer = row(
      String(w.id),
      sanitize(w.address),
      sanitize(w.device),
      sanitize(w.backend),
      w.state,
      w.state === 'joined' ? rate(w.imagesPerSec) : '',
    );
    const own = w.state === 'joined' ? (w.local ?? []) : [];
    return [
      w.state === 'joined' ? fitWidth(peer, width) : style(fitWidth(peer, width), DIM, mode),
      ...own.map((l) => {
        const text = row(
          `.${l.rank}`,
          '  └ local',
          sanitize(l.device),
          sanitize(l.backend),
          sanitize(l.state),
          rate(l.imagesPerSec),
        );
        return l.state === 'joined' ? fitWidth(text, width) : style(fitWidth(text, width), DIM, mode);
      }),
    ];
  });
  // Rows beyond the room say how many more there are.
  const capacity = Math.max(1, rows - 1);
  const overflow = entries.length > capacity;
  const shown = entries.slice(0, overflow ? capacity - 1 : capacity);
  lines.push(...shown);
  if (overflow) lines.push(fitWidth(style(`  … and ${entries.length - shown.length} more rows`, DIM, mode), width));
  return lines.slice(0, rows);
}

function eventLines(view: RunView, width: number, rows: number, mode: ColorMode): string[] {
  const shown = view.events.slice(-rows);
  const lines = shown.map((e) => {
    const text = `${e.time ? `${e.time}  ` : ''}${sanitize(e.text)}`;
    if (e.level === 'warn') return paint(truncate(text, width, true), palette.warn, mode);
    if (e.level === 'error' || e.level === 'fatal') return paint(truncate(text, width, true), palette.error, mode);
    return truncate(text, width, true);
  });
  while (lines.length < rows) lines.push('');
  return lines.map((l) => fitWidth(l, width));
}

/**
 * The left of the top area, `rows` lines of `width`: the scores' legend and chart, and with SWD
 * scores a second legend and chart below them, both charts over one x range (iterations) so an
 * SWD point sits under the scores of its iteration; the lower chart carries the x axis.
 */
function charts(view: RunView, width: number, rows: number, mode: ColorMode): string[] {
  const scores: ChartSeries[] = [
    { label: 'GeneratorScore', values: view.scoreG, color: palette.generator },
    { label: 'DiscriminatorScore', values: view.scoreD, color: palette.discriminator },
  ];
  if (view.swd.length === 0 || rows < 8) {
    return [
      fitWidth(renderLegend(scores, mode), width),
      ...renderChart({ xs: view.iterations, series: scores, width, height: rows - 1, mode }),
    ];
  }
  const first = Math.min(view.iterations[0] ?? Infinity, view.evalIterations[0]);
  const last = Math.max(view.iterations.at(-1) ?? -Infinity, view.evalIterations.at(-1)!);
  const xRange = [first, Math.max(last, first + 1)] as const;
  const swd: ChartSeries[] = [
    { label: 'SWD x1e3', values: view.swd, xs: view.evalIterations, color: palette.swd, digits: 1 },
  ];
  const rules: ChartRule[] =
    view.swdFloor !== undefined ? [{ label: 'real-vs-real floor', value: view.swdFloor, color: palette.muted }] : [];
  const scoreRows = Math.floor((rows - 2) / 2);
  return [
    fitWidth(renderLegend(scores, mode), width),
    ...renderChart({ xs: view.iterations, series: scores, width, height: scoreRows, xRange, xAxis: false, mode }),
    fitWidth(renderLegend(swd, mode, rules), width),
    // SWD >= 0: from zero, so the gap to the floor reads at its true size.
    ...renderChart({
      xs: view.evalIterations,
      series: swd,
      rules,
      width,
      height: rows - 2 - scoreRows,
      yMin: 0,
      yMax: niceCeil(Math.max(...view.swd, view.swdFloor ?? 0)),
      xRange,
      mode,
    }),
  ];
}

function sampleBlock(sample: SampleImage | undefined, cols: number, rows: number, mode: ColorMode): string[] {
  const caption = (s: string) => style(fitWidth(s, cols), DIM, mode);
  if (!sample) return [...Array.from({ length: rows - 1 }, () => fitWidth('', cols)), caption('no sample grid yet')];
  const lines: string[] = [];
  if (sample.image) {
    const size = fitImage(sample.image, cols, rows - 1);
    const pad = Math.floor((cols - size.cols) / 2);
    for (const l of renderImage(sample.image, size.cols, size.rows, mode))
      lines.push(' '.repeat(pad) + l + ' '.repeat(cols - size.cols - pad));
  } else {
    for (const l of wrap(sanitize(sample.note ?? 'loading…'), cols).slice(0, rows - 1))
      lines.push(style(fitWidth(l, cols), DIM, mode));
  }
  while (lines.length < rows - 1) lines.push(' '.repeat(cols));
  lines.push(caption(sanitize(shortenLeft(sample.path, cols))));
  return lines;
}

/** The screen: exactly `height` lines of at most `width` columns each. */
export function renderScreen(view: RunView, opts: RenderOptions): string[] {
  const { width: W, height: H, mode } = opts;
  if (W < MIN_WIDTH || H < MIN_HEIGHT) {
    const lines = [
      header(view, opts),
      progressLine(view, opts),
      fitWidth(`enlarge the terminal to ${MIN_WIDTH}x${MIN_HEIGHT} for the full view`, W),
    ];
    while (lines.length < H) lines.push('');
    return lines.slice(0, H).map((l) => truncate(l, W));
  }
  const avail = H - 3; // header, progress, keys
  // A row per worker, and one per local worker of a joined node.
  const liveAndLeft = [...view.workers.values()].reduce(
    (n, w) => n + 1 + (w.state === 'joined' ? (w.local?.length ?? 0) : 0),
    0,
  );
  let eventRows = Math.max(3, Math.min(12, Math.floor(avail * 0.25)));
  const workerRows = 1 + Math.max(1, Math.min(liveAndLeft, Math.max(2, Math.floor(avail * 0.2))));
  let top = avail - (1 + workerRows) - (1 + eventRows);
  while (top < 8 && eventRows > 1) {
    eventRows--;
    top++;
  }

  // Chart on the left, the sample grid (square: twice as many columns as rows) on the right.
  const imageCols = W >= 60 ? Math.min(2 * (top - 1), Math.floor(W * 0.45)) : 0;
  const chartW = imageCols > 0 ? W - imageCols - 2 : W;
  const left = charts(view, chartW, top, mode);
  const right = imageCols > 0 ? sampleBlock(opts.sample, imageCols, top, mode) : [];

  const lines: string[] = [header(view, opts), progressLine(view, opts)];
  for (let i = 0; i < top; i++)
    lines.push(imageCols > 0 ? `${fitWidth(left[i] ?? '', chartW)}  ${right[i] ?? ''}` : fitWidth(left[i] ?? '', W));
  const live = [...view.workers.values()].filter((w) => w.state === 'joined').length;
  lines.push(
    rule(`workers: ${live} live${view.workers.size > live ? `, ${view.workers.size - live} left` : ''}`, W, mode),
  );
  lines.push(...workersTable(view, W, workerRows, mode));
  while (lines.length < 2 + top + 1 + workerRows) lines.push(' '.repeat(W));
  lines.push(rule('events', W, mode));
  lines.push(...eventLines(view, W, eventRows, mode));
  // The keys stay whole; a status message takes what is left of the line.
  const keys = style(opts.keys, INVERSE, mode);
  const room = W - visibleWidth(keys) - 2;
  lines.push(opts.status && room > 3 ? `${keys}  ${fitWidth(sanitize(opts.status), room)}` : fitWidth(keys, W));
  return lines.slice(0, H);
}
