// `gan-dist eval`: sliced Wasserstein distance between a checkpoint's generated images and real
// ones, with the real-vs-real floor. Thin: the work is worker/eval.ts's evaluateCheckpoint.

import { type Command, Option } from 'commander';
import { stderrLog } from '../data/index.ts';
import { backendNames, type BackendName } from '../protocol/backends.ts';
import { DEFAULT_EVAL_COUNT, DEFAULT_EVAL_SEED } from '../metrics/swd.ts';
import { evaluateCheckpoint, formatEval } from '../worker/eval.ts';
import { integerArg } from './options.ts';

interface EvalFlags {
  checkpoint: string;
  data?: string;
  count: number;
  seed: number;
  resize?: 'stretch' | 'cover';
  backend: BackendName;
  json?: boolean;
}

export function registerEvalCommand(program: Command): void {
  program
    .command('eval')
    .description(
      "score a checkpoint's generator: sliced Wasserstein distance to real images per pyramid level (ProGAN's SWD x 1e3), and the real-vs-real floor",
    )
    .requiredOption(
      '--checkpoint <path>',
      'a run directory (e.g. runs/latest) or one checkpoint (runs/<run>/checkpoints/iter-000500)',
    )
    .option(
      '--data <source>',
      "the real images: 'synthetic', 'flowers' or a folder (default: the data the run trained on)",
    )
    .option(
      '--count <n>',
      'generated images, and real images in each of the two real sets (the data needs 2 x N)',
      integerArg(1),
      DEFAULT_EVAL_COUNT,
    )
    .option(
      '--seed <n>',
      'seeds the latents (as `generate --seed`), the real images picked, patches and directions',
      integerArg(0),
      DEFAULT_EVAL_SEED,
    )
    .addOption(
      new Option('--resize <mode>', 'how the real images are resized; use what the run trained with').choices([
        'stretch',
        'cover',
      ]),
    )
    .addOption(
      new Option('--backend <name>', 'compute backend for the generator').choices([...backendNames]).default('auto'),
    )
    .option('--json', 'print the result as JSON')
    .action(async (opts: EvalFlags) => {
      const r = await evaluateCheckpoint({
        checkpoint: opts.checkpoint,
        data: opts.data,
        count: opts.count,
        seed: opts.seed,
        resize: opts.resize,
        backend: opts.backend,
        onWarning: (m) => process.stderr.write(`warning: ${m}\n`),
        // Decode progress goes to stderr, so --json output stays one clean line.
        dataLog: stderrLog(),
      });
      process.stdout.write(opts.json === true ? `${JSON.stringify(r)}\n` : `${formatEval(r)}\n`);
    });
}
