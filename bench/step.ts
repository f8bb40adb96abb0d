// `gan-dist bench step`: one worker's training step (modelLoss on a shard: both networks'
// forward and backward passes) per backend and batch: the first step (shader compilation on a GPU
// backend) apart from the steady-state median, img/s and the ratio to the first backend listed, and
// what the steps leave behind (tensors, bytes), all measured in one run.

import { resolveConfig, modelConfigOf, type ModelConfig, type PresetName } from '../protocol/config.ts';
import { GanDistError } from '../protocol/errors.ts';
import { Rng } from '../protocol/rng.ts';
import { initialParams, parameterTable, type NamedArrays } from '../protocol/model/architecture.ts';
import type { BackendName } from '../protocol/backends.ts';
import { loadBackend, type LoadedBackend } from '../worker/backend.ts';
import { Trainer, type Shard } from '../worker/trainer.ts';
import { median } from './util.ts';

/** A time box never cuts a backend's timed steps below this many: a median needs more than one. */
export const MIN_TIMED_STEPS = 2;

export interface StepBenchOptions {
  backends: BackendName[];
  /** Shard sizes, each measured on every backend (default: the preset's batch). */
  batches?: number[];
  preset?: PresetName;
  /** Timed steps per backend and batch (after warm-up). */
  steps: number;
  /** Untimed steps first, at least 1: the first of them is reported as the first step. */
  warmup: number;
  /** Time box per backend and batch: timed steps stop once they have taken this long (at least MIN_TIMED_STEPS run). */
  maxSeconds?: number;
  threads?: number;
  progress?: (line: string) => void;
  /** Progress per backend and batch only, not per step. */
  quietSteps?: boolean;
}

export interface StepBenchRow {
  backend: string;
  device: string;
  /** WebGPU on a software adapter (lavapipe): its figures are CPU figures, never GPU ones. */
  softwareAdapter: boolean;
  threads: number;
  batch: number;
  /** The first step at this batch on this backend: shader compilation and first allocations on a GPU. */
  firstStepMs: number;
  stepMsMedian: number;
  stepMsMin: number;
  /** Timed steps: `steps`, or fewer where the time box ended them. */
  steps: number;
  imagesPerSec: number;
  /** img/s over the first backend's at the same batch. */
  ratioToFirst: number;
  /** Growth over the timed steps, per step: live tensors and their bytes (tf.memory()). */
  tensorsPerStep: number;
  bytesPerStep: number;
  /** Growth of the resident set over the timed steps, MB. */
  rssGrowthMB: number;
  /** WebGPU: bytes its buffer manager holds on the device after the timed steps, and their growth over them, MB. */
  gpuAllocatedMB?: number;
  gpuAllocatedGrowthMB?: number;
}

export interface StepBenchReport {
  model: ModelConfig;
  preset: PresetName | 'seed';
  batches: number[];
  steps: number;
  warmup: number;
  maxSeconds?: number;
  rows: StepBenchRow[];
}

const MB = 1024 * 1024;

/** The buffer manager's device bytes, where the backend reports them (WebGPU's memory()). */
function gpuAllocatedBytes(tf: LoadedBackend['tf']): number | undefined {
  const m = tf.memory() as { numBytesAllocatedInGPU?: number };
  return m.numBytesAllocatedInGPU;
}

/** Synthetic shards of one batch size, the same on every backend. */
function shardsOf(model: ModelConfig, batch: number): (iteration: number) => Shard {
  const rng = new Rng(batch);
  const s = model.imageSize;
  const images = new Uint8Array(batch * s * s * 3).map(() => rng.nextU32() & 255);
  return (iteration) => ({
    iteration,
    rowStart: 0,
    n: batch,
    images,
    z: rng.fillNormal(new Float32Array(batch * model.latent)),
    flip: rng.bernoulli(batch, 0.35),
  });
}

async function benchCell(
  loaded: LoadedBackend,
  model: ModelConfig,
  weights: NamedArrays,
  batch: number,
  opts: StepBenchOptions,
): Promise<StepBenchRow> {
  const { tf, info } = loaded;
  const shard = shardsOf(model, batch);
  // The device's bounds and health, as a worker's trainer has them (a shard over a limit is refused by name).
  const trainer = new Trainer(tf, model, 1, { device: loaded.device });
  trainer.setWeights(weights);
  try {
    const warm: number[] = [];
    for (let i = 0; i < opts.warmup; i++) {
      const t0 = performance.now();
      await trainer.step(shard(i + 1));
      warm.push(performance.now() - t0);
    }
    opts.progress?.(`  ${info.name}, batch ${batch}: first step ${warm[0].toFixed(0)} ms`);
    const before = { ...tf.memory(), rss: process.memoryUsage().rss, gpu: gpuAllocatedBytes(tf) };
    const times: number[] = [];
    const deadline = performance.now() + (opts.maxSeconds ?? Infinity) * 1000;
    for (let i = 0; i < opts.steps; i++) {
      const t0 = performance.now();
      await trainer.step(shard(opts.warmup + i + 1));
      times.push(performance.now() - t0);
      if (!opts.quietSteps)
        opts.progress?.(`  ${info.name}, batch ${batch}: step ${i + 1}/${opts.steps}: ${times.at(-1)!.toFixed(0)} ms`);
      if (times.length >= MIN_TIMED_STEPS && performance.now() > deadline) break;
    }
    const after = { ...tf.memory(), rss: process.memoryUsage().rss, gpu: gpuAllocatedBytes(tf) };
    const med = median(times);
    opts.progress?.(
      `  ${info.name}, batch ${batch}: ${med.toFixed(1)} ms/step (median of ${times.length}), ${((batch * 1000) / med).toFixed(1)} img/s`,
    );
    return {
      backend: info.name,
      device: info.device,
      softwareAdapter: loaded.adapter?.isFallbackAdapter ?? false,
      threads: info.threads,
      batch,
      firstStepMs: warm[0],
      stepMsMedian: med,
      stepMsMin: Math.min(...times),
      steps: times.length,
      imagesPerSec: (batch * 1000) / med,
      ratioToFirst: 0,
      tensorsPerStep: (after.numTensors - before.numTensors) / times.length,
      bytesPerStep: (after.numBytes - before.numBytes) / times.length,
      rssGrowthMB: (after.rss - before.rss) / MB,
      ...(after.gpu !== undefined && before.gpu !== undefined
        ? { gpuAllocatedMB: after.gpu / MB, gpuAllocatedGrowthMB: (after.gpu - before.gpu) / MB }
        : {}),
    };
  } finally {
    trainer.dispose();
  }
}

export async function benchStep(opts: StepBenchOptions): Promise<StepBenchReport> {
  if (!(opts.warmup >= 1))
    throw new GanDistError(
      'GAN_DIST_E_CONFIG',
      `--warmup: ${opts.warmup} is below 1 (the first step is reported apart)`,
    );
  const config = resolveConfig({ preset: opts.preset });
  const model = modelConfigOf(config);
  const batches = opts.batches ?? [config.batchSize];
  const weights = initialParams(parameterTable(model), 1);
  const rows: StepBenchRow[] = [];
  for (const name of opts.backends) {
    const loaded = await loadBackend(name, { threads: opts.threads });
    opts.progress?.(
      `${loaded.info.name}: ${loaded.info.device}, batches ${batches.join(', ')}, ${opts.warmup} warm-up + up to ${opts.steps} timed steps`,
    );
    try {
      for (const batch of batches) rows.push(await benchCell(loaded, model, weights, batch, opts));
    } finally {
      loaded.close();
    }
  }
  for (const r of rows) {
    const first = rows.find((x) => x.batch === r.batch)!;
    r.ratioToFirst = r.imagesPerSec / first.imagesPerSec;
  }
  return {
    model,
    preset: opts.preset ?? 'seed',
    batches,
    steps: opts.steps,
    warmup: opts.warmup,
    ...(opts.maxSeconds !== undefined ? { maxSeconds: opts.maxSeconds } : {}),
    rows,
  };
}

const fixed = (x: number, digits: number) =>
  x.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits });

/** The human view of a report: one line per backend and batch, the software adapter marked. */
export function formatStepBench(r: StepBenchReport): string {
  const baseline = r.rows[0]?.backend ?? '';
  const box = r.maxSeconds !== undefined ? `, time box ${r.maxSeconds} s` : '';
  const head = `model ${r.model.imageSize}x${r.model.imageSize}, ${r.model.filters} filters (${r.preset}); median of up to ${r.steps} timed steps after ${r.warmup} warm-up${box}; the first step apart`;
  const cols = [
    'backend',
    'batch',
    'first ms',
    'ms/step',
    'min ms',
    'steps',
    'img/s',
    `vs ${baseline}`,
    'tensors/step',
    'RSS MB',
  ];
  const lines = r.rows.map((x) => [
    `${x.backend}${x.softwareAdapter ? '*' : ''}`,
    String(x.batch),
    fixed(x.firstStepMs, 0),
    fixed(x.stepMsMedian, 0),
    fixed(x.stepMsMin, 0),
    String(x.steps),
    fixed(x.imagesPerSec, 2),
    `${fixed(x.ratioToFirst, 3)}x`,
    fixed(x.tensorsPerStep, 1),
    `${x.rssGrowthMB >= 0 ? '+' : ''}${fixed(x.rssGrowthMB, 1)}`,
  ]);
  const widths = cols.map((c, i) => Math.max(c.length, ...lines.map((l) => l[i].length)));
  const row = (cells: string[]) =>
    `  ${cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join('  ')}`;
  const devices = [...new Map(r.rows.map((x) => [x.backend, x])).values()].map(
    (x) => `  ${x.backend}: ${x.device}${x.softwareAdapter ? '  * software adapter: CPU figures, not GPU ones' : ''}`,
  );
  return [head, row(cols), ...lines.map(row), ...devices].join('\n');
}
