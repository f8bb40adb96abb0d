// `gan-dist bench scaling|step|data|adam|wire|memory|batchnorm`: benchmarks that print ratios against a baseline measured in the same run.

import { Option, type Command } from 'commander';
import { GanDistError } from '../protocol/errors.ts';
import { benchMemory } from '../bench/memory.ts';
import { benchBatchNorm, formatBatchNormBench } from '../bench/batchnorm.ts';
import { benchAdam, formatAdamBench } from '../bench/adam.ts';
import { benchWire, formatWireBench } from '../bench/wire.ts';
import { WIRE_DTYPES, parseWireDtype } from '../protocol/wire/wire-dtype.ts';
import { benchData, formatDataBench } from '../bench/data.ts';
import { MIN_TIMED_STEPS, benchStep, formatStepBench } from '../bench/step.ts';
import { parseBackendName } from '../protocol/backends.ts';
import { presets, type PresetName } from '../protocol/config.ts';
import { intList } from './bench-flags.ts';
import { benchScalingCommand } from './bench-scaling.ts';

export function registerBenchCommands(program: Command): Command {
  const bench = program.command('bench').description('benchmarks (ratios against a baseline measured in the same run)');
  benchScalingCommand(bench);
  benchStepCommand(bench);
  benchDataCommand(bench);
  benchAdamCommand(bench);
  benchWireCommand(bench);
  benchMemoryCommand(bench);
  benchBatchNormCommand(bench);
  return bench;
}

function benchStepCommand(bench: Command): void {
  bench
    .command('step')
    .description(
      "one worker's training step per backend and batch: the first step apart from the steady median, img/s and the ratio to the first backend",
    )
    .option('--backend <list>', 'backends to compare, the first is the baseline (e.g. webgpu,wasm)', 'wasm,cpu')
    .option('--batch <list>', "shard sizes, each on every backend (default: the preset's batch)", intList('--batch'))
    .option('--preset <name>', `model preset (${Object.keys(presets).join(', ')}; default: the seed's full model)`)
    .option('--steps <n>', 'timed steps per backend and batch', (v) => intList('--steps')(v)[0], 5)
    .option(
      '--warmup <n>',
      'untimed steps first (the first of them is reported apart)',
      (v) => intList('--warmup')(v)[0],
      1,
    )
    .option(
      '--max-seconds <s>',
      `time box per backend and batch: timed steps stop once they have taken this long (at least ${MIN_TIMED_STEPS})`,
      (v) => intList('--max-seconds')(v)[0],
    )
    .option('--threads <n>', 'wasm threads', (v) => intList('--threads')(v)[0], 1)
    .option('--json', 'print JSON')
    .action(async (opts) => {
      if (opts.preset !== undefined && !(opts.preset in presets)) {
        throw new GanDistError(
          'GAN_DIST_E_CONFIG',
          `--preset: unknown preset "${opts.preset}"`,
          `use one of: ${Object.keys(presets).join(', ')}`,
        );
      }
      const report = await benchStep({
        backends: String(opts.backend)
          .split(',')
          .map((b) => parseBackendName(b.trim())),
        batches: opts.batch,
        preset: opts.preset as PresetName | undefined,
        steps: opts.steps,
        warmup: opts.warmup,
        maxSeconds: opts.maxSeconds,
        threads: opts.threads,
        progress: (line) => console.error(line),
      });
      console.log(opts.json ? JSON.stringify(report, null, 2) : formatStepBench(report));
    });
}

function benchDataCommand(bench: Command): void {
  bench
    .command('data')
    .argument('<dir>', 'a folder of images')
    .description('cold decode + resize images/s, main thread vs a piscina pool, and cached vs cold start')
    .option('--passes <n>', 'cold decode passes', (v) => intList('--passes')(v)[0], 5)
    .option('--image-size <n>', 'decode to n x n', (v) => intList('--image-size')(v)[0], 64)
    .option('--json', 'print JSON')
    .action(async (dir: string, opts) => {
      const r = await benchData({ dir, passes: opts.passes, imageSize: opts.imageSize });
      console.log(opts.json ? JSON.stringify(r, null, 2) : formatDataBench(r));
    });
}

function benchAdamCommand(bench: Command): void {
  bench
    .command('adam')
    .description(
      "the coordinator's reduction of N workers' gradients + Adam on the full model: single-threaded vs a piscina pool, GB/s against memcpy",
    )
    .option('--threads <list>', 'thread counts (1: fused on the main thread)', intList('--threads'), [1, 2])
    .option('--workers <n>', 'workers whose gradients are reduced', (v) => intList('--workers')(v)[0], 4)
    .option('--reps <n>', 'timed iterations per variant', (v) => intList('--reps')(v)[0], 7)
    .option('--json', 'print JSON')
    .action(async (opts) => {
      const r = await benchAdam({
        threads: opts.threads,
        workers: opts.workers,
        reps: opts.reps,
        progress: (line) => console.error(line),
      });
      console.log(opts.json ? JSON.stringify(r, null, 2) : formatAdamBench(r));
    });
}

function benchWireCommand(bench: Command): void {
  bench
    .command('wire')
    .description(
      '--wire-dtype on loopback (or shared memory): bytes and iteration time per dtype against float32 (full model, simulated workers), and losses, scores and SWD after a tiny run with CPU workers',
    )
    .addOption(
      new Option('--transport <transport>', 'how the local workers exchange tensors (shm: through /dev/shm)')
        .choices(['socket', 'shm'])
        .default('socket'),
    )
    .option(
      '--dtypes <list>',
      'wire dtypes, float32 first (the baseline)',
      (v) => v.split(',').map((d, i) => parseWireDtype(d.trim(), `--dtypes item ${i + 1}`)),
      [...WIRE_DTYPES],
    )
    .option('--workers <n>', 'simulated workers of the transfer part', (v) => intList('--workers')(v)[0], 2)
    .option(
      '--simulate-step-ms <ms>',
      'fixed delay per shard (ms) of the transfer part',
      (v) => intList('--simulate-step-ms')(v)[0],
      20,
    )
    .option('--rows-per-shard <n>', 'rows per simulated shard', (v) => intList('--rows-per-shard')(v)[0], 32)
    .option('--iterations <n>', 'iterations per transfer run', (v) => intList('--iterations')(v)[0], 12)
    .option(
      '--quality-iterations <n>',
      'iterations per tiny run of the quality part',
      (v) => intList('--quality-iterations')(v)[0],
      150,
    )
    .option('--quality-workers <n>', 'CPU workers of the quality part', (v) => intList('--quality-workers')(v)[0], 2)
    .option('--eval-count <n>', 'images per side of the SWD', (v) => intList('--eval-count')(v)[0], 128)
    .option('--seed <n>', 'seed of every run', (v) => Number(v), 0)
    .option('--no-quality', 'skip the quality part')
    .option('--json', 'print JSON')
    .action(async (opts) => {
      if (!Number.isSafeInteger(opts.seed) || opts.seed < 0)
        throw new GanDistError('GAN_DIST_E_CONFIG', `--seed: "${opts.seed}" is not an integer >= 0`);
      const r = await benchWire({
        dtypes: opts.dtypes,
        transport: opts.transport,
        workers: opts.workers,
        simulateStepMs: opts.simulateStepMs,
        rowsPerShard: opts.rowsPerShard,
        iterations: opts.iterations,
        qualityIterations: opts.quality === false ? 0 : opts.qualityIterations,
        qualityWorkers: opts.qualityWorkers,
        evalCount: opts.evalCount,
        seed: opts.seed,
        progress: (line) => console.error(line),
      });
      console.log(opts.json ? JSON.stringify(r, null, 2) : formatWireBench(r));
    });
}

function benchBatchNormCommand(bench: Command): void {
  bench
    .command('batchnorm')
    .description(
      "--batchnorm sync against shard: the step's cost on the seed's model with real CPU workers (shm, socket, remote over loopback) and with simulated compute",
    )
    .option('--workers <n>', 'real CPU workers per run', (v) => intList('--workers')(v)[0], 2)
    .option('--batch-size <n>', "global batch of the real runs (the seed's)", (v) => intList('--batch-size')(v)[0], 128)
    .option(
      '--iterations <n>',
      'iterations per real run (the first two are warm-up)',
      (v) => intList('--iterations')(v)[0],
      5,
    )
    .option(
      '--rounds <n>',
      'rounds of shard and sync runs per case, in alternating order',
      (v) => intList('--rounds')(v)[0],
      2,
    )
    .option(
      '--cases <list>',
      'real cases: shm, socket, remote (workers joining over loopback); "none" skips them',
      (raw: string) => {
        if (raw === 'none') return [];
        const xs = raw.split(',').map((s) => s.trim());
        if (xs.some((x) => !['shm', 'socket', 'remote'].includes(x)))
          throw new GanDistError(
            'GAN_DIST_E_CONFIG',
            `--cases: "${raw}" is not a list of shm, socket and remote`,
            'e.g. --cases shm,socket,remote, or none',
          );
        return xs;
      },
      ['shm', 'socket', 'remote'],
    )
    .option('--simulate-step-ms <list>', 'simulated part: delays per shard (ms)', intList('--simulate-step-ms'), [10])
    .option('--no-simulated', 'skip the simulated part')
    .option('--simulated-workers <n>', 'simulated workers', (v) => intList('--simulated-workers')(v)[0], 2)
    .option('--rows-per-shard <n>', 'rows per simulated shard', (v) => intList('--rows-per-shard')(v)[0], 32)
    .option(
      '--simulated-iterations <n>',
      'iterations per simulated run',
      (v) => intList('--simulated-iterations')(v)[0],
      24,
    )
    .option('--json', 'print JSON')
    .action(async (opts) => {
      const r = await benchBatchNorm({
        workers: opts.workers,
        batchSize: opts.batchSize,
        iterations: Math.max(3, opts.iterations),
        rounds: opts.rounds,
        cases: opts.cases,
        simulateStepMs: opts.simulated === false ? [] : opts.simulateStepMs,
        simulatedWorkers: opts.simulatedWorkers,
        rowsPerShard: opts.rowsPerShard,
        simulatedIterations: opts.simulatedIterations,
        progress: (line) => console.error(line),
      });
      console.log(opts.json ? JSON.stringify(r, null, 2) : formatBatchNormBench(r));
    });
}

function benchMemoryCommand(bench: Command): void {
  bench
    .command('memory')
    .description(
      'RSS of the coordinator and workers after a short and a long tiny run; coordinator RSS with the full model',
    )
    .option('--short <n>', 'first measurement (iteration)', (v) => intList('--short')(v)[0], 50)
    .option('--long <n>', 'second measurement (iteration)', (v) => intList('--long')(v)[0], 500)
    .option('--workers <n>', 'CPU workers', (v) => intList('--workers')(v)[0], 2)
    .option('--json', 'print JSON')
    .action(async (opts) => {
      const r = await benchMemory({
        short: opts.short,
        long: opts.long,
        workers: opts.workers,
        progress: (s) => console.error(s),
      });
      if (opts.json) return console.log(JSON.stringify(r, null, 2));
      const t = r.tiny;
      console.log(
        `tiny, ${t.workers} workers: coordinator RSS ${t.coordinatorMB.map((x) => x.toFixed(0)).join(' -> ')} MB (${t.coordinatorGrowthPct.toFixed(1)} %), ` +
          `live heap after GC ${t.coordinatorHeapMB.map((x) => x.toFixed(1)).join(' -> ')} MB (${t.coordinatorHeapGrowthPct.toFixed(1)} %), ` +
          `workers ${t.workerGrowthPct.map((g, i) => `${t.workersMB[0][i].toFixed(0)} -> ${t.workersMB[1][i].toFixed(0)} MB (${g.toFixed(1)} %)`).join(', ')} ` +
          `between iterations ${t.checkpoints.join(' and ')}`,
      );
      console.log(
        `full model (${r.full.parameters.toLocaleString('en-US')} parameters): coordinator state ${r.full.heldBytesMB.toFixed(0)} MB held, RSS +${r.full.rssDeltaMB.toFixed(0)} MB (${r.full.deltaVsHeld.toFixed(2)}x)`,
      );
    });
}
