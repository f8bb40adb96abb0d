// The pieces of one iteration that are plain data: the shard split and frames cut from the batch,
// the check of each answer, the scores and BatchNorm sums pooled over them, and the record (and
// log line) the iteration leaves.

import type { TrainConfig } from '../protocol/config.ts';
import { sizeOf, type ParamSpec } from '../protocol/model/architecture.ts';
import { bnTensorCount, checkBnSums, readBnSums, type BnLayer, type BnSumsByLayer } from '../protocol/wire/bn-sums.ts';
import { encodeMessage, type GradientsMessage } from '../protocol/wire/protocol.ts';
import type { Batch } from '../data/batches.ts';
import type { ShardAnswer, ShardTask, WorkerSlot } from './dispatcher.ts';
import type { RunLogger } from './logger.ts';
import { splitRows } from './optimizer/reduce.ts';

export interface IterationRecord {
  iteration: number;
  epoch: number;
  iterationInEpoch: number;
  scoreG: number;
  scoreD: number;
  lossG: number;
  lossD: number;
  imagesPerSec: number;
  stepMs: number;
  computeMsMax: number;
  computeMsMean: number;
  commMs: number;
  adamMs: number;
  /** Time spent summing gradients as they arrived (overlapping the gather). */
  reduceMs: number;
  /** Distinct workers that computed this iteration's shards. */
  workers: number;
  /** Per shard: who computed it, its rows and compute time (the workers table's img/s). */
  shards: { worker: number; rows: number; computeMs: number }[];
}

/** What every shard of iteration `iteration` is cut from: the batch and its whole-batch draws. */
export interface IterationInputs {
  iteration: number;
  weightsVersion: number;
  batch: Batch;
  z: Float32Array;
  flip: Uint8Array;
}

/**
 * One weight per shard: each live peer's capacity (1 for a worker, its local worker count for a
 * node), 1 for shards beyond the live peers; or (--balance throughput) each live peer's measured
 * rows per ms.
 */
export function shardWeights(live: WorkerSlot[], count: number, balance: 'off' | 'throughput' = 'off'): number[] {
  if (balance !== 'throughput') return Array.from({ length: count }, (_, i) => live[i]?.capacity ?? 1);
  const known = live.map((w) => w.rowsPerMs).filter((x): x is number => x !== undefined);
  const mean = known.length ? known.reduce((a, b) => a + b, 0) / known.length : 1;
  return Array.from({ length: count }, (_, i) => live[i]?.rowsPerMs ?? mean);
}

/**
 * The shards of one iteration, one per weight, each with its frame encoded once; ids from
 * `firstId` up (a synced round cut again takes new ids, so nothing sent for the old cut matches).
 */
export function shardTasks(cfg: TrainConfig, inputs: IterationInputs, weights: number[], firstId = 0): ShardTask[] {
  const { batch, z, flip } = inputs;
  const rows = { images: batch.images, z, flip, rowStart: 0 };
  return cutShards(cfg, inputs.iteration, inputs.weightsVersion, rows, splitRows(cfg.batchSize, weights), firstId);
}

/**
 * Shard tasks cut from consecutive rows (the coordinator's batch, or a node's own shard) at
 * `parts`, row ranges within them; each frame names its global rows (`rows.rowStart` + the
 * part's start), which the workers' dropout masks are keyed by.
 */
export function cutShards(
  cfg: { imageSize: number; latent: number },
  iteration: number,
  weightsVersion: number,
  rows: { images: Uint8Array; z: Float32Array; flip: Uint8Array; rowStart: number },
  parts: { rowStart: number; rowCount: number }[],
  firstId = 0,
): ShardTask[] {
  const px = cfg.imageSize * cfg.imageSize * 3;
  return parts.map((p, i) => {
    const shardId = firstId + i;
    const rowStart = rows.rowStart + p.rowStart;
    const end = p.rowStart + p.rowCount;
    return {
      shardId,
      rowStart,
      rowCount: p.rowCount,
      done: false,
      nonFiniteFrom: new Set<number>(),
      frame: encodeMessage({
        type: 'shard',
        iteration,
        weightsVersion,
        shardId,
        rowStart,
        rowCount: p.rowCount,
        tensors: {
          images: rows.images.subarray(p.rowStart * px, end * px),
          z: rows.z.subarray(p.rowStart * cfg.latent, end * cfg.latent),
          flip: rows.flip.subarray(p.rowStart, end),
        },
        shapes: {
          images: [p.rowCount, cfg.imageSize, cfg.imageSize, 3],
          z: [p.rowCount, cfg.latent],
          flip: [p.rowCount],
        },
      }),
    };
  });
}

/** What is wrong with a worker's gradients message, or undefined: one tensor per learnable and BatchNorm sum, each of its size. */
export function gradientsProblem(m: GradientsMessage, learnables: ParamSpec[], layers: BnLayer[]): string | undefined {
  for (const s of learnables) {
    const g = m.tensors[s.name];
    if (!g) return `missing gradient for ${s.name}`;
    if (g.length !== sizeOf(s.shape)) return `gradient ${s.name} has ${g.length} values, expected ${sizeOf(s.shape)}`;
  }
  const bad = checkBnSums(m.tensors, layers);
  if (bad) return bad;
  const expected = learnables.length + bnTensorCount(layers);
  if (Object.keys(m.tensors).length !== expected)
    return `carries ${Object.keys(m.tensors).length} tensors, expected ${expected}`;
  return undefined;
}

/** Scores and losses as batch means, and each shard's BatchNorm sums, in shard order. */
export interface PooledAnswers {
  scoreG: number;
  scoreD: number;
  lossG: number;
  lossD: number;
  bn: BnSumsByLayer[];
}

/**
 * Pools the answers in shard order, whatever order they arrived in: the sums, hence the run, are
 * reproducible. Sorts `answers` in place.
 */
export function poolAnswers(answers: ShardAnswer[], layers: BnLayer[], batchSize: number): PooledAnswers {
  answers.sort((a, b) => a.task.shardId - b.task.shardId);
  const out: PooledAnswers = { scoreG: 0, scoreD: 0, lossG: 0, lossD: 0, bn: [] };
  for (const { msg } of answers) {
    out.scoreG += msg.n * msg.scoreG;
    out.scoreD += msg.n * msg.scoreD;
    out.lossG += msg.n * msg.lossG;
    out.lossD += msg.n * msg.lossD;
    out.bn.push(readBnSums(msg.tensors, layers, msg.n));
  }
  out.scoreG /= batchSize;
  out.scoreD /= batchSize;
  out.lossG /= batchSize;
  out.lossD /= batchSize;
  return out;
}

/** When the iteration's phases ended (performance.now()), and the time its reduction took. */
export interface IterationTimes {
  start: number;
  sent: number;
  gathered: number;
  end: number;
  adamMs: number;
  reduceMs: number;
}

export function iterationRecord(
  inputs: IterationInputs,
  answers: ShardAnswer[],
  pooled: PooledAnswers,
  times: IterationTimes,
): IterationRecord {
  const computes = answers.map((r) => r.msg.timings.computeMs);
  const stepMs = times.end - times.start;
  return {
    iteration: inputs.iteration,
    epoch: inputs.batch.epoch,
    iterationInEpoch: inputs.batch.iteration,
    scoreG: pooled.scoreG,
    scoreD: pooled.scoreD,
    lossG: pooled.lossG,
    lossD: pooled.lossD,
    imagesPerSec: (inputs.batch.batchSize * 1000) / stepMs,
    stepMs,
    computeMsMax: Math.max(...computes),
    computeMsMean: computes.reduce((a, b) => a + b, 0) / computes.length,
    // Time the gather took beyond the slowest worker's compute: framing, transfer, waiting.
    commMs: Math.max(0, times.gathered - times.sent - Math.max(...computes)),
    adamMs: times.adamMs,
    reduceMs: times.reduceMs,
    workers: new Set(answers.map((r) => r.workerId)).size,
    shards: answers.map((r) => ({
      worker: r.workerId,
      rows: r.task.rowCount,
      computeMs: Math.round(r.msg.timings.computeMs),
    })),
  };
}

const round = (x: number, d: number) => Math.round(x * 10 ** d) / 10 ** d;

/** The `iteration` log line: the record, with scores to 5 decimals and times to 0.1 ms. */
export function logIteration(log: RunLogger, rec: IterationRecord): void {
  log.info(
    {
      ...rec,
      scoreG: round(rec.scoreG, 5),
      scoreD: round(rec.scoreD, 5),
      lossG: round(rec.lossG, 5),
      lossD: round(rec.lossD, 5),
      imagesPerSec: round(rec.imagesPerSec, 2),
      stepMs: round(rec.stepMs, 1),
      computeMsMax: round(rec.computeMsMax, 1),
      computeMsMean: round(rec.computeMsMean, 1),
      commMs: round(rec.commMs, 1),
      adamMs: round(rec.adamMs, 1),
      reduceMs: round(rec.reduceMs, 1),
    },
    'iteration',
  );
}
