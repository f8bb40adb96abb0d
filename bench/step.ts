// `gan-dist bench step`: one worker's training step (modelLoss on a shard: both networks'
// forward and backward passes) per backend, warm-up excluded, median of several; img/s and the
// ratio to the first backend listed, all measured in one run.

import { resolveConfig, modelConfigOf, type PresetName } from '../protocol/config.ts';
import { Rng } from '../protocol/rng.ts';
import { initialParams, parameterTable } from '../protocol/model/architecture.ts';
import type { BackendName } from '../protocol/backends.ts';
import { loadBackend } from '../worker/backend.ts';
import { Trainer, type Shard } from '../worker/trainer.ts';
import { median } from './util.ts';

export interface StepBenchOptions {
  backends: BackendName[];
  batch?: number;
  preset?: PresetName;
  /** Timed steps per backend (after warm-up). */
  steps: number;
  warmup: number;
  threads?: number;
  progress?: (line: string) => void;
}

export interface StepBenchRow {
  backend: string;
  device: string;
  threads: number;
  batch: number;
  stepMsMedian: number;
  stepMsMin: number;
  imagesPerSec: number;
  ratioToFirst: number;
  tensorsLeakedPerStep: number;
}

export interface StepBenchReport {
  model: { imageSize: number; filters: number; latent: number };
  batch: number;
  steps: number;
  warmup: number;
  rows: StepBenchRow[];
}

export async function benchStep(opts: StepBenchOptions): Promise<StepBenchReport> {
  const config = resolveConfig({ preset: opts.preset });
  const model = modelConfigOf(config);
  const batch = opts.batch ?? config.batchSize;
  const rng = new Rng(1);
  const s = model.imageSize;
  const images = new Uint8Array(batch * s * s * 3).map(() => rng.nextU32() & 255);
  const shard = (iteration: number): Shard => ({
    iteration,
    rowStart: 0,
    n: batch,
    images,
    z: rng.fillNormal(new Float32Array(batch * model.latent)),
    flip: rng.bernoulli(batch, 0.35),
  });
  const weights = initialParams(parameterTable(model), 1);
  const rows: StepBenchRow[] = [];
  for (const name of opts.backends) {
    const { tf, info } = await loadBackend(name, { threads: opts.threads });
    opts.progress?.(`${info.name}: ${info.device}, batch ${batch}, ${opts.warmup} warm-up + ${opts.steps} timed steps`);
    const trainer = new Trainer(tf, model, 1);
    trainer.setWeights(weights);
    for (let i = 0; i < opts.warmup; i++) await trainer.step(shard(i + 1));
    const tensorsBefore = tf.memory().numTensors;
    const times: number[] = [];
    for (let i = 0; i < opts.steps; i++) {
      const t0 = performance.now();
      await trainer.step(shard(opts.warmup + i + 1));
      times.push(performance.now() - t0);
      opts.progress?.(`  step ${i + 1}/${opts.steps}: ${times.at(-1)!.toFixed(0)} ms`);
    }
    const leaked = (tf.memory().numTensors - tensorsBefore) / opts.steps;
    trainer.dispose();
    const med = median(times);
    rows.push({
      backend: info.name,
      device: info.device,
      threads: info.threads,
      batch,
      stepMsMedian: med,
      stepMsMin: Math.min(...times),
      imagesPerSec: (batch * 1000) / med,
      ratioToFirst: 0,
      tensorsLeakedPerStep: leaked,
    });
  }
  for (const r of rows) r.ratioToFirst = r.imagesPerSec / rows[0].imagesPerSec;
  return { model, batch, steps: opts.steps, warmup: opts.warmup, rows };
}

export function formatStepBench(r: StepBenchReport): string {
  const head = `model ${r.model.imageSize}x${r.model.imageSize}, ${r.model.filters} filters; batch ${r.batch}; median of ${r.steps} steps after ${r.warmup} warm-up`;
  return [
    head,
    ...r.rows.map(
      (x) =>
        `  ${x.backend.padEnd(10)} ${x.stepMsMedian.toFixed(0).padStart(7)} ms/step  ${x.imagesPerSec.toFixed(2).padStart(8)} img/s  ${x.ratioToFirst.toFixed(3)}x  (${x.device})`,
    ),
  ].join('\n');
}
