// `gan-dist data fetch|check|synth`: thin commands over data/. Human output is short; --json
// prints one JSON object on stdout. Progress and warnings go to stderr.

import { Argument, type Command, Option } from 'commander';
import { GanDistError } from '../protocol/errors.ts';
import { checkData, formatCheckReport } from '../data/check.ts';
import { FLOWERS_URL, fetchFlowers } from '../data/fetch.ts';
import { formatBytes, stderrLog } from '../data/progress.ts';
import { writeSyntheticPngs } from '../data/synthetic/synthetic.ts';
import { integerArg } from './options.ts';

const print = (json: boolean, value: unknown, human: string): void => {
  process.stdout.write(json ? `${JSON.stringify(value)}\n` : `${human}\n`);
};

export function registerDataCommands(program: Command): void {
  const data = program.command('data').description('get, inspect and make training images');

  data
    .command('fetch')
    .description("download, check (size, SHA-256) and extract a dataset (the seed's flower_photos, 218 MB)")
    .addArgument(new Argument('<name>', 'dataset').choices(['flowers']))
    .option('--dir <dir>', 'folder to extract flower_photos/ into (default: <cache root>/datasets)')
    .option('--url <url>', `an https mirror of the archive (default: ${FLOWERS_URL})`)
    .option('--sha256 <hex>', "the SHA-256 the archive must have (default: the seed's flower_photos.tgz's)")
    .option('--json', 'print the result as JSON')
    .action(async (_name: string, opts: { dir?: string; url?: string; sha256?: string; json?: boolean }) => {
      const result = await fetchFlowers({ dir: opts.dir, url: opts.url, sha256: opts.sha256, log: stderrLog() });
      const use = opts.dir ? `--data ${result.dir}` : '--data flowers';
      print(
        opts.json === true,
        result,
        result.fetched
          ? `flower_photos is at ${result.dir} (${formatBytes(result.bytes)} downloaded); train with ${use}`
          : `flower_photos is already at ${result.dir}; nothing downloaded; train with ${use}`,
      );
    });

  data
    .command('check')
    .description('count the usable images of a folder, list skipped files with reasons, time decoding')
    .argument('<dir>', "folder of images (subfolders are searched), or 'flowers' for the fetched set")
    .option('--image-size <n>', 'decode to n x n', integerArg(4), 64)
    .addOption(
      new Option('--resize <mode>', 'stretch (aspect not kept, as MATLAB) or cover (centre crop)')
        .choices(['stretch', 'cover'])
        .default('stretch'),
    )
    .option('--threads <n>', "decode threads (0: main thread with sharp's own threads)", integerArg(0))
    .option('--json', 'print the report as JSON')
    .action(
      async (
        dir: string,
        opts: { imageSize: number; resize: 'stretch' | 'cover'; threads?: number; json?: boolean },
      ) => {
        const report = await checkData(dir, {
          imageSize: opts.imageSize,
          resize: opts.resize,
          threads: opts.threads,
          log: stderrLog(),
        });
        print(opts.json === true, report, formatCheckReport(report));
        if (report.images === 0) {
          throw new GanDistError(
            'GAN_DIST_E_DATA',
            `no decodable image in ${report.root}: ${report.skipped.files.length} image files skipped, ${report.skipped.ignored} other files ignored`,
            'point it at a folder of JPEG, PNG, WebP, GIF or TIFF images (subfolders are searched), or fetch the flowers with `gan-dist data fetch`',
          );
        }
      },
    );

  data
    .command('synth')
    .description('write synthetic flower pictures (the --data synthetic set) as PNG files')
    .requiredOption('--out <dir>', 'folder to write into')
    .requiredOption('--count <n>', 'how many', integerArg(1))
    .option('--size <n>', 'pixels per side', integerArg(4), 64)
    .option('--seed <n>', 'seed of the set', integerArg(0), 0)
    .option('--json', 'print the result as JSON')
    .action(async (opts: { out: string; count: number; size: number; seed: number; json?: boolean }) => {
      const started = performance.now();
      const files = await writeSyntheticPngs(opts.out, opts.count, { imageSize: opts.size, seed: opts.seed });
      const seconds = (performance.now() - started) / 1000;
      print(
        opts.json === true,
        { dir: opts.out, count: files.length, size: opts.size, seed: opts.seed, seconds },
        `wrote ${files.length} ${opts.size}x${opts.size} PNG files to ${opts.out} in ${seconds.toFixed(1)} s`,
      );
    });
}
