// `gan-dist bench wire`: what --wire-dtype buys and costs, each dtype against float32 in one run.
//  - transfer: the seed's full model on loopback sockets (or shared memory: --transport shm) with
//    simulated workers (compute is a fixed delay), so bytes per iteration and iteration time show
//    the wire alone;
//  - quality: the tiny preset with real CPU workers for a fixed number of iterations, then the
//    final losses and scores and the SWD of the final generator (master weights, float32).

import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { modelConfigOf, resolveConfig, type TrainConfig } from '../protocol/config.ts';
import { GanDistError } from '../protocol/errors.ts';
import {
  encodeMessage,
  decodeMessage,
  frameLimitFor,
  type GradientsMessage,
  type ShardMessage,
  type WeightsMessage,
} from '../protocol/wire/protocol.ts';
import { benchTrainRun, best, median, steady } from './util.ts';
import type { WireDtype } from '../protocol/wire/wire-dtype.ts';
import { initialParams, parameterTable, sizeOf } from '../protocol/model/architecture.ts';
import { bnLayers, isBnTensor, putBnSums } from '../protocol/wire/bn-sums.ts';

export interface WireBenchOptions {
  dtypes: WireDtype[];
  /** How the local workers of both parts exchange tensors (default socket). */
  transport?: 'socket' | 'shm';
  /** Transfer part: simulated workers, delay per shard, rows per shard, iterations. */
  workers: number;
  simulateStepMs: number;
  rowsPerShard: number;
  iterations: number;
  /** Quality part: real CPU workers on the tiny preset; 0 iterations skips it. */
  qualityIterations: number;
  qualityWorkers: number;
  seed: number;
  evalCount: number;
  progress?: (line: string) => void;
}

export interface TransferRun {
  wireDtype: WireDtype;
  weightsFrameBytes: number;
  gradientsFrameBytes: number;
  /** workers x (weights + shard + gradients frames). */
  bytesPerIteration: number;
  iterationMsMedian: number;
  /** iteration - delay: what the coordinator and the wire add. */
  overheadMs: number;
  /** Converting the weights message: encode and decode, best of 3, in this process. */
  encodeWeightsMs: number;
  decodeWeightsMs: number;
  bytesVsFloat32: number;
  iterationVsFloat32: number;
  overheadVsFloat32: number;
}

export interface QualityRun {
  wireDtype: WireDtype;
  /** Means over the last 10 iterations. */
  lossD: number;
  lossG: number;
  scoreD: number;
  scoreG: number;
  /** SWD x 1e3 of the final generator (mean over levels), and the real-vs-real floor. */
  swd: number;
  swdFloor: number;
  swdVsFloat32: number;
}

export interface WireBenchReport {
  machine: { cores: number; cpu: string; node: string; loadavg: number[] };
  transfer: {
    model: string;
    transport: 'socket' | 'shm';
    workers: number;
    simulateStepMs: number;
    rowsPerShard: number;
    iterations: number;
    note: string;
    runs: TransferRun[];
  };
  quality?: {
    preset: string;
    transport: 'socket' | 'shm';
    workers: number;
    iterations: number;
    seed: number;
    evalCount: number;
    note: string;
    runs: QualityRun[];
  };
}

const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;

/** The frames one worker exchanges per iteration, at `dtype`, for a config's model. */
function frames(config: TrainConfig, rows: number, dtype: WireDtype) {
  const specs = parameterTable(modelConfigOf(config));
  const params = initialParams(specs, config.seed);
  const learnable = new Set(specs.filter((s) => s.role === 'learnable').map((s) => s.name));
  const shapes: Record<string, number[]> = {};
  for (const s of specs) shapes[s.name] = s.shape;
  const weights: WeightsMessage = { type: 'weights', version: 1, iteration: 1, tensors: params, shapes };
  const grads: Record<string, Float32Array> = {};
  const gradShapes: Record<string, number[]> = {};
  // What a worker returns: a gradient per learnable, a sum and a sum of squares per BatchNorm layer.
  for (const s of specs) {
    if (learnable.has(s.name)) grads[s.name] = params[s.name].map((w, i) => w * 1e-3 + Math.sin(i) * 1e-6);
  }
  for (const l of bnLayers(modelConfigOf(config))) {
    const ones = new Float32Array(l.channels).fill(1);
    putBnSums(grads, { [l.key]: { sum: ones, sumSq: ones, count: 1 } });
  }
  for (const [k, a] of Object.entries(grads)) gradShapes[k] = [a.length];
  const gradients: GradientsMessage = {
    type: 'gradients',
    iteration: 1,
    shardId: 0,
    weightsVersion: 1,
    n: rows,
    scoreG: 0.5,
    scoreD: 0.5,
    lossG: 1,
    lossD: 1,
    timings: { computeMs: 1 },
    tensors: grads,
    shapes: gradShapes,
  };
  const px = config.imageSize * config.imageSize * 3;
  const shard: ShardMessage = {
    type: 'shard',
    iteration: 1,
    weightsVersion: 1,
    shardId: 0,
    rowStart: 0,
    rowCount: rows,
    tensors: {
      images: new Uint8Array(rows * px),
      z: new Float32Array(rows * config.latent),
      flip: new Uint8Array(rows),
    },
    shapes: { images: [rows, config.imageSize, config.imageSize, 3], z: [rows, config.latent], flip: [rows] },
  };
  const exactWeights = (name: string) => !learnable.has(name);
  const weightsFrame = encodeMessage(weights, { wireDtype: dtype, exact: exactWeights });
  const limits = frameLimitFor(
    specs.reduce((n, s) => n + sizeOf(s.shape), 0),
    config.batchSize,
    config.imageSize,
    { latent: config.latent },
  );
  return {
    weightsFrameBytes: weightsFrame.length,
    gradientsFrameBytes: encodeMessage(gradients, { wireDtype: dtype, exact: isBnTensor }).length,
    shardFrameBytes: encodeMessage(shard).length,
    encodeWeightsMs: best(3, () => void encodeMessage(weights, { wireDtype: dtype, exact: exactWeights })),
    decodeWeightsMs: best(3, () => void decodeMessage(weightsFrame, limits)),
  };
}

async function trainRun(
  cwd: string,
  config: TrainConfig,
  workers: number,
  wireDtype: WireDtype,
  extra: { transport: 'socket' | 'shm'; simulateStepMs?: number; threads?: number; checkpoint?: boolean },
) {
  const { runDir, lines } = await benchTrainRun(
    cwd,
    config,
    workers,
    `${wireDtype}-${extra.simulateStepMs ?? 'real'}-${extra.transport}`,
    {
      threadsPerWorker: extra.threads,
      simulateStepMs: extra.simulateStepMs,
      checkpoint: extra.checkpoint,
      // Named, not auto: local workers would otherwise take shared memory when it has room.
      transport: extra.transport,
      wireDtype,
    },
  );
  // A run asked for shm that fell back to the socket (no room in /dev/shm) must not be reported as shm.
  const used = readFileSync(path.join(runDir, 'train.log'), 'utf8')
    .split('\n')
    .find((l) => l.includes('"event":"transport"'));
  const local = used ? (JSON.parse(used) as { local?: string }).local : undefined;
  if (local !== extra.transport) {
    throw new GanDistError(
      'GAN_DIST_E_CONFIG',
      `bench wire: asked for --transport ${extra.transport}, the run used ${local ?? 'nothing'}`,
    );
  }
  return { runDir, lines };
}

export async function benchWire(opts: WireBenchOptions): Promise<WireBenchReport> {
  const say = opts.progress ?? (() => {});
  if (opts.dtypes[0] !== 'float32') {
    throw new GanDistError(
      'GAN_DIST_E_CONFIG',
      `--dtypes: "${opts.dtypes.join(',')}" must start with float32, the baseline`,
      'e.g. --dtypes float32,bfloat16',
    );
  }
  const transport = opts.transport ?? 'socket';
  const cwd = mkdtempSync(path.join(os.tmpdir(), 'gan-dist-bench-wire-'));
  try {
    const transfer: TransferRun[] = [];
    const globalBatch = opts.rowsPerShard * opts.workers;
    const full = resolveConfig({
      flags: { batchSize: globalBatch, iterations: opts.iterations, validationFrequency: 1e6, seed: opts.seed },
    });
    for (const wireDtype of opts.dtypes) {
      say(
        `transfer: ${wireDtype}, full model, ${opts.workers} simulated workers, ${opts.simulateStepMs} ms a shard of ${opts.rowsPerShard} rows, ${opts.iterations} iterations`,
      );
      const f = frames(full, opts.rowsPerShard, wireDtype);
      const { lines } = await trainRun(cwd, full, opts.workers, wireDtype, {
        transport,
        simulateStepMs: opts.simulateStepMs,
      });
      const iterationMs = median(steady(lines).map((l) => l.stepMs));
      transfer.push({
        wireDtype,
        weightsFrameBytes: f.weightsFrameBytes,
        gradientsFrameBytes: f.gradientsFrameBytes,
        bytesPerIteration: opts.workers * (f.weightsFrameBytes + f.shardFrameBytes + f.gradientsFrameBytes),
        iterationMsMedian: iterationMs,
        overheadMs: iterationMs - opts.simulateStepMs,
        encodeWeightsMs: f.encodeWeightsMs,
        decodeWeightsMs: f.decodeWeightsMs,
        bytesVsFloat32: 0,
        iterationVsFloat32: 0,
        overheadVsFloat32: 0,
      });
    }
    for (const r of transfer) {
      r.bytesVsFloat32 = r.bytesPerIteration / transfer[0].bytesPerIteration;
      r.iterationVsFloat32 = r.iterationMsMedian / transfer[0].iterationMsMedian;
      r.overheadVsFloat32 = r.overheadMs / transfer[0].overheadMs;
    }

    let quality: WireBenchReport['quality'];
    if (opts.qualityIterations > 0) {
      const { evaluateCheckpoint } = await import('../worker/eval.ts');
      const tiny = resolveConfig({
        preset: 'tiny',
        flags: { iterations: opts.qualityIterations, validationFrequency: 1e6, seed: opts.seed },
      });
      const runs: QualityRun[] = [];
      for (const wireDtype of opts.dtypes) {
        say(
          `quality: ${wireDtype}, tiny preset, ${opts.qualityWorkers} CPU workers, ${opts.qualityIterations} iterations`,
        );
        const { runDir, lines } = await trainRun(cwd, tiny, opts.qualityWorkers, wireDtype, {
          transport,
          threads: 1,
          checkpoint: true,
        });
        const last = lines.slice(-10);
        const ev = await evaluateCheckpoint({ checkpoint: runDir, count: opts.evalCount, seed: 0, backend: 'wasm' });
        runs.push({
          wireDtype,
          lossD: mean(last.map((l) => l.lossD)),
          lossG: mean(last.map((l) => l.lossG)),
          scoreD: mean(last.map((l) => l.scoreD)),
          scoreG: mean(last.map((l) => l.scoreG)),
          swd: ev.swd.mean,
          swdFloor: ev.floor.mean,
          swdVsFloat32: 0,
        });
      }
      for (const r of runs) r.swdVsFloat32 = r.swd / runs[0].swd;
      quality = {
        preset: 'tiny',
        transport,
        workers: opts.qualityWorkers,
        iterations: opts.qualityIterations,
        seed: opts.seed,
        evalCount: opts.evalCount,
        note: 'same seed, data and shards for every dtype; a GAN amplifies any difference, so part of the spread is run-to-run chaos rather than precision',
        runs,
      };
    }
    return {
      machine: {
        cores: os.availableParallelism(),
        cpu: os.cpus()[0]?.model ?? 'unknown',
        node: process.version,
        loadavg: os.loadavg(),
      },
      transfer: {
        model: 'seed (64x64, 64 filters: 9.45 M parameters)',
        transport,
        workers: opts.workers,
        simulateStepMs: opts.simulateStepMs,
        rowsPerShard: opts.rowsPerShard,
        iterations: opts.iterations,
        note: `${transport === 'shm' ? 'shared memory (the socket carries control messages)' : 'loopback sockets'}; compute replaced by a fixed delay; median iteration with warm-up excluded; bytes from the frames each worker exchanges`,
        runs: transfer,
      },
      quality,
    };
  } finally {
    rmSync(cwd, { recursive: true, force: true });
  }
}

export function formatWireBench(r: WireBenchReport): string {
  const t = r.transfer;
  const lines = [
    `machine: ${r.machine.cores} cores, ${r.machine.cpu}, Node ${r.machine.node}, load ${r.machine.loadavg.map((x) => x.toFixed(2)).join(' ')}`,
    `transfer (${t.model}; ${t.transport}, ${t.workers} workers, ${t.simulateStepMs} ms a shard of ${t.rowsPerShard} rows; ${t.note}):`,
  ];
  for (const x of t.runs) {
    lines.push(
      `  ${x.wireDtype.padEnd(8)} ${(x.bytesPerIteration / 1e6).toFixed(1).padStart(6)} MB/iteration (${x.bytesVsFloat32.toFixed(2)}x)  ` +
        `iteration ${x.iterationMsMedian.toFixed(0)} ms (${x.iterationVsFloat32.toFixed(2)}x), overhead ${x.overheadMs.toFixed(0)} ms (${x.overheadVsFloat32.toFixed(2)}x)  ` +
        `weights encode ${x.encodeWeightsMs.toFixed(0)} ms, decode ${x.decodeWeightsMs.toFixed(0)} ms`,
    );
  }
  if (r.quality) {
    const q = r.quality;
    lines.push(
      `quality (${q.preset} preset, ${q.transport}, ${q.workers} CPU workers, ${q.iterations} iterations, seed ${q.seed}, SWD x 1e3 on ${q.evalCount} images; ${q.note}):`,
    );
    for (const x of q.runs) {
      lines.push(
        `  ${x.wireDtype.padEnd(8)} lossD ${x.lossD.toFixed(3)} lossG ${x.lossG.toFixed(3)} scoreD ${x.scoreD.toFixed(3)} scoreG ${x.scoreG.toFixed(3)}  ` +
          `SWD ${x.swd.toFixed(2)} (${x.swdVsFloat32.toFixed(2)}x; floor ${x.swdFloor.toFixed(2)})`,
      );
    }
  }
  return lines.join('\n');
}
