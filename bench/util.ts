// What the benchmarks share: medians, best-of timings, the steady part of a run, and a short
// training run on synthetic data whose train.log iteration lines they read.

import { readFileSync } from 'node:fs';
import path from 'node:path';
import type { TrainConfig } from '../protocol/config.ts';
import type { TrainOptions } from '../coordinator/train/train.ts';

/** The median (the mean of the middle two for an even count); NaN for none. */
export const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? (s[Math.floor((s.length - 1) / 2)] + s[Math.ceil((s.length - 1) / 2)]) / 2 : NaN;
};

/** The fastest of `repeats` runs of `run`, in ms. */
export function best(repeats: number, run: () => void): number {
  let min = Infinity;
  for (let r = 0; r < repeats; r++) {
    const t0 = performance.now();
    run();
    min = Math.min(min, performance.now() - t0);
  }
  return min;
}

/** Warm-up excluded: the first quarter of the iterations (at least 2) is not counted. */
export const steady = <T>(xs: T[]): T[] => xs.slice(Math.max(2, Math.floor(xs.length / 4)));

/** The `iteration` lines of a run's train.log. */
export function iterationLines(runDir: string): Record<string, number>[] {
  return readFileSync(path.join(runDir, 'train.log'), 'utf8')
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l))
    .filter((l) => l.msg === 'iteration');
}

/**
 * A benchmark's training run: synthetic data, local wasm workers on loopback, no checkpoint but
 * the final one when asked, in a run directory of its own under `cwd`.
 */
export async function benchTrainRun(
  cwd: string,
  config: TrainConfig,
  workers: number,
  label: string,
  extra: Partial<TrainOptions> & { checkpoint?: boolean } = {},
): Promise<{ runDir: string; lines: Record<string, number>[] }> {
  const { checkpoint, ...options } = extra;
  // Loaded here, so the step benchmark (a worker's) can share the statistics without the coordinator.
  const { train } = await import('../coordinator/train/train.ts');
  const result = await train({
    config,
    data: 'synthetic',
    listen: '127.0.0.1:0',
    workers,
    backend: 'wasm',
    checkpointEvery: 0,
    keepCheckpoints: 1,
    runDir: path.join(cwd, `run-${label}-${Date.now()}`),
    cwd,
    skipFinalCheckpoint: checkpoint !== true,
    ...options,
  });
  return { runDir: result.runDir, lines: iterationLines(result.runDir) };
}
