// `gan-dist bench scaling`: its flags, their checks, and the report (bench/scaling.ts measures).

import type { Command } from 'commander';
import { GanDistError } from '../protocol/errors.ts';
import { MIN_INTERLEAVED_ITERATIONS, SEED_REAL_BATCH, benchScaling } from '../bench/scaling.ts';
import { formatScaling } from '../bench/scaling-report.ts';
import { DEFAULT_WORKERS_PER_NODE } from '../bench/scaling-simulated.ts';
import { intList, transportList } from './bench-flags.ts';

export function benchScalingCommand(bench: Command): void {
  bench
    .command('scaling')
    .description(
      "1 vs 2 local CPU workers (real), and the coordinator's overhead and link bytes with simulated compute (full model), flat or in nodes",
    )
    .option(
      '--preset <name>',
      `model of the real part: seed (the seed's model, global batch ${SEED_REAL_BATCH}), quick or tiny`,
      'seed',
    )
    .option(
      '--iterations <n>',
      'iterations per real run and per worker count of the interleaved run (default: 10 on seed, 24 on the presets)',
      (v) => intList('--iterations')(v)[0],
    )
    .option('--real-workers <list>', 'worker counts of the real part', intList('--real-workers'), [1, 2])
    .option(
      '--real-batch-size <n>',
      "global batch of the real part (default: the preset's)",
      (v) => intList('--real-batch-size')(v)[0],
    )
    .option(
      '--real-mode <mode>',
      'real part: interleaved (one run whose iterations cycle through the worker counts), separate runs per count, or both',
      'interleaved',
    )
    .option(
      '--real-rounds <n>',
      'rounds of the real part, worker counts run in turn (speed-ups: the median round)',
      (v) => intList('--real-rounds')(v)[0],
      3,
    )
    .option('--workers <list>', 'worker counts of the simulated part', intList('--workers'), [1, 4])
    .option(
      '--transport <list>',
      'transports to compare: socket, shm (local workers through /dev/shm)',
      transportList,
      ['socket', 'shm'],
    )
    .option(
      '--simulate-step-ms <list>',
      'fixed delay per shard (ms) of the simulated part',
      intList('--simulate-step-ms'),
      [200],
    )
    .option('--rows-per-shard <n>', 'rows per simulated shard', (v) => intList('--rows-per-shard')(v)[0], 32)
    .option(
      '--simulated-iterations <n>',
      'iterations per simulated run',
      (v) => intList('--simulated-iterations')(v)[0],
      12,
    )
    .option(
      '--simulated-rounds <n>',
      'rounds of the simulated part, layouts run in turn (ratios: the median round)',
      (v) => intList('--simulated-rounds')(v)[0],
      1,
    )
    .option(
      '--nodes <list>',
      'simulated part: node counts; each node is a `gan-dist worker --workers M` process joining over the socket as one peer (none by default)',
      intList('--nodes'),
    )
    .option(
      '--workers-per-node <list>',
      `simulated workers in each node, over shm inside it (with --nodes; default ${DEFAULT_WORKERS_PER_NODE})`,
      intList('--workers-per-node'),
    )
    .option('--no-real', 'skip the real part')
    .option('--json', 'print JSON')
    .action(async (opts) => {
      if (opts.workersPerNode !== undefined && opts.nodes === undefined) {
        throw new GanDistError(
          'GAN_DIST_E_CONFIG',
          '--workers-per-node: needs --nodes',
          'e.g. --nodes 2 --workers-per-node 2',
        );
      }
      if (!['tiny', 'quick', 'seed'].includes(opts.preset)) {
        throw new GanDistError(
          'GAN_DIST_E_CONFIG',
          `--preset: unknown model "${opts.preset}"`,
          'use one of: tiny, quick, seed',
        );
      }
      if (!['separate', 'interleaved', 'both'].includes(opts.realMode)) {
        throw new GanDistError(
          'GAN_DIST_E_CONFIG',
          `--real-mode: unknown mode "${opts.realMode}"`,
          'use one of: interleaved, separate, both',
        );
      }
      if (
        opts.realMode !== 'separate' &&
        opts.iterations !== undefined &&
        opts.iterations < MIN_INTERLEAVED_ITERATIONS
      ) {
        throw new GanDistError(
          'GAN_DIST_E_CONFIG',
          `--iterations ${opts.iterations}: the interleaved real part counts the cycles after two warm-up ones`,
          `use --iterations ${MIN_INTERLEAVED_ITERATIONS} or more`,
        );
      }
      const report = await benchScaling({
        preset: opts.preset,
        iterations: opts.iterations,
        realWorkers: opts.realWorkers,
        realBatchSize: opts.realBatchSize,
        realRounds: opts.realRounds,
        realMode: opts.realMode,
        transports: opts.transport,
        simulatedWorkers: opts.workers,
        simulateStepMs: opts.simulateStepMs,
        rowsPerShard: opts.rowsPerShard,
        simulatedIterations: opts.simulatedIterations,
        simulatedRounds: opts.simulatedRounds,
        nodes: opts.nodes,
        workersPerNode: opts.workersPerNode,
        real: opts.real,
        progress: (line) => console.error(line),
      });
      console.log(opts.json ? JSON.stringify(report, null, 2) : formatScaling(report));
    });
}
