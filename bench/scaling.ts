// `gan-dist bench scaling`: does adding workers pay? Two parts, each measured in one run:
//  - real: images/s of 1 vs 2 local CPU workers at the same global batch on a preset, in separate
//    runs and in one run whose iterations alternate 1 and 2 shards (paired in time);
//  - simulated: the seed's full model with N workers whose compute is a fixed delay, so what is
//    left of an iteration beyond the delay is the coordinator's own cost (framing, transfer,
//    reduction, Adam), set against a bare transfer of the same bytes over the same socket kind
//    and, per transport (socket, shm), against a memcpy of the same bytes in the same run; and the
//    same with nodes (nodes.ts: processes of M local workers joining as one peer each), set
//    against as many flat socket workers. Every simulated run reports the bytes on the
//    coordinator's peer link per iteration, from its iteration lines.
// JSON keys are stable: later transports and step times add runs, never rename keys.
// The simulated part is scaling-simulated.ts, one run of either part scaling-run.ts; the report's
// shape and text form are scaling-report.ts; the floors and the ceiling it is set against are
// transfer-floors.ts and parallel-ceiling.ts.

import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { resolveConfig } from '../protocol/config.ts';
import { median, steady } from './util.ts';
import { concurrentStepImagesPerSec } from './parallel-ceiling.ts';
import type { InterleavedRun, ParallelCeiling, RealRun, ScalingReport } from './scaling-report.ts';
import { trainedLines } from './scaling-run.ts';
import { simulatedRuns } from './scaling-simulated.ts';

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
  /** Whether the real part runs (default true); false leaves its lists empty. */
  real?: boolean;
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
  /**
   * Rounds of the simulated part (default 1): every layout once per round, in turn, ratios taken
   * within a round and reported as the median round's.
   */
  simulatedRounds?: number;
  /**
   * Node counts and workers per node of the simulated part (every pair runs; none without nodes):
   * the coordinator's link is a socket, each node serves its workers through /dev/shm.
   */
  nodes?: number[];
  workersPerNode?: number[];
  progress?: (line: string) => void;
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
    const realWorkers = opts.real === false ? [] : opts.realWorkers;
    // The transports each kind of real run goes over: none where the mode leaves that kind out.
    const separateOver = mode === 'interleaved' ? [] : transports;
    const interleavedOver = mode === 'separate' || realWorkers.length === 0 ? [] : transports;
    for (let round = 1; round <= rounds; round++) {
      for (const transport of separateOver) {
        for (const workers of realWorkers) {
          say(
            `real, round ${round}/${rounds}: ${workers} CPU worker(s), preset ${opts.preset}, global batch ${preset.batchSize}, ${iterations} iterations, ${transport}`,
          );
          const lines = steady(await trainedLines(cwd, preset, workers, { threads: 1, transport }));
          push(stepMs, `${transport}/${workers}`, median(lines.map((l) => l.stepMs)));
        }
      }
      for (const workers of realWorkers) {
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
      const base = rate(realWorkers[0]);
      for (const workers of realWorkers) {
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
      const counts = realWorkers;
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
    const ceiling: ParallelCeiling[] = realWorkers.map((workers) => {
      const byRound = ratios(ceilingRates.get(workers)!, ceilingRates.get(realWorkers[0])!);
      return {
        workers,
        rowsPerProcess: Math.floor(preset.batchSize / workers),
        imagesPerSec: median(ceilingRates.get(workers)!),
        speedupVsOne: median(byRound),
        speedupByRound: byRound,
      };
    });

    const simulated = await simulatedRuns(cwd, opts, transports, say);
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
          'against a memcpy of the same bytes in this process. link = median bytes per iteration the coordinator sent to and received from its worker peers over their sockets ' +
          '(WebSocket frame payloads after the handshake; what shm workers move through /dev/shm is not socket bytes and not counted). ' +
          'nodes: processes of M simulated workers each (over shm inside the node) joining as one socket peer; vsFlat: against as many flat socket workers at the same delay. ' +
          "rounds (--simulated-rounds): every layout once per round, in turn; times are the median round's, ratios the median of each round's own, iterationMsByRound every round's",
        runs: simulated,
      },
    };
  } finally {
    rmSync(cwd, { recursive: true, force: true });
  }
}
