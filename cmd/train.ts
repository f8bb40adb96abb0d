// `gan-dist train`: a thin command over coordinator/train/train.ts (`gan-dist worker` is worker.ts).

import { Option, type Command } from 'commander';
import { configKeys, flagName, type TrainConfig } from '../protocol/config.ts';
import { GanDistError } from '../protocol/errors.ts';
import { train } from '../coordinator/train/train.ts';
import { DEFAULT_MAX_RESTARTS } from '../coordinator/train/restart-policy.ts';
import { WIRE_DTYPES } from '../protocol/wire/wire-dtype.ts';
import { BATCHNORM_MODES, DEFAULT_BATCHNORM } from '../protocol/wire/bn-sync.ts';
import { TRANSPORTS } from '../protocol/wire/shm.ts';
import { stderrLog } from '../data/progress.ts';
import { backendNames } from '../protocol/backends.ts';
import { addConfigOptions, configFromOptions, parseGpus, positiveInt } from './options.ts';
import { registerWorker } from './worker.ts';
import { trainTuiHooks } from '../monitor/train-tui.ts';
import { trainDashboardHooks } from '../monitor/web/train-dashboard.ts';
import { parseWebAddress } from '../monitor/web/web-address.ts';

export function registerTrainCommands(program: Command): void {
  registerTrain(program);
  registerWorker(program);
}

/** `gan-dist train`: the coordinator, its local workers, the TUI or the console lines. */
function registerTrain(program: Command): void {
  addConfigOptions(
    program
      .command('train')
      .description('train the DCGAN: a coordinator and its workers (default: 2 CPU workers on synthetic flowers)')
      .option(
        '--data <source>',
        "'synthetic' (default, offline), 'flowers' (after `gan-dist data fetch flowers`) or a folder of images; a resume uses the run's",
      )
      .option('--workers <n>', 'local CPU worker processes', positiveInt('--workers'), 2)
      .option(
        '--gpus <ids>',
        'one worker process per GPU id, e.g. 0,1,2,3 (needs @tensorflow/tfjs-node-gpu)',
        parseGpus,
      )
      .addOption(
        new Option('--backend <name>', 'compute backend of the local workers')
          .choices([...backendNames])
          .default('auto'),
      )
      .option(
        '--max-restarts <n>',
        'restarts of a local worker that fails, per worker, 1 s, 2 s, 4 s... apart (its count comes back after 10 minutes up)',
        positiveInt('--max-restarts'),
        DEFAULT_MAX_RESTARTS,
      )
      .option(
        '--listen <host:port>',
        'where workers join (loopback; port 0 picks one, written to RUN_DIR/endpoint)',
        '127.0.0.1:0',
      )
      .option(
        '--tls-cert <file>',
        'serve wss with this PEM certificate (default beyond loopback: one made for the run, pinned by the token file)',
      )
      .option('--tls-key <file>', 'the private key of --tls-cert')
      .option('--tls', 'serve wss on loopback too')
      .option(
        '--min-workers <n>',
        'wait until this many workers are in before the first iteration',
        positiveInt('--min-workers', 1),
      )
      .addOption(
        new Option(
          '--transport <kind>',
          'how local workers exchange tensors: shm (/dev/shm, memory speed), socket, or auto (shm when /dev/shm has room)',
        )
          .choices([...TRANSPORTS])
          .default('auto'),
      )
      .addOption(
        new Option(
          '--wire-dtype <dtype>',
          "weights and gradients to every worker (socket and shared memory): float32 (exact), bfloat16 or float16 (half the bytes; master weights and Adam stay float32); a resume keeps the run's",
        ).choices([...WIRE_DTYPES]),
      )
      .addOption(
        new Option(
          '--batchnorm <mode>',
          `BatchNorm over the whole batch, its statistics pooled at every layer (sync: the single-process step whatever the workers, as MATLAB's) or over each worker's rows (shard: no barriers, numbers that depend on the worker count); default ${DEFAULT_BATCHNORM} (sync's barriers cost +57 % at a 10 ms GPU step; see docs/benchmarks.md), a resume keeps the run's`,
        ).choices([...BATCHNORM_MODES]),
      )
      .addOption(
        new Option('--balance <mode>', 'shard sizes: off (equal) or throughput (by measured speed)')
          .choices(['off', 'throughput'])
          .default('off'),
      )
      .option(
        '--adam-threads <n>',
        "threads of the coordinator's gradient reduction and Adam (default: min(2, cores); 1: main thread; same floats either way)",
        positiveInt('--adam-threads', 1),
      )
      .option('--run-dir <dir>', 'the run directory (default runs/<timestamp>, runs/latest points at it)')
      .option('--resume <run-dir>', 'continue the run in this directory from its last checkpoint')
      .option(
        '--checkpoint-every <n>',
        'iterations between checkpoints (0: only at the end)',
        positiveInt('--checkpoint-every'),
        500,
      )
      .option('--keep-checkpoints <n>', 'checkpoints kept', positiveInt('--keep-checkpoints', 1), 3)
      .option(
        '--token-file <file>',
        "a new run's worker secret (default: GAN_DIST_TOKEN or a new one; written to RUN_DIR/worker.token)",
      )
      .option(
        '--data-threads <n>',
        'image decode threads (0: main thread with sharp threads)',
        positiveInt('--data-threads'),
      )
      .addOption(
        new Option('--resize <mode>', "stretch (as MATLAB's augmentedImageDatastore) or cover (centre crop)").choices([
          'stretch',
          'cover',
        ]),
      )
      .option(
        '--eval-every <n>',
        'iterations between SWD evaluations (as `gan-dist eval`), logged as `eval` events (0: never)',
        positiveInt('--eval-every'),
        0,
      )
      .option(
        '--eval-count <n>',
        'images per side of each SWD evaluation (needs twice as many real images)',
        positiveInt('--eval-count', 1),
        128,
      )
      .option('--print-every <n>', 'iterations between console lines', positiveInt('--print-every', 1), 10)
      .option('--no-tui', 'plain lines instead of the terminal UI')
      .option(
        '--web <[host:]port>',
        'serve the dashboard (charts, samples, workers, Stop) here: loopback unless a host is given, then TLS; port 0 picks one; the login link is printed and written to RUN_DIR/web.url',
        (raw: string) => parseWebAddress(raw),
      ),
  ).action(async (opts) => {
    const config = configFromOptions(opts);
    const overrides: Partial<TrainConfig> = {};
    for (const key of configKeys)
      if (typeof opts[key] === 'number') (overrides as Record<string, number>)[key] = config[key];
    if (opts.resume && opts.runDir) {
      throw new GanDistError(
        'GAN_DIST_E_USAGE',
        '--resume and --run-dir both given',
        '--resume DIR continues that run in DIR; drop --run-dir',
      );
    }
    const tui = trainTuiHooks({
      enabled: opts.tui !== false,
      stdout: process.stdout,
      stdin: process.stdin,
      print: (line) => console.log(line),
      runDir: opts.resume ?? opts.runDir,
    });
    const web = opts.web
      ? trainDashboardHooks({
          address: opts.web,
          print: tui.print,
          pin: tui.pin,
          tls: opts.tls,
          tlsCert: opts.tlsCert,
          tlsKey: opts.tlsKey,
        })
      : undefined;
    const result = await train({
      config,
      overrides,
      data: opts.data,
      runDir: opts.runDir,
      resume: opts.resume,
      listen: opts.listen,
      workers: opts.gpus ? 0 : opts.workers,
      gpus: opts.gpus,
      backend: opts.backend,
      maxRestarts: opts.maxRestarts,
      minWorkers: opts.minWorkers,
      balance: opts.balance,
      adamThreads: opts.adamThreads,
      wireDtype: opts.wireDtype,
      batchnorm: opts.batchnorm,
      transport: opts.transport,
      tls: opts.tls,
      tlsCert: opts.tlsCert,
      tlsKey: opts.tlsKey,
      checkpointEvery: opts.checkpointEvery,
      keepCheckpoints: opts.keepCheckpoints,
      tokenFile: opts.tokenFile,
      dataThreads: opts.dataThreads,
      resize: opts.resize,
      printEvery: opts.printEvery,
      evalEvery: opts.evalEvery,
      evalCount: opts.evalCount,
      print: tui.print,
      onCoordinator: (coordinator, runDir) => {
        tui.onCoordinator(coordinator, runDir);
        web?.onCoordinator(coordinator, runDir);
      },
      onLogLine: web?.onLogLine,
      onData: stderrLog(),
      handleSignals: true,
    }).finally(async () => {
      tui.stop();
      await web?.close();
    });
    if (result.state !== 'finished') process.exitCode = 1;
  });
  // Flag names are checked once here, so a typo in the table above fails at start, not in use.
  void configKeys.map(flagName);
}
