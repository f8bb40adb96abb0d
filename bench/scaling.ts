// `gan-dist bench scaling`: does adding workers pay? Two parts, each measured in one run:
//  - real: images/s of 1 vs 2 local CPU workers at the same global batch on a preset, in separate
//    runs and in one run whose iterations alternate 1 and 2 shards (paired in time);
//  - simulated: the seed's full model with N workers whose compute is a fixed delay, so what is
//    left of an iteration beyond the delay is the coordinator's own cost (framing, transfer,
//    reduction, Adam), set against a bare transfer of the same bytes over the same socket kind
//    and, per transport (socket, shm), against a memcpy of the same bytes in the same run.
// JSON keys are stable: later transports and step times add runs, never rename keys.

import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { WebSocketServer, type WebSocket } from 'ws';
import { modelConfigOf, resolveConfig, type TrainConfig } from '../protocol/config.ts';
import { benchTrainRun, median, steady } from './util.ts';
import { GanDistError } from '../protocol/errors.ts';
import { parameterTable, sizeOf } from '../protocol/model/architecture.ts';

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

export interface RealRun {
  transport: 'socket' | 'shm';
  workers: number;
  threadsPerWorker: number;
  globalBatch: number;
  imagesPerSec: number;
  stepMsMedian: number;
  /** Median over rounds of imagesPerSec / the first worker count's, from the same round. */
  speedupVsFirst: number;
  /** That ratio in each round, in order. */
  speedupByRound: number[];
}

export interface SimulatedRun {
  transport: 'socket' | 'shm';
  workers: number;
  simulateStepMs: number;
  rowsPerShard: number;
  globalBatch: number;
  iterationMsMedian: number;
  /** iterationMs - simulateStepMs: what the coordinator and the wire add. */
  overheadMs: number;
  /** The part of it spent on the reduction and Adam (reported on their own). */
  reduceAdamMs: number;
  /** overheadMs - reduceAdamMs: the transport's part (framing, copies, checks, waiting on the wire). */
  transportMs: number;
  bytesPerIteration: number;
  /** The same bytes moved as plain ws messages with no framing, checks or arithmetic (socket runs; null for shm). */
  bareTransferMs: number | null;
  /** overheadMs / bareTransferMs (null for shm). */
  overheadVsBare: number | null;
  /** Buffer.copy of bytesPerIteration, in this run: the floor of any transport. */
  memcpyMs: number;
  /** transportMs / memcpyMs. */
  transportVsMemcpy: number;
  imagesPerSec: number;
  /** Weak scaling, same transport and delay: imagesPerSec / imagesPerSec of the first worker count. */
  speedupVsFirst: number;
  /** speedupVsFirst / (workers / first worker count): 1 is perfect weak scaling. */
  efficiency: number;
}

/** One worker count of the interleaved real run: its iterations, set against the first count's in the same cycle. */
export interface InterleavedRun {
  transport: 'socket' | 'shm';
  workers: number;
  threadsPerWorker: number;
  globalBatch: number;
  /** Iterations of this count that were counted (warm-up cycles excluded). */
  iterations: number;
  imagesPerSec: number;
  stepMsMedian: number;
  /** Median over cycles of this count's imagesPerSec / the first count's in the same cycle. */
  speedupVsFirst: number;
  speedupByCycle: number[];
}

/**
 * What the machine allows the real part right now, with no coordinator: N independent processes
 * each stepping a shard of global / N rows at once, against one process stepping the whole batch.
 */
export interface ParallelCeiling {
  workers: number;
  rowsPerProcess: number;
  imagesPerSec: number;
  /** imagesPerSec / the one-process figure (median over rounds): the most N workers can reach over 1 here, now. */
  speedupVsOne: number;
  speedupByRound: number[];
}

export interface ScalingReport {
  machine: { cores: number; cpu: string; node: string };
  real: { preset: string; note: string; runs: RealRun[]; interleaved: InterleavedRun[]; ceiling: ParallelCeiling[] };
  simulated: { model: string; note: string; runs: SimulatedRun[] };
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

/** ms to Buffer.copy `bytes` in `chunk`-sized pieces into a reused destination: best of 3, in this process. */
export function memcpyMs(bytes: number, chunk: number): number {
  const src = Buffer.alloc(chunk, 1);
  const dst = Buffer.alloc(chunk);
  let best = Infinity;
  for (let r = 0; r < 3; r++) {
    const t0 = performance.now();
    for (let done = 0; done < bytes; done += chunk) src.copy(dst, 0, 0, Math.min(chunk, bytes - done));
    best = Math.min(best, performance.now() - t0);
  }
  return best;
}

/** Moves the simulated run's bytes as plain ws messages to echo processes: the floor for any framing. */
export async function bareTransferMs(
  workers: number,
  sendBytes: number,
  replyBytes: number,
  rounds: number,
): Promise<number> {
  const wss = new WebSocketServer({
    host: '127.0.0.1',
    port: 0,
    perMessageDeflate: false,
    maxPayload: 2 * Math.max(sendBytes, replyBytes),
  });
  await new Promise((r) => wss.once('listening', r));
  const port = (wss.address() as { port: number }).port;
  const client = `
    const WebSocket = require(${JSON.stringify(require_ws())});
    const ws = new WebSocket('ws://127.0.0.1:${port}', { perMessageDeflate: false, maxPayload: ${2 * Math.max(sendBytes, replyBytes)} });
    const reply = Buffer.alloc(${replyBytes}, 1);
    ws.on('message', () => ws.send(reply));
    ws.on('close', () => process.exit(0));
    ws.on('error', () => process.exit(1));`;
  const children = Array.from({ length: workers }, () => spawn(process.execPath, ['-e', client], { stdio: 'ignore' }));
  const sockets: WebSocket[] = [];
  await new Promise<void>((resolve) =>
    wss.on('connection', (ws) => {
      ws.on('error', () => {});
      sockets.push(ws);
      if (sockets.length === workers) resolve();
    }),
  );
  const payload = Buffer.alloc(sendBytes, 2);
  const times: number[] = [];
  for (let r = 0; r < rounds; r++) {
    const t0 = performance.now();
    await Promise.all(
      sockets.map(
        (ws) =>
          new Promise<void>((resolve) => {
            ws.once('message', () => resolve());
            ws.send(payload);
          }),
      ),
    );
    times.push(performance.now() - t0);
  }
  for (const ws of sockets) ws.close();
  await new Promise((r) => wss.close(r));
  for (const c of children) c.kill();
  return median(steady(times));
}

function require_ws(): string {
  return path.join(path.dirname(new URL(import.meta.resolve('ws')).pathname), 'index.js');
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

/** img/s of `processes` concurrent `gan-dist bench step` processes (wasm, one thread), summed. */
async function concurrentStepImagesPerSec(preset: string, rows: number, processes: number): Promise<number> {
  const bin = fileURLToPath(new URL('../cmd/gan-dist.mjs', import.meta.url));
  const model = preset === 'seed' ? [] : ['--preset', preset];
  // The seed's steps take seconds: fewer of them say as much.
  const steps = preset === 'seed' ? 4 : 8;
  const args = [
    bin,
    'bench',
    'step',
    ...model,
    '--batch',
    String(rows),
    '--backend',
    'wasm',
    '--threads',
    '1',
    '--steps',
    String(steps),
    '--json',
  ];
  const one = () =>
    new Promise<number>((resolve, reject) => {
      const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'ignore'] });
      let out = '';
      child.stdout.on('data', (d) => (out += d));
      child.on('error', reject);
      child.on('exit', (code) => {
        if (code !== 0) return reject(new Error(`bench step exited with ${code}`));
        resolve((JSON.parse(out) as { rows: { imagesPerSec: number }[] }).rows[0].imagesPerSec);
      });
    });
  const rates = await Promise.all(Array.from({ length: processes }, one));
  return rates.reduce((a, b) => a + b, 0);
}

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

const each = (what: string, xs: number[]) =>
  xs.length > 1 ? ` (${what}: ${xs.map((x) => x.toFixed(2)).join(', ')})` : '';
const byRound = (xs: number[]) => each('rounds', xs);

export function formatScaling(r: ScalingReport): string {
  const lines = [
    `machine: ${r.machine.cores} cores, ${r.machine.cpu}, Node ${r.machine.node}`,
    `real (${r.real.preset}; ${r.real.note}):`,
  ];
  for (const c of r.real.ceiling) {
    lines.push(
      `  ceiling, ${c.workers} independent process(es) of ${c.rowsPerProcess} rows stepping at once (no coordinator): ${c.imagesPerSec.toFixed(1)} img/s, ${c.speedupVsOne.toFixed(2)}x${byRound(c.speedupByRound)}`,
    );
  }
  for (const x of r.real.runs) {
    lines.push(
      `  ${x.transport}, ${x.workers} worker(s), global batch ${x.globalBatch}: ${x.imagesPerSec.toFixed(1)} img/s, step ${x.stepMsMedian.toFixed(0)} ms, ${x.speedupVsFirst.toFixed(2)}x${byRound(x.speedupByRound)}`,
    );
  }
  for (const x of r.real.interleaved) {
    lines.push(
      `  interleaved, ${x.transport}, ${x.workers} worker(s), global batch ${x.globalBatch}, ${x.iterations} iterations: ${x.imagesPerSec.toFixed(1)} img/s, ` +
        `step ${x.stepMsMedian.toFixed(0)} ms, ${x.speedupVsFirst.toFixed(2)}x${each('cycles', x.speedupByCycle)}`,
    );
  }
  lines.push(`simulated (${r.simulated.model}; ${r.simulated.note}):`);
  for (const x of r.simulated.runs) {
    const bare =
      x.bareTransferMs === null
        ? ''
        : `, bare transfer ${x.bareTransferMs.toFixed(0)} ms, overhead ${x.overheadVsBare!.toFixed(2)}x bare`;
    lines.push(
      `  ${x.transport}, ${x.workers} worker(s), S=${x.simulateStepMs} ms: iteration ${x.iterationMsMedian.toFixed(0)} ms, overhead ${x.overheadMs.toFixed(0)} ms ` +
        `(reduce+Adam ${x.reduceAdamMs.toFixed(0)} ms, transport ${x.transportMs.toFixed(0)} ms = ${x.transportVsMemcpy.toFixed(2)}x memcpy ${x.memcpyMs.toFixed(0)} ms)${bare}, ` +
        `${(x.bytesPerIteration / 1e6).toFixed(0)} MB/iteration, ${x.imagesPerSec.toFixed(0)} img/s, ${x.speedupVsFirst.toFixed(2)}x (efficiency ${(100 * x.efficiency).toFixed(0)} %)`,
    );
  }
  return lines.join('\n');
}
