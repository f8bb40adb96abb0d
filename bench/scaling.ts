// `gan-dist bench scaling`: does adding workers pay? Two parts, each measured in one run:
//  - real: images/s of 1 vs 2 local CPU workers at the same global batch on a preset, in separate
//    runs and in one run whose iterations alternate 1 and 2 shards (paired in time);
//  - simulated: the seed's full model with N workers whose compute is a fixed delay, so what is
//    left of an iteration beyond the delay is the coordinator's own cost (framing, transfer,
//    reduction, Adam), set against a bare transfer of the same bytes over the same socket kind
//    and, per transport (socket, shm), against a memcpy of the same bytes in the same run.
// JSON keys are stable: later transports and step times add runs, never rename keys.
// The report's shape and text form are scaling-report.ts; the floors and the ceiling it is set
// against are transfer-floors.ts and parallel-ceiling.ts.

import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { modelConfigOf, resolveConfig, type TrainConfig } from '../protocol/config.ts';
import { benchTrainRun, median, steady } from './util.ts';
import { GanDistError } from '../protocol/errors.ts';
import { parameterTable, sizeOf } from '../protocol/model/architecture.ts';
import { concurrentStepImagesPerSec } from './parallel-ceiling.ts';
import type { InterleavedRun, ParallelCeiling, RealRun, ScalingReport, SimulatedRun } from './scaling-report.ts';
import { bareTransferMs, memcpyMs } from './transfer-floors.ts';

export interface ScalingOptions {
  /** Preset of the real part; 'seed' is the seed's full model (at a global batch of SEED_REAL_BATCH unless told). */
  preset: 'tiny' | 'quick' | 'seed';
  /**
   * Iterations per real run, and per worker count of the interleaved run (the first few are
   * warm-up and not counted); default defaultRealIterations(preset).
   */
  iterations?: number;
  /** Worker counts of the real part. */
  realWorkers: number[];
  /**
   * Rounds of the real part (default 3): each round runs every worker count (and the ceiling)
   * once, in turn, so a load that comes and goes on a shared machine weighs on all alike; the
   * speed-ups are medians of the rounds' own ratios.
   */
  realRounds?: number;
  /**
   * How the real part compares worker counts (default interleaved): separate runs per count, in rounds;
   * and/or one run of max(realWorkers) workers whose iterations cycle through the counts (each
   * iteration split into that many shards), so consecutive iterations form pairs that saw the same
   * minute of a host whose speed drifts.
   */
  realMode?: 'separate' | 'interleaved' | 'both';
  /** Global batch of the real part (default: the preset's). */
  realBatchSize?: number;
  /** Transports each part runs over (default socket): `shm` serves local workers through /dev/shm. */
  transports?: ('socket' | 'shm')[];
  /** Worker counts and step delays of the simulated part (full model). */
  simulatedWorkers: number[];
  simulateStepMs: number[];
  /** Rows per shard in the simulated part (global batch = rows x workers: weak scaling). */
  rowsPerShard: number;
  simulatedIterations: number;
  progress?: (line: string) => void;
}

async function trainedLines(
  cwd: string,
  config: TrainConfig,
  workers: number,
  extra: {
    threads?: number;
    simulateStepMs?: number;
    transport: 'socket' | 'shm';
    shardsAt?: (iteration: number) => number;
  },
) {
  const result = await benchTrainRun(
    cwd,
    config,
    workers,
    `${workers}-${extra.simulateStepMs ?? 'real'}-${extra.transport}${extra.shardsAt ? '-interleaved' : ''}`,
    {
      transport: extra.transport,
      threadsPerWorker: extra.threads,
      simulateStepMs: extra.simulateStepMs,
      shardsAt: extra.shardsAt,
    },
  );
  const lines = result.lines;
  // A run asked for shm that fell back (no room in /dev/shm) must not be reported as shm.
  const transport = readFileSync(path.join(result.runDir, 'train.log'), 'utf8')
    .split('\n')
    .find((l) => l.includes('"event":"transport"'));
  const local = transport ? (JSON.parse(transport) as { local: string; reason?: string }) : undefined;
  if (workers > 0 && local?.local !== extra.transport) {
    throw new GanDistError(
      'GAN_DIST_E_CONFIG',
      `bench scaling: asked for --transport ${extra.transport}, the run used ${local?.local ?? 'nothing'}${local?.reason ? ` (${local.reason})` : ''}`,
    );
  }
  return lines;
}

/**
 * The real part's global batch on the seed's model: half its own 128, so that one CPU worker's
 * iteration takes seconds, not 17 of them; each of 2 workers still steps 32 rows.
 */
export const SEED_REAL_BATCH = 64;

/** Iterations per worker count of the real part, unless told: fewer on the seed's model, whose steps take seconds. */
export const defaultRealIterations = (preset: ScalingOptions['preset']): number => (preset === 'seed' ? 10 : 24);

/** The least --iterations the interleaved real part can use: two warm-up cycles and one counted. */
export const MIN_INTERLEAVED_ITERATIONS = 3;

/**
 * The interleaved run's figures from its iteration lines: iteration t used counts[(t - 1) % k]
 * workers, so cycle c is iterations ck+1 .. ck+k. Every worker's first shard is warm-up: the first
 * two cycles (or a quarter of them) are not counted, nor a last, incomplete one.
 */
export function interleavedRuns(
  lines: Record<string, number>[],
  counts: number[],
  globalBatch: number,
  transport: 'socket' | 'shm',
): InterleavedRun[] {
  const k = counts.length;
  const cycleOf = (iteration: number) => Math.floor((iteration - 1) / k);
  const cycles = Math.floor(Math.max(0, ...lines.map((l) => l.iteration)) / k);
  const skip = Math.max(2, Math.floor(cycles / 4));
  const stepMs: number[][] = counts.map(() => new Array(Math.max(0, cycles - skip)).fill(NaN));
  for (const l of lines) {
    const c = cycleOf(l.iteration);
    if (c >= skip && c < cycles) stepMs[(l.iteration - 1) % k][c - skip] = l.stepMs;
  }
  const whole = stepMs[0].map((_, c) => stepMs.every((ms) => Number.isFinite(ms[c])));
  const kept = stepMs.map((ms) => ms.filter((_, c) => whole[c]));
  return counts.map((workers, i) => {
    const byCycle = kept[i].map((ms, c) => kept[0][c] / ms);
    return {
      transport,
      workers,
      threadsPerWorker: 1,
      globalBatch,
      iterations: kept[i].length,
      imagesPerSec: median(kept[i].map((ms) => (globalBatch * 1000) / ms)),
      stepMsMedian: median(kept[i]),
      speedupVsFirst: median(byCycle),
      speedupByCycle: byCycle,
    };
  });
}

export async function benchScaling(opts: ScalingOptions): Promise<ScalingReport> {
  const say = opts.progress ?? (() => {});
  const cwd = mkdtempSync(path.join(os.tmpdir(), 'gan-dist-bench-'));
  try {
    const transports = opts.transports ?? ['socket'];
    const real: RealRun[] = [];
    const seed = opts.preset === 'seed';
    const batch = opts.realBatchSize ?? (seed ? SEED_REAL_BATCH : undefined);
    const batchFlag = batch !== undefined ? { batchSize: batch } : {};
    const iterations = opts.iterations ?? defaultRealIterations(opts.preset);
    const preset = resolveConfig({
      preset: seed ? undefined : opts.preset,
      flags: { iterations, validationFrequency: 1e6, ...batchFlag },
    });
    // Round robin: every (transport, workers) run and the ceiling once per round.
    const rounds = opts.realRounds ?? 3;
    const stepMs = new Map<string, number[]>();
    const ceilingRates = new Map<number, number[]>();
    const push = <K>(m: Map<K, number[]>, k: K, v: number) => m.set(k, [...(m.get(k) ?? []), v]);
    const mode = opts.realMode ?? 'interleaved';
    // The transports each kind of real run goes over: none where the mode leaves that kind out.
    const separateOver = mode === 'interleaved' ? [] : transports;
    const interleavedOver = mode === 'separate' ? [] : transports;
    for (let round = 1; round <= rounds; round++) {
      for (const transport of separateOver) {
        for (const workers of opts.realWorkers) {
          say(
            `real, round ${round}/${rounds}: ${workers} CPU worker(s), preset ${opts.preset}, global batch ${preset.batchSize}, ${iterations} iterations, ${transport}`,
          );
          const lines = steady(await trainedLines(cwd, preset, workers, { threads: 1, transport }));
          push(stepMs, `${transport}/${workers}`, median(lines.map((l) => l.stepMs)));
        }
      }
      for (const workers of opts.realWorkers) {
        const rowsPerProcess = Math.floor(preset.batchSize / workers);
        say(
          `ceiling, round ${round}/${rounds}: ${workers} independent step process(es) of ${rowsPerProcess} rows at once, no coordinator`,
        );
        push(ceilingRates, workers, await concurrentStepImagesPerSec(opts.preset, rowsPerProcess, workers));
      }
    }
    const ratios = (xs: number[], base: number[]) => xs.map((x, i) => x / base[i]);
    for (const transport of separateOver) {
      const rate = (workers: number) =>
        stepMs.get(`${transport}/${workers}`)!.map((ms) => (preset.batchSize * 1000) / ms);
      const base = rate(opts.realWorkers[0]);
      for (const workers of opts.realWorkers) {
        const byRound = ratios(rate(workers), base);
        real.push({
          transport,
          workers,
          threadsPerWorker: 1,
          globalBatch: preset.batchSize,
          imagesPerSec: median(rate(workers)),
          stepMsMedian: median(stepMs.get(`${transport}/${workers}`)!),
          speedupVsFirst: median(byRound),
          speedupByRound: byRound,
        });
      }
    }
    const interleaved: InterleavedRun[] = [];
    for (const transport of interleavedOver) {
      const counts = opts.realWorkers;
      const most = Math.max(...counts);
      say(
        `real, interleaved: ${most} CPU workers, iterations cycling through ${counts.join(', ')} shard(s), preset ${opts.preset}, global batch ${preset.batchSize}, ${iterations * counts.length} iterations, ${transport}`,
      );
      const lines = await trainedLines(cwd, { ...preset, iterations: iterations * counts.length }, most, {
        threads: 1,
        transport,
        shardsAt: (iteration) => counts[(iteration - 1) % counts.length],
      });
      interleaved.push(...interleavedRuns(lines, counts, preset.batchSize, transport));
    }
    const ceiling: ParallelCeiling[] = opts.realWorkers.map((workers) => {
      const byRound = ratios(ceilingRates.get(workers)!, ceilingRates.get(opts.realWorkers[0])!);
      return {
        workers,
        rowsPerProcess: Math.floor(preset.batchSize / workers),
        imagesPerSec: median(ceilingRates.get(workers)!),
        speedupVsOne: median(byRound),
        speedupByRound: byRound,
      };
    });

    const simulated: SimulatedRun[] = [];
    const model = resolveConfig({});
    const table = parameterTable(modelConfigOf(model));
    const paramBytes = table.reduce((n, s) => n + 4 * sizeOf(s.shape), 0);
    const gradBytes = table.filter((s) => s.role === 'learnable').reduce((n, s) => n + 4 * sizeOf(s.shape), 0);
    const shardBytes = opts.rowsPerShard * (64 * 64 * 3 + 4 * model.latent + 1);
    const bareByWorkers = new Map<number, number>();
    for (const S of opts.simulateStepMs) {
      for (const transport of transports) {
        const first = simulated.length;
        for (const workers of opts.simulatedWorkers) {
          const globalBatch = opts.rowsPerShard * workers;
          say(
            `simulated: ${workers} worker(s), full model, ${S} ms a shard of ${opts.rowsPerShard} rows, ${transport}`,
          );
          const config = resolveConfig({
            flags: { batchSize: globalBatch, iterations: opts.simulatedIterations, validationFrequency: 1e6 },
          });
          const lines = steady(await trainedLines(cwd, config, workers, { simulateStepMs: S, transport }));
          const iterationMs = median(lines.map((l) => l.stepMs));
          const reduceAdamMs = median(lines.map((l) => l.adamMs + (l.reduceMs ?? 0)));
          const bytes = workers * (paramBytes + shardBytes + gradBytes);
          let bare: number | null = null;
          if (transport === 'socket') {
            if (!bareByWorkers.has(workers))
              bareByWorkers.set(workers, await bareTransferMs(workers, paramBytes + shardBytes, gradBytes, 8));
            bare = bareByWorkers.get(workers)!;
          }
          const copy = memcpyMs(bytes, paramBytes);
          simulated.push({
            transport,
            workers,
            simulateStepMs: S,
            rowsPerShard: opts.rowsPerShard,
            globalBatch,
            iterationMsMedian: iterationMs,
            overheadMs: iterationMs - S,
            reduceAdamMs,
            transportMs: iterationMs - S - reduceAdamMs,
            bytesPerIteration: bytes,
            bareTransferMs: bare,
            overheadVsBare: bare === null ? null : (iterationMs - S) / bare,
            memcpyMs: copy,
            transportVsMemcpy: (iterationMs - S - reduceAdamMs) / copy,
            imagesPerSec: (globalBatch * 1000) / iterationMs,
            speedupVsFirst: 0,
            efficiency: 0,
          });
        }
        const base = simulated[first];
        for (const r of simulated.slice(first)) {
          r.speedupVsFirst = r.imagesPerSec / base.imagesPerSec;
          r.efficiency = r.speedupVsFirst / (r.workers / base.workers);
        }
      }
    }
    return {
      machine: { cores: os.availableParallelism(), cpu: os.cpus()[0]?.model ?? 'unknown', node: process.version },
      real: {
        preset: opts.preset,
        note:
          `same global batch split over the workers (strong scaling), one wasm thread each; warm-up excluded, median step. ` +
          `runs: separate runs in ${rounds} rounds run in turn, speed-ups the median of each round's own ratio. ` +
          "interleaved: one run whose consecutive iterations use each worker count in turn, speed-ups the median of each cycle's own ratio",
        runs: real,
        interleaved,
        ceiling,
      },
      simulated: {
        model: 'seed (64x64, 64 filters: 9.45 M parameters)',
        note:
          'compute replaced by a fixed delay per shard of fixed size, so the global batch grows with the workers (weak scaling; ' +
          'efficiency = throughput(N) / (N x throughput(first))); overhead = median iteration - delay; transport = overhead - reduction - Adam, ' +
          'against a memcpy of the same bytes in this process',
        runs: simulated,
      },
    };
  } finally {
    rmSync(cwd, { recursive: true, force: true });
  }
}
