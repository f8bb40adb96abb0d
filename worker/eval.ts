// `gan-dist eval`: how close a checkpoint's generator comes to the real images, as ProGAN's
// sliced Wasserstein distance (metrics/swd.ts), with the real-vs-real value as its floor.

import { readFileSync } from 'node:fs';
import { modelConfigOf, type ModelConfig } from '../protocol/config.ts';
import { assertSameTable, loadCheckpoint, loadLatestCheckpoint } from '../protocol/run/checkpoint.ts';
import { GanDistError } from '../protocol/errors.ts';
import { resolveRunDir } from '../protocol/run/run-dir.ts';
import {
  DEFAULT_EVAL_COUNT,
  DEFAULT_EVAL_SEED,
  evalLatents,
  realSets,
  type RealSets,
  type SwdEvaluator,
  type SwdOptions,
  type SwdResult,
} from '../metrics/swd.ts';
import { openDataset, silentLog, type DataLog, type ResizeMode } from '../data/index.ts';
import { parameterTable, type NamedArrays } from '../protocol/model/architecture.ts';
import type { BackendInfo, BackendName } from '../protocol/backends.ts';
import { loadBackend, type TF } from './backend.ts';
import { generateImages } from './export.ts';

/** SWD of G (given by its parameters) against an evaluator's real set, on evalLatents(count, latent, seed). */
export async function scoreGenerator(
  tf: TF,
  cfg: ModelConfig,
  params: NamedArrays,
  evaluator: SwdEvaluator,
  seed: number,
): Promise<SwdResult> {
  const z = evalLatents(evaluator.count, cfg.latent, seed);
  return evaluator.swd(await generateImages(tf, cfg, params, z, evaluator.count));
}

export interface EvalOptions {
  /** A run directory, runs/latest, or a checkpoint (directory or a file in it). */
  checkpoint: string;
  /** 'synthetic', 'flowers' or a folder; default: the data the run trained on (its config.json). */
  data?: string;
  /** Generated images, and real images in each of the two real sets. */
  count?: number;
  /** Seeds the latents, the real images picked, patch positions and directions. */
  seed?: number;
  resize?: ResizeMode;
  /** Decoded-image cache root (data/'s default when absent). */
  cacheDir?: string;
  backend?: BackendName;
  cwd?: string;
  swd?: SwdOptions;
  /** Told about damaged checkpoints skipped on the way to an intact one. */
  onWarning?: (message: string) => void;
  /** Data pipeline events (decode progress); default: none. */
  dataLog?: DataLog;
}

export interface EvalResult {
  checkpoint: string;
  iteration: number;
  runId: string;
  data: string;
  imageSize: number;
  count: number;
  seed: number;
  backend: BackendInfo;
  /** SWD x 1e3, generated vs real, per level and mean. */
  swd: SwdResult;
  /** SWD x 1e3 between two disjoint real sets of the same size: what a perfect G would score. */
  floor: SwdResult;
  seconds: number;
}

function runData(configPath: string): string | undefined {
  try {
    return (JSON.parse(readFileSync(configPath, 'utf8')) as { data?: string }).data;
  } catch {
    return undefined;
  }
}

/** `gan-dist eval`: SWD between a checkpoint's G and the real images, and the real-vs-real floor. */
export async function evaluateCheckpoint(opts: EvalOptions): Promise<EvalResult> {
  const t0 = performance.now();
  const count = opts.count ?? DEFAULT_EVAL_COUNT;
  const seed = opts.seed ?? DEFAULT_EVAL_SEED;
  if (!Number.isInteger(count) || count < 1) {
    throw new GanDistError(
      'GAN_DIST_E_USAGE',
      `--count: ${count} is not a positive integer`,
      'give --count an integer >= 1',
    );
  }
  if (!Number.isSafeInteger(seed) || seed < 0) {
    throw new GanDistError(
      'GAN_DIST_E_USAGE',
      `--seed: ${seed} is not a non-negative integer`,
      'give --seed an integer >= 0',
    );
  }
  const run = resolveRunDir(opts.checkpoint, opts.cwd);
  const cp =
    run.checkpoint !== undefined
      ? await loadCheckpoint(run.checkpoint)
      : await loadLatestCheckpoint(run.path, { onWarning: opts.onWarning });
  const cfg = modelConfigOf(cp.config);
  assertSameTable(cp.path, cp.specs, parameterTable(cfg));
  const data = opts.data ?? runData(run.configPath);
  if (data === undefined) {
    throw new GanDistError(
      'GAN_DIST_E_USAGE',
      `${run.path} does not say what data it trained on`,
      'name the real images with --data DIR, --data flowers or --data synthetic',
    );
  }

  // The synthetic set is drawn from the run's seed, so 'synthetic' means the pictures it trained on.
  const dataset = await openDataset({
    data,
    imageSize: cfg.imageSize,
    seed: cp.config.seed,
    resize: opts.resize,
    cacheDir: opts.cacheDir,
    log: opts.dataLog ?? silentLog,
  });
  let sets: RealSets;
  try {
    if (dataset.size < 2 * count) {
      throw new GanDistError(
        'GAN_DIST_E_USAGE',
        `--count ${count} needs ${2 * count} real images (${count} to compare with, ${count} more for the real-vs-real floor); ${dataset.source} has ${dataset.size}`,
        `use --count ${Math.floor(dataset.size / 2)} or less`,
      );
    }
    sets = realSets(dataset, count, seed, opts.swd);
  } finally {
    dataset.close();
  }

  const { tf, info } = await loadBackend(opts.backend ?? 'auto');
  const swd = await scoreGenerator(tf, cfg, cp.params, sets.evaluator, seed);
  const floor = sets.evaluator.swdUint8(sets.holdout);
  return {
    checkpoint: cp.path,
    iteration: cp.iteration,
    runId: cp.runId,
    data: dataset.source,
    imageSize: cfg.imageSize,
    count,
    seed,
    backend: info,
    swd,
    floor,
    seconds: (performance.now() - t0) / 1000,
  };
}

/** The result as a small table, levels as columns. */
export function formatEval(r: EvalResult): string {
  const head = ['', ...r.swd.resolutions.map((s) => `${s}x${s}`), 'mean'];
  const row = (name: string, x: SwdResult) => [name, ...x.levels.map((v) => v.toFixed(2)), x.mean.toFixed(2)];
  const rows = [head, row('G vs real', r.swd), row('real vs real (floor)', r.floor)];
  const widths = head.map((_, c) => Math.max(...rows.map((cells) => cells[c].length)));
  const table = rows
    .map((cells) => cells.map((v, c) => (c === 0 ? v.padEnd(widths[c]) : v.padStart(widths[c]))).join('  '))
    .join('\n');
  return (
    `SWD x 1e3 per Laplacian level (lower is better), iteration ${r.iteration} (${r.checkpoint})\n` +
    `${r.count} generated vs ${r.count} real images of ${r.data}, seed ${r.seed}, ${r.backend.device}, ${r.seconds.toFixed(1)} s\n` +
    table
  );
}
