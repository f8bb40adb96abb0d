// What `gan-dist train` sets up before the coordinator listens: the run directory (new, or the
// one a resume continues), the data, and the local transport; its credentials are credentials.ts.

import { DEFAULT_BATCHNORM, parseBatchNorm, type BatchNormMode } from '../../protocol/wire/bn-sync.ts';
import { readFileSync } from 'node:fs';
import { evalEventFields, prepareRunEvaluation, type RunEvaluation } from '../../metrics/swd.ts';
import type { IteratorState } from '../../data/batches.ts';
import { openDataset } from '../../data/index.ts';
import { modelConfigOf, type TrainConfig } from '../../protocol/config.ts';
import { parameterTable } from '../../protocol/model/architecture.ts';
import { ADAM_FORM, type AdamForm, loadLatestCheckpoint } from '../../protocol/run/checkpoint.ts';
import { createRunDir, openRunDirForResume, writeRunConfig, type RunDir } from '../../protocol/run/run-dir.ts';
import type { ShmRegion } from '../../protocol/wire/shm.ts';
import { openLocalTransport } from '../local-transport.ts';
import { parseWireDtype, type WireDtype } from '../../protocol/wire/wire-dtype.ts';
import type { RunSnapshot } from '../options.ts';
import { logEvent, type RunLogger } from '../logger.ts';
import type { TrainOptions } from './train.ts';

export interface OpenedRun {
  run: RunDir;
  /** What a resume continues from. */
  resume?: RunSnapshot;
  config: TrainConfig;
  data: string;
  wireDtype: WireDtype;
  batchnorm: BatchNormMode;
  /** Checkpoints a resume skipped, for the log. */
  warnings: string[];
  /** A resume from a checkpoint stepped with another Adam form: openData logs it once. */
  adamFormChanged?: { from: AdamForm; to: typeof ADAM_FORM; iteration: number; checkpoint: string };
}

/** A new run directory, or the one a resume continues with its stored config and latest checkpoint. */
export async function openRun(opts: TrainOptions, cwd: string): Promise<OpenedRun> {
  const warnings: string[] = [];
  let opened: OpenedRun;
  if (opts.resume) {
    const run = openRunDirForResume(opts.resume, cwd);
    const {
      data: storedData,
      wireDtype: storedWire,
      batchnorm: storedBn,
      ...stored
    } = JSON.parse(readFileSync(run.configPath, 'utf8')) as TrainConfig & {
      data?: string;
      wireDtype?: unknown;
      batchnorm?: unknown;
    };
    const config = { ...stored, ...(opts.overrides ?? {}) };
    // A resume keeps the run's wire dtype unless --wire-dtype is given again.
    const wireDtype =
      opts.wireDtype ??
      (storedWire === undefined ? 'float32' : parseWireDtype(storedWire, `${run.configPath}: wireDtype`));
    // And its BatchNorm mode: a run from before --batchnorm normalised per shard.
    const batchnorm =
      opts.batchnorm ?? (storedBn === undefined ? 'shard' : parseBatchNorm(storedBn, `${run.configPath}: batchnorm`));
    const ckpt = await loadLatestCheckpoint(run.path, {
      expectSpecs: parameterTable(modelConfigOf(config)),
      onWarning: (m) => warnings.push(m),
    });
    const resume: RunSnapshot = {
      runId: ckpt.runId,
      iteration: ckpt.iteration,
      epoch: ckpt.epoch,
      config,
      params: ckpt.params,
      adamM: ckpt.adamM,
      adamV: ckpt.adamV,
      zValidation: ckpt.zValidation,
      rng: ckpt.rng as RunSnapshot['rng'],
      data: ckpt.data as IteratorState,
    };
    opened = { run, resume, config, data: opts.data ?? storedData ?? 'synthetic', wireDtype, batchnorm, warnings };
    if (ckpt.adamForm !== ADAM_FORM)
      opened.adamFormChanged = { from: ckpt.adamForm, to: ADAM_FORM, iteration: ckpt.iteration, checkpoint: ckpt.path };
  } else {
    const run = createRunDir({ runDir: opts.runDir, cwd });
    opened = {
      run,
      config: opts.config,
      data: opts.data ?? 'synthetic',
      wireDtype: opts.wireDtype ?? 'float32',
      batchnorm: opts.batchnorm ?? DEFAULT_BATCHNORM,
      warnings,
    };
  }
  // config.json: the resolved config, and the data source a resume reads again.
  writeRunConfig(opened.run, {
    ...opened.config,
    data: opened.data,
    wireDtype: opened.wireDtype,
    batchnorm: opened.batchnorm,
  });
  return opened;
}

/**
 * Logs a resume's change of Adam form, once, at the resume: the one notice of openRun's that
 * needs the log, which exists only after openRun (it lives in the run directory).
 */
export function logAdamFormChange(opened: OpenedRun, log: RunLogger, print: (line: string) => void): void {
  const c = opened.adamFormChanged;
  if (!c) return;
  // The run goes on with MATLAB's Adam, whose steps differ from the textbook form's where sqrt(v)
  // is within a few eps (tiny gradients), most in early iterations.
  logEvent(log, 'adam-form-changed', { ...c }, 'warn');
  print(
    `resume: ${c.checkpoint} was stepped with the ${c.from} Adam form; iterations after ${c.iteration} use MATLAB's adamupdate (eps on the uncorrected sqrt(v))`,
  );
}

/**
 * The dataset and its batch order (resumed where the checkpoint left it), and the SWD's fixed real
 * sample; first, a resume's change of Adam form goes to the log.
 */
export async function openData(opts: TrainOptions, opened: OpenedRun, log: RunLogger, print: (line: string) => void) {
  const { config, data, resume } = opened;
  logAdamFormChange(opened, log, print);
  if (data === 'synthetic')
    print('data: synthetic flowers drawn by gan-dist (the default; --data DIR or --data flowers for photos)');
  const dataset = await openDataset({
    data,
    imageSize: config.imageSize,
    seed: config.seed,
    miniBatchSize: config.batchSize,
    threads: opts.dataThreads,
    resize: opts.resize,
    log: (e) => {
      opts.onData?.(e);
      // Progress ticks are for the console; the log keeps what a person would look back for.
      if (e.event !== 'data-progress') {
        const { level, ...fields } = e;
        log[level](fields, 'event');
      }
    },
  });
  const batches = dataset.createBatchIterator({ batchSize: config.batchSize, seed: config.seed, state: resume?.data });

  // Training-time SWD: a fixed real sample and its floor, prepared (seconds) before any worker joins.
  let evaluation: RunEvaluation | undefined;
  if ((opts.evalEvery ?? 0) > 0) {
    evaluation = prepareRunEvaluation(dataset, config.latent, opts.evalCount);
    const fields = evalEventFields(resume?.iteration ?? 0, evaluation.floor, {
      count: evaluation.count,
      seed: evaluation.seed,
    });
    logEvent(log, 'eval-floor', fields);
    print(
      `eval: SWD every ${opts.evalEvery} iterations on ${evaluation.count} images; real-vs-real floor ${evaluation.floor.mean.toFixed(2)}`,
    );
  }
  return { dataset, batches, evaluation };
}

/** Local workers exchange tensors through /dev/shm when it has room; remote ones use the socket. */
export function chooseTransport(
  opts: TrainOptions,
  config: TrainConfig,
  localWorkers: number,
  log: RunLogger,
  print: (line: string) => void,
): ShmRegion | undefined {
  const { region, decision, forced } = openLocalTransport(
    modelConfigOf(config),
    { transport: opts.transport ?? 'auto', localWorkers, root: opts.shmRoot, free: opts.shmFreeBytes },
    log,
    'transport',
  );
  if (forced && !decision.use) print(`--transport shm: falling back to the socket: ${decision.reason}`);
  return region;
}
