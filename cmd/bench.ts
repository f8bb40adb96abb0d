// `gan-dist bench scaling|step`: benchmarks that print ratios against a baseline measured in the same run.

import type { Command } from 'commander';
import { GanDistError } from '../coordinator/errors.ts';
import { benchScaling, formatScaling } from '../coordinator/scaling-bench.ts';
import { benchMemory } from '../coordinator/memory-bench.ts';

export function intList(flag: string) {
  return (raw: string) => {
    const xs = raw.split(',').map(Number);
    if (xs.length === 0 || xs.some((x) => !Number.isInteger(x) || x < 1)) {
      throw new GanDistError('GAN_DIST_E_CONFIG', `${flag}: "${raw}" is not a comma-separated list of positive integers`);
    }
    return xs;
  };
}

export function registerBenchCommands(program: Command): Command {
  const bench = program.command('bench').description('benchmarks (ratios against a baseline measured in the same run)');
  bench
    .command('scaling')
    .description('1 vs 2 local CPU workers (real), and the coordinator\'s overhead with simulated compute (full model)')
    .option('--preset <name>', 'preset of the real part', 'tiny')
    .option('--iterations <n>', 'iterations per real run', (v) => intList('--iterations')(v)[0], 24)
    .option('--real-workers <list>', 'worker counts of the real part', intList('--real-workers'), [1, 2])
    .option('--workers <list>', 'worker counts of the simulated part', intList('--workers'), [4])
    .option('--simulate-step-ms <list>', 'fixed delay per shard (ms) of the simulated part', intList('--simulate-step-ms'), [200])
    .option('--rows-per-shard <n>', 'rows per simulated shard', (v) => intList('--rows-per-shard')(v)[0], 32)
    .option('--simulated-iterations <n>', 'iterations per simulated run', (v) => intList('--simulated-iterations')(v)[0], 12)
    .option('--json', 'print JSON')
    .action(async (opts) => {
      const report = await benchScaling({
        preset: opts.preset,
        iterations: opts.iterations,
        realWorkers: opts.realWorkers,
        simulatedWorkers: opts.workers,
        simulateStepMs: opts.simulateStepMs,
        rowsPerShard: opts.rowsPerShard,
        simulatedIterations: opts.simulatedIterations,
        progress: (line) => console.error(line),
      });
      console.log(opts.json ? JSON.stringify(report, null, 2) : formatScaling(report));
    });
  bench
    .command('memory')
    .description('RSS of the coordinator and workers after a short and a long tiny run; coordinator RSS with the full model')
    .option('--short <n>', 'first measurement (iteration)', (v) => intList('--short')(v)[0], 50)
    .option('--long <n>', 'second measurement (iteration)', (v) => intList('--long')(v)[0], 500)
    .option('--workers <n>', 'CPU workers', (v) => intList('--workers')(v)[0], 2)
    .option('--json', 'print JSON')
    .action(async (opts) => {
      const r = await benchMemory({ short: opts.short, long: opts.long, workers: opts.workers, progress: (s) => console.error(s) });
      if (opts.json) return console.log(JSON.stringify(r, null, 2));
      const t = r.tiny;
      console.log(`tiny, ${t.workers} workers: coordinator ${t.coordinatorMB.map((x) => x.toFixed(0)).join(' -> ')} MB (${t.coordinatorGrowthPct.toFixed(1)} %), ` +
        `workers ${t.workerGrowthPct.map((g, i) => `${t.workersMB[0][i].toFixed(0)} -> ${t.workersMB[1][i].toFixed(0)} MB (${g.toFixed(1)} %)`).join(', ')} ` +
        `between iterations ${t.checkpoints.join(' and ')}`);
      console.log(`full model (${r.full.parameters.toLocaleString('en-US')} parameters): coordinator state ${r.full.heldBytesMB.toFixed(0)} MB held, RSS +${r.full.rssDeltaMB.toFixed(0)} MB (${r.full.deltaVsHeld.toFixed(2)}x)`);
    });
  return bench;
}
