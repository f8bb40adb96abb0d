// The gan-dist CLI: parses, calls an exported function, prints. The only place where errors
// become messages and exit codes.

import { Command, CommanderError } from 'commander';
import { createRequire } from 'node:module';
import { GanDistError, exitCodes } from '../protocol/errors.ts';
import { modelConfigOf } from '../protocol/config.ts';
import { doctor, formatDoctor } from '../worker/doctor.ts';
import { formatSummary, summarize } from '../worker/summary.ts';
import { registerDataCommands } from './data.ts';
import { registerTrainCommands } from './train.ts';
import { registerGenerateCommand } from './generate.ts';
import { registerEvalCommand } from './eval.ts';
import { registerBenchCommands } from './bench.ts';
import { registerLogsCommand } from './logs.ts';
import { registerWatchCommand } from './watch.ts';
import { addConfigOptions, configFromOptions } from './options.ts';

const { version } = createRequire(import.meta.url)('../package.json') as { version: string };

export function buildProgram(): Command {
  // Set before any subcommand is added, so each inherits it: a usage error anywhere exits 2, not commander's 1.
  const program = new Command('gan-dist')
    .exitOverride()
    .description("Distributed DCGAN training (MATLAB's Flowers GAN) across GPUs and machines")
    .version(version)
    .showHelpAfterError('(add --help for usage)');

  addConfigOptions(
    program
      .command('summary')
      .description("layer table of the generator and discriminator, as MATLAB's analyzeNetwork")
      .option('--json', 'print JSON'),
  ).action((opts) => {
    const model = modelConfigOf(configFromOptions(opts));
    const nets = [summarize('G', model), summarize('D', model)];
    if (opts.json) console.log(JSON.stringify({ model, networks: nets }, null, 2));
    else console.log(nets.map(formatSummary).join('\n\n'));
  });

  program
    .command('doctor')
    .description('what this machine offers gan-dist: Node, cores, backends, CUDA/cuDNN, GPUs')
    .option('--json', 'print JSON')
    .action(async (opts) => {
      const report = await doctor();
      console.log(opts.json ? JSON.stringify(report, null, 2) : formatDoctor(report));
    });

  registerTrainCommands(program);
  registerGenerateCommand(program);
  registerEvalCommand(program);
  registerBenchCommands(program);
  registerDataCommands(program);
  registerLogsCommand(program);
  registerWatchCommand(program);
  return program;
}

/**
 * Runs the CLI; resolves to the process's exit status. A command that ends without an error may
 * still set one in process.exitCode (`gan-dist worker`'s 10, 11, 12; a run that did not finish):
 * it is returned, not overwritten. README's "Error codes and exit codes" lists them all.
 */
export async function main(argv: string[]): Promise<number> {
  const program = buildProgram();
  process.exitCode = undefined;
  try {
    await program.parseAsync(argv);
    return typeof process.exitCode === 'number' ? process.exitCode : 0;
  } catch (err) {
    if (err instanceof CommanderError) {
      // commander already printed its message (or the help / version text).
      return err.exitCode === 0 ? 0 : exitCodes.GAN_DIST_E_USAGE;
    }
    if (err instanceof GanDistError) {
      console.error(`gan-dist: ${err.message} [${err.code}]`);
      if (err.hint) console.error(`  fix: ${err.hint}`);
      return exitCodes[err.code];
    }
    console.error(err);
    return 1;
  }
}

process.exitCode = await main(process.argv);
