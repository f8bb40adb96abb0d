// A generated, finished run directory for the dashboard's tests and benchmark (scripts/
// bench-web.ts): a train.log of N iterations as a two-worker run writes it (events, iteration
// lines with shards, sample grids every K iterations, optionally SWD evaluations), the grids as
// PNG files and the run's monitor and control credentials.

import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import sharp from 'sharp';
import { newRoleTokens, writeTokenFile } from '../protocol/wire/auth.ts';
import { sampleFileName } from '../protocol/run/samples.ts';

export interface RunFixtureOptions {
  iterations: number;
  /** Iterations between sample grids (and the first at iteration 1). */
  sampleEvery?: number;
  /** Iterations between SWD evaluations (0: none). */
  evalEvery?: number;
  /** What the workers say they are: a worker supplies this string. */
  device?: string;
  dir?: string;
}

export interface RunFixture {
  runDir: string;
  monitorToken: string;
  controlToken: string;
  /** The iteration numbers logged, in order. */
  iterations: number[];
  samples: number[];
}

/** A 5x5 grid of 32-pixel tiles, its colours drifting with the iteration. */
async function grid(file: string, iteration: number): Promise<void> {
  const size = 160;
  const rgb = Buffer.alloc(size * size * 3);
  for (let y = 0; y < size; y++)
    for (let x = 0; x < size; x++) {
      const tile = Math.floor(y / 32) * 5 + Math.floor(x / 32);
      const o = (y * size + x) * 3;
      rgb[o] = (tile * 37 + iteration) % 256;
      rgb[o + 1] = (tile * 91 + x + iteration * 3) % 256;
      rgb[o + 2] = (tile * 53 + y) % 256;
    }
  await sharp(rgb, { raw: { width: size, height: size, channels: 3 } })
    .png()
    .toFile(file);
}

export async function writeRunFixture(opts: RunFixtureOptions): Promise<RunFixture> {
  const runDir = opts.dir ?? path.join(mkdtempSync(path.join(tmpdir(), 'gan-dist-webrun-')), 'run');
  mkdirSync(path.join(runDir, 'samples'), { recursive: true });
  const n = opts.iterations;
  const every = opts.sampleEvery ?? 100;
  const device = opts.device ?? 'CPU (wasm, SIMD, 2 threads)';
  const t0 = Date.parse('2026-11-28T12:00:00.000Z');
  const lines: string[] = [];
  let clock = t0;
  const at = (ms: number) => {
    clock += ms;
    return new Date(clock).toISOString();
  };
  const event = (event: string, fields: Record<string, unknown> = {}, level = 'info') =>
    lines.push(JSON.stringify({ level, time: at(5), event, ...fields, msg: 'event' }));
  const config = { epochs: 500, iterations: n, batchSize: 16, validationFrequency: every, imageSize: 32, filters: 16 };
  writeFileSync(path.join(runDir, 'config.json'), JSON.stringify(config, null, 2));
  event('config', { config, data: 'synthetic', resume: false });
  event('data-ready', { source: 'synthetic', images: 2048, imageSize: 32 });
  event('listening', { endpoint: '127.0.0.1:7070' });
  if (opts.evalEvery) event('eval-floor', { iteration: 0, swd: 27.5, count: 128 });
  event('state', { from: 'starting', to: 'waiting', minWorkers: 2 });
  for (const w of [1, 2])
    event('worker-joined', { worker: w, role: 'worker', address: `127.0.0.1:5000${w}`, backend: 'wasm', device });
  event('state', { from: 'waiting', to: 'running', iteration: 0, maxIterations: n });
  const iterations: number[] = [];
  const samples: number[] = [];
  const ipe = 2048 / 16;
  for (let i = 1; i <= n; i++) {
    const p = i / n;
    const wobble = Math.sin(i / 7) * 0.05;
    lines.push(
      JSON.stringify({
        level: 'info',
        time: at(250),
        iteration: i,
        epoch: Math.floor((i - 1) / ipe) + 1,
        iterationInEpoch: ((i - 1) % ipe) + 1,
        scoreG: +(0.47 - 0.3 * p + wobble).toFixed(5),
        scoreD: +(0.5 + 0.2 * p - wobble).toFixed(5),
        lossG: +(0.8 + 1.2 * p + wobble).toFixed(5),
        lossD: +(1.5 - 0.6 * p - wobble).toFixed(5),
        imagesPerSec: +(60 + 5 * Math.cos(i / 3)).toFixed(2),
        stepMs: 250,
        workers: 2,
        shards: [
          { worker: 1, rows: 8, computeMs: 240 },
          { worker: 2, rows: 8, computeMs: 245 },
        ],
        msg: 'iteration',
      }),
    );
    iterations.push(i);
    if (i === 1 || i % every === 0) {
      const file = path.join(runDir, 'samples', sampleFileName(i));
      await grid(file, i);
      samples.push(i);
      event('sample-written', { iteration: i, path: file });
    }
    if (opts.evalEvery && i % opts.evalEvery === 0)
      event('eval', { iteration: i, swd: +(200 * Math.exp(-i / n) + 27.5).toFixed(2), floor: 27.5, count: 128 });
  }
  event('state', { from: 'running', to: 'stopping', reason: 'iteration bound reached' });
  event('checkpoint-written', { iteration: n, path: path.join(runDir, 'checkpoints', 'iter-final'), ms: 200 });
  for (const w of [1, 2]) event('worker-left', { worker: w, reason: `connection closed: ${device} went away` });
  event('state', { from: 'stopping', to: 'finished' });
  event('run-finished', { iteration: n });
  writeFileSync(path.join(runDir, 'train.log'), `${lines.join('\n')}\n`);
  const tokens = newRoleTokens();
  await writeTokenFile(path.join(runDir, 'monitor.token'), { token: tokens.monitor, role: 'monitor' });
  await writeTokenFile(path.join(runDir, 'control.token'), { token: tokens.control, role: 'control' });
  return { runDir, monitorToken: tokens.monitor, controlToken: tokens.control, iterations, samples };
}
