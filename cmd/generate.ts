// `gan-dist generate`: images from a checkpoint's generator as a sample grid, or the generator
// exported as a tfjs LayersModel. Thin: the work is worker/export.ts's generateFromCheckpoint.

import { type Command, Option } from 'commander';
import { backendNames, type BackendName } from '../protocol/backends.ts';
import { generateFromCheckpoint } from '../worker/export.ts';
import { integerArg } from './options.ts';

interface GenerateFlags {
  checkpoint: string;
  count: number;
  seed?: number;
  validationLatents?: boolean;
  out?: string;
  format: 'png' | 'tfjs';
  backend: BackendName;
  json?: boolean;
}

export function registerGenerateCommand(program: Command): void {
  program
    .command('generate')
    .description("run a checkpoint's generator: a grid of images (PNG) or the model for tf.loadLayersModel")
    .requiredOption(
      '--checkpoint <path>',
      'a run directory (e.g. runs/latest) or one checkpoint (runs/<run>/checkpoints/iter-000500)',
    )
    .option('--count <n>', 'how many images', integerArg(1), 25)
    .addOption(
      new Option('--seed <n>', 'draw the latents from this seed (default: a fresh one, printed)').argParser(
        integerArg(0),
      ),
    )
    .addOption(
      new Option(
        '--validation-latents',
        "the run's fixed validation latents (the images of its sample grids) instead of fresh ones",
      ).conflicts('seed'),
    )
    .option('--out <path>', 'PNG file, or directory with --format tfjs (default: grid.png, generator-tfjs)')
    .addOption(
      new Option('--format <format>', 'png: image grid; tfjs: model.json + weights')
        .choices(['png', 'tfjs'])
        .default('png'),
    )
    .addOption(new Option('--backend <name>', 'compute backend').choices([...backendNames]).default('auto'))
    .option('--json', 'print the result as JSON')
    .action(async (opts: GenerateFlags) => {
      const r = await generateFromCheckpoint({
        checkpoint: opts.checkpoint,
        count: opts.count,
        seed: opts.seed,
        validationLatents: opts.validationLatents,
        out: opts.out,
        format: opts.format,
        backend: opts.backend,
        onWarning: (m) => process.stderr.write(`warning: ${m}\n`),
      });
      const from = `iteration ${r.iteration} (${r.checkpoint})`;
      const latents =
        r.latents === 'validation'
          ? "the run's validation latents"
          : `fresh latents of seed ${r.seed}: --seed ${r.seed} draws them again`;
      const human =
        r.format === 'tfjs'
          ? `exported the generator of ${from} to ${r.out}; load it with tf.loadLayersModel`
          : `wrote ${r.count} images (${r.width}x${r.height} grid, ${latents}) from ${from} to ${r.out}`;
      process.stdout.write(opts.json === true ? `${JSON.stringify(r)}\n` : `${human}\n`);
    });
}
