// The SWD curve of a run trained with --eval-every, as an SVG drawn from its train.log: the mean
// over pyramid levels, each level thinner, and the real-vs-real floor dashed. For the README's
// results; no dependency beyond the log reader.
//
//   npx tsx scripts/swd-curve.ts RUN_DIR [--title TEXT] > docs/results/swd.svg

import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { niceCeil } from '../monitor/chart.ts';
import { parseLogLine } from '../monitor/log-reader.ts';

export interface SwdCurve {
  iterations: number[];
  /** The mean over levels (x 1e3), per iteration scored. */
  mean: number[];
  /** Per level, finest first: levels[l][i] is level l at iterations[i]. */
  levels: number[][];
  resolutions: number[];
  floor?: number;
}

const isNum = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v);

/** The `eval` lines of a log, one per iteration (a resumed run's later score of an iteration replaces the earlier), in iteration order. */
export function curveFromLog(text: string): SwdCurve {
  const byIteration = new Map<number, { mean: number; levels: number[] }>();
  let resolutions: number[] = [];
  let floor: number | undefined;
  for (const raw of text.split('\n')) {
    if (!raw.trim()) continue;
    const line = parseLogLine(raw);
    if (line.kind !== 'event') continue;
    const r = line.record;
    if (r.event === 'eval-floor' && isNum(r.swd)) floor = r.swd;
    if (r.event !== 'eval' || !isNum(r.iteration) || !isNum(r.swd)) continue;
    const levels = Array.isArray(r.swdLevels) ? r.swdLevels.filter(isNum) : [];
    if (Array.isArray(r.resolutions)) resolutions = r.resolutions.filter(isNum);
    if (isNum(r.floor)) floor = r.floor;
    byIteration.set(r.iteration, { mean: r.swd, levels });
  }
  const iterations = [...byIteration.keys()].sort((a, b) => a - b);
  const points = iterations.map((i) => byIteration.get(i)!);
  const levelCount = Math.min(...points.map((p) => p.levels.length), resolutions.length || Infinity);
  const levels = Number.isFinite(levelCount)
    ? Array.from({ length: levelCount }, (_, l) => points.map((p) => p.levels[l]))
    : [];
  return {
    iterations,
    mean: points.map((p) => p.mean),
    levels,
    resolutions: resolutions.slice(0, levels.length),
    floor,
  };
}

/** A step for about `ticks` x-axis ticks over [0, max]: 1, 2 or 5 x 10^k. */
function tickStep(max: number, ticks: number): number {
  return niceCeil(Math.max(1, max / ticks));
}

const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

// MATLAB's line colours, as the terminal UI draws the SWD (fifth) and the scores.
const MEAN_COLOUR = '#77ac30';
const LEVEL_COLOURS = ['#0072bd', '#d95319', '#7e2f8e', '#edb120'];

/** The curve as a standalone SVG document, `width` x `height` pixels. */
export function curveSvg(c: SwdCurve, opts: { title?: string; width?: number; height?: number } = {}): string {
  if (c.iterations.length === 0) throw new Error('the log has no `eval` lines: train with --eval-every K');
  const W = opts.width ?? 720;
  const H = opts.height ?? 400;
  const m = { left: 56, right: 20, top: opts.title ? 40 : 16, bottom: 64 };
  const pw = W - m.left - m.right;
  const ph = H - m.top - m.bottom;
  const xMax = Math.max(1, c.iterations.at(-1)!);
  const yMax = niceCeil(Math.max(...c.mean, ...c.levels.flat(), c.floor ?? 0));
  const X = (i: number) => m.left + (i / xMax) * pw;
  const Y = (v: number) => m.top + ph - (v / yMax) * ph;
  const f = (v: number) => v.toFixed(1);
  const out: string[] = [];
  out.push(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="12">`,
  );
  out.push(`<rect width="${W}" height="${H}" fill="#ffffff"/>`);
  if (opts.title) out.push(`<text x="${W / 2}" y="22" text-anchor="middle" font-size="14">${esc(opts.title)}</text>`);
  // Grid and axes: five y ticks from zero, x ticks at a round step.
  for (let k = 0; k <= 5; k++) {
    const v = (yMax * k) / 5;
    out.push(`<line x1="${m.left}" x2="${m.left + pw}" y1="${f(Y(v))}" y2="${f(Y(v))}" stroke="#e6e6e6"/>`);
    out.push(`<text x="${m.left - 6}" y="${f(Y(v) + 4)}" text-anchor="end">${Number(v.toPrecision(6))}</text>`);
  }
  const step = tickStep(xMax, 8);
  for (let i = 0; i <= xMax; i += step) {
    out.push(`<line x1="${f(X(i))}" x2="${f(X(i))}" y1="${m.top + ph}" y2="${m.top + ph + 4}" stroke="#333"/>`);
    out.push(`<text x="${f(X(i))}" y="${m.top + ph + 18}" text-anchor="middle">${i}</text>`);
  }
  out.push(`<path d="M${m.left} ${m.top}V${m.top + ph}H${m.left + pw}" fill="none" stroke="#333"/>`);
  out.push(`<text x="${m.left + pw / 2}" y="${m.top + ph + 36}" text-anchor="middle">iteration</text>`);
  out.push(
    `<text transform="translate(14 ${m.top + ph / 2}) rotate(-90)" text-anchor="middle">SWD x 1e3 (lower is better)</text>`,
  );
  const poly = (values: number[], colour: string, width: number, dash = '') =>
    `<polyline fill="none" stroke="${colour}" stroke-width="${width}"${dash ? ` stroke-dasharray="${dash}"` : ''} points="${values.map((v, k) => `${f(X(c.iterations[k]))},${f(Y(v))}`).join(' ')}"/>`;
  // The legend, along the bottom: each entry a short stroke and its name.
  const legend: [string, string, number, string][] = [];
  if (c.floor !== undefined) {
    out.push(
      `<line x1="${m.left}" x2="${m.left + pw}" y1="${f(Y(c.floor))}" y2="${f(Y(c.floor))}" stroke="#808080" stroke-width="1.5" stroke-dasharray="6 4"/>`,
    );
    legend.push([`real-vs-real floor ${c.floor.toFixed(1)}`, '#808080', 1.5, '6 4']);
  }
  c.levels.forEach((values, l) => {
    out.push(poly(values, LEVEL_COLOURS[l % LEVEL_COLOURS.length], 1.2, '3 2'));
    legend.push([`${c.resolutions[l]}x${c.resolutions[l]} level`, LEVEL_COLOURS[l % LEVEL_COLOURS.length], 1.2, '3 2']);
  });
  out.push(poly(c.mean, MEAN_COLOUR, 2.5));
  for (const [k, i] of c.iterations.entries())
    out.push(`<circle cx="${f(X(i))}" cy="${f(Y(c.mean[k]))}" r="2.5" fill="${MEAN_COLOUR}"/>`);
  legend.unshift([`mean over levels (last ${c.mean.at(-1)!.toFixed(1)})`, MEAN_COLOUR, 2.5, '']);
  let lx = m.left;
  const ly = H - 12;
  for (const [label, colour, width, dash] of legend) {
    out.push(
      `<line x1="${lx}" x2="${lx + 24}" y1="${ly - 4}" y2="${ly - 4}" stroke="${colour}" stroke-width="${width}"${dash ? ` stroke-dasharray="${dash}"` : ''}/>`,
    );
    out.push(`<text x="${lx + 30}" y="${ly}">${esc(label)}</text>`);
    lx += 30 + label.length * 6.2 + 14;
  }
  out.push('</svg>');
  return `${out.join('\n')}\n`;
}

function main(argv: string[]): void {
  const args = [...argv];
  let title: string | undefined;
  const t = args.indexOf('--title');
  if (t >= 0) {
    title = args[t + 1];
    if (title === undefined) throw new Error('--title needs a text');
    args.splice(t, 2);
  }
  if (args.length !== 1) throw new Error('usage: npx tsx scripts/swd-curve.ts RUN_DIR [--title TEXT] > swd.svg');
  const log = args[0].endsWith('.log') ? args[0] : join(args[0], 'train.log');
  process.stdout.write(curveSvg(curveFromLog(readFileSync(log, 'utf8')), { title }));
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  try {
    main(process.argv.slice(2));
  } catch (err) {
    process.stderr.write(`swd-curve: ${(err as Error).message}\n`);
    process.exitCode = 2;
  }
}
