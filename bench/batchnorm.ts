// `gan-dist bench batchnorm`: what `--batchnorm sync` costs a step against `--batchnorm shard`, on
// the seed's model with real CPU workers (local over shm and over the socket, remote workers over
// loopback) and with simulated compute (a GPU's step: the barriers' round trips are then most of
// the difference). The two modes run in turn, in rounds whose order alternates (shard, sync; then
// sync, shard), so both see the same minutes of a host whose speed drifts.

import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { resolveConfig, type TrainConfig } from '../protocol/config.ts';
import { bnLayers } from '../protocol/wire/bn-sums.ts';
import { syncBarrierPlan, type BatchNormMode } from '../protocol/wire/bn-sync.ts';
import { modelConfigOf } from '../protocol/config.ts';
import { benchNodeRun } from './nodes.ts';
import { benchTrainRun, median, steady } from './util.ts';

export type BatchNormCaseKind = 'shm' | 'socket' | 'remote';

export interface BatchNormBenchOptions {
  /** Real CPU workers per run (each with one wasm thread per core it gets). */
  workers: number;
  /** Global batch of the real runs (the seed's: 128). */
  batchSize: number;
  /** Iterations per real run; the first two are warm-up. */
  iterations: number;
  /** Rounds of (shard, sync) per case; medians over all their steady iterations. */
  rounds: number;
  cases: BatchNormCaseKind[];
  /** Simulated part: delays per shard (ms); none skips it. */
  simulateStepMs: number[];
  simulatedWorkers: number;
  rowsPerShard: number;
  simulatedIterations: number;
  progress?: (line: string) => void;
}

export interface BatchNormCase {
  /** shm | socket | remote (real CPU workers), or simulated-<transport>. */
  name: string;
  workers: number;
  batchSize: number;
  simulateStepMs: number | null;
  /** Median iteration (ms) per mode, over every round's steady iterations. */
  shardMs: number;
  syncMs: number;
  /** syncMs / shardMs - 1. */
  cost: number;
  /** Per round, the same ratio (the spread says how much of it is drift). */
  roundCosts: number[];
  iterationsCounted: number;
}

export interface BatchNormBenchReport {
  barriersPerStep: number;
  cases: BatchNormCase[];
}

async function runOnce(
  cwd: string,
  kind: BatchNormCaseKind,
  config: TrainConfig,
  workers: number,
  batchnorm: BatchNormMode,
  simulateStepMs: number | undefined,
): Promise<number[]> {
  const label = `bn-${kind}-${batchnorm}-${simulateStepMs ?? 'real'}`;
  const threadsPerWorker = simulateStepMs === undefined ? 1 : undefined;
  const result =
    kind === 'remote'
      ? await benchNodeRun(cwd, config, label, { nodes: workers, simulateStepMs, threads: 1 }, { batchnorm })
      : await benchTrainRun(cwd, config, workers, label, {
          transport: kind,
          batchnorm,
          simulateStepMs,
          threadsPerWorker,
          minWorkers: workers,
        });
  return steady(result.lines).map((l) => l.stepMs);
}

export async function benchBatchNorm(opts: BatchNormBenchOptions): Promise<BatchNormBenchReport> {
  const cwd = mkdtempSync(path.join(os.tmpdir(), 'gan-dist-bn-'));
  try {
    return await benchIn(cwd, opts);
  } finally {
    rmSync(cwd, { recursive: true, force: true });
  }
}

async function benchIn(cwd: string, opts: BatchNormBenchOptions): Promise<BatchNormBenchReport> {
  const say = opts.progress ?? (() => {});
  const seed = resolveConfig({});
  const cases: BatchNormCase[] = [];
  const measure = async (
    name: string,
    kind: BatchNormCaseKind,
    config: TrainConfig,
    workers: number,
    simulateStepMs?: number,
  ) => {
    const all: Record<BatchNormMode, number[]> = { shard: [], sync: [] };
    const roundCosts: number[] = [];
    for (let round = 0; round < opts.rounds; round++) {
      const order: BatchNormMode[] = round % 2 === 0 ? ['shard', 'sync'] : ['sync', 'shard'];
      const got: Partial<Record<BatchNormMode, number[]>> = {};
      for (const mode of order) {
        say(
          `batchnorm ${mode}: ${name}, ${workers} workers, batch ${config.batchSize}, round ${round + 1}/${opts.rounds}`,
        );
        got[mode] = await runOnce(cwd, kind, config, workers, mode, simulateStepMs);
        all[mode].push(...got[mode]!);
      }
      roundCosts.push(median(got.sync!) / median(got.shard!) - 1);
    }
    const shardMs = median(all.shard);
    const syncMs = median(all.sync);
    cases.push({
      name,
      workers,
      batchSize: config.batchSize,
      simulateStepMs: simulateStepMs ?? null,
      shardMs,
      syncMs,
      cost: syncMs / shardMs - 1,
      roundCosts,
      iterationsCounted: all.sync.length,
    });
  };

  const real = resolveConfig({
    flags: { batchSize: opts.batchSize, iterations: opts.iterations, validationFrequency: 1e6 },
  });
  for (const kind of opts.cases) await measure(kind, kind, real, opts.workers);
  for (const S of opts.simulateStepMs) {
    const config = resolveConfig({
      flags: {
        batchSize: opts.rowsPerShard * opts.simulatedWorkers,
        iterations: opts.simulatedIterations,
        validationFrequency: 1e6,
      },
    });
    for (const kind of ['shm', 'socket'] as const)
      await measure(`simulated-${kind}`, kind, config, opts.simulatedWorkers, S);
  }
  return { barriersPerStep: syncBarrierPlan(bnLayers(modelConfigOf(seed))).length, cases };
}

const pct = (x: number) => `${x >= 0 ? '+' : ''}${(100 * x).toFixed(1)} %`;

export function formatBatchNormBench(r: BatchNormBenchReport): string {
  const rows = r.cases.map((c) => {
    const what =
      c.simulateStepMs === null
        ? `${c.name}, ${c.workers} CPU workers, batch ${c.batchSize}`
        : `${c.name}, ${c.workers} workers, S = ${c.simulateStepMs} ms, batch ${c.batchSize}`;
    return `| ${what} | ${c.shardMs.toFixed(0)} ms | ${c.syncMs.toFixed(0)} ms | ${pct(c.cost)} (rounds: ${c.roundCosts.map(pct).join(', ')}) |`;
  });
  return [
    `--batchnorm sync against shard: ${r.barriersPerStep} barriers a step on the seed's model; median iteration over every round's steady iterations`,
    '',
    '| case | shard | sync | cost |',
    '| --- | --- | --- | --- |',
    ...rows,
  ].join('\n');
}
