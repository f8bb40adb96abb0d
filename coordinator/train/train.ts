// `gan-dist train`: the run directory, the data, the token, the coordinator and its local
// workers, wired together; Ctrl-C finishes the iteration, checkpoints and exits.

import path from 'node:path';
import type { DataEvent } from '../../data/events.ts';
import {
  GPU_PACKAGE,
  installedVersion,
  parseBackendName,
  TFJS_WEBGPU_PACKAGE,
  WEBGPU_PACKAGE,
} from '../../protocol/backends.ts';
import { modelConfigOf, type TrainConfig } from '../../protocol/config.ts';
import { GanDistError, type ErrorCode } from '../../protocol/errors.ts';
import { parameterTable } from '../../protocol/model/architecture.ts';
import { saveCheckpoint } from '../../protocol/run/checkpoint.ts';
import { writeEndpoint } from '../../protocol/run/run-dir.ts';
import { sampleFileName, writeSampleGrid } from '../../protocol/run/samples.ts';
import type { TransportChoice } from '../../protocol/wire/shm.ts';
import { isLoopbackHost } from '../../protocol/wire/tls.ts';
import type { WireDtype } from '../../protocol/wire/wire-dtype.ts';
import type { BatchNormMode } from '../../protocol/wire/bn-sync.ts';
import { LogBroadcaster } from '../broadcast.ts';
import { Coordinator } from '../coordinator.ts';
import type { IterationRecord } from '../iteration.ts';
import { planWorkers } from './launcher.ts';
import { LocalWorkers, type FailedWorker, type LocalWorkersGone } from './local-workers.ts';
import { createRunLogger, flushLogger, logEvent } from '../logger.ts';
import { DEFAULT_MAX_RESTARTS } from './restart-policy.ts';
import { chooseTransport, openData, openRun } from './run-setup.ts';
import { credentialLines, secureRun } from './credentials.ts';

export interface TrainOptions {
  config: TrainConfig;
  /** Keys the user set explicitly (flags, config file): on resume they override the stored config. */
  overrides?: Partial<TrainConfig>;
  /** 'synthetic', 'flowers' or a folder; a resume defaults to the run's own. */
  data?: string;
  runDir?: string;
  resume?: string;
  listen: string;
  workers: number;
  gpus?: string[];
  /** --max-restarts: restarts of a failed local worker, per rank within 10 minutes (default 3). */
  maxRestarts?: number;
  backend: string;
  minWorkers?: number;
  balance?: 'off' | 'throughput';
  /** --adam-threads: threads of the coordinator's reduction and Adam (default: min(2, cores); 1: main thread). */
  adamThreads?: number;
  checkpointEvery: number;
  keepCheckpoints: number;
  tokenFile?: string;
  dataThreads?: number;
  resize?: 'stretch' | 'cover';
  cwd?: string;
  /** Person-readable progress lines; default: nothing. */
  print?: (line: string) => void;
  /** --eval-every K: SWD of G every K iterations, logged as `eval` events (0 or absent: never). */
  evalEvery?: number;
  /** --eval-count N: images per side of each SWD evaluation (default 128). */
  evalCount?: number;
  /** Print a compact line every this many iterations. */
  printEvery?: number;
  onData?: (e: DataEvent) => void;
  onCoordinator?: (c: Coordinator, runDir: string) => void;
  /** Each line of train.log as written (the dashboard of --web is fed by it). */
  onLogLine?: (line: string) => void;
  /** Benchmarks: local workers compute nothing and answer each shard after this delay. */
  simulateStepMs?: number;
  /** Benchmarks: the number of shards of each iteration (Coordinator's shardsAt). */
  shardsAt?: (iteration: number) => number;
  /** wasm threads per local CPU worker (default: cores / workers). */
  threadsPerWorker?: number;
  /** Benchmarks: no checkpoint at the end of the run. */
  skipFinalCheckpoint?: boolean;
  /**
   * --wire-dtype: weights and gradients between the coordinator and its workers as float32
   * (default, exact), bfloat16 or float16 with a per-tensor scale. Kept in config.json for a resume.
   */
  wireDtype?: WireDtype;
  /**
   * --batchnorm: sync (each BatchNorm layer over the whole batch, the single-process step) or
   * shard (over each worker's rows). Kept in config.json for a resume; default DEFAULT_BATCHNORM.
   */
  batchnorm?: BatchNormMode;
  /** --transport: how local workers exchange tensors (auto: shared memory when /dev/shm has room). */
  transport?: TransportChoice;
  /** Tests: the free bytes of /dev/shm to decide with, instead of asking statfs. */
  shmFreeBytes?: number;
  /** Tests: where shared-memory regions live (default /dev/shm). */
  shmRoot?: string;
  /** Serve wss even on loopback (beyond loopback it always is). */
  tls?: boolean;
  tlsCert?: string;
  tlsKey?: string;
  /** Install SIGINT/SIGTERM handlers (the CLI does; tests call requestStop). */
  handleSignals?: boolean;
}

export interface TrainResult {
  runDir: string;
  state: string;
  iteration: number;
  runId: string;
}

export function parseListen(raw: string): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:]+)):(\d+)$/.exec(raw.trim());
  const port = m ? Number(m[3]) : NaN;
  if (!m || !(port >= 0 && port <= 65535)) {
    throw new GanDistError(
      'GAN_DIST_E_CONFIG',
      `--listen: "${raw}" is not HOST:PORT`,
      'e.g. --listen 127.0.0.1:7070 (port 0 picks a free one)',
    );
  }
  return { host: m[1] ?? m[2], port };
}

export async function train(opts: TrainOptions): Promise<TrainResult> {
  const cwd = opts.cwd ?? process.cwd();
  const print = opts.print ?? (() => {});
  const { host, port, useTls } = checkOptions(opts);

  // The run directory and what a resume continues from; the log; the token and certificate.
  const opened = await openRun(opts, cwd);
  const { run, resume, config, data, wireDtype, batchnorm } = opened;
  const monitors = new LogBroadcaster();
  const log = createRunLogger(run.logPath, (line) => {
    monitors.write(line);
    opts.onLogLine?.(line);
  });
  for (const w of opened.warnings) logEvent(log, 'checkpoint-skipped', { warning: w }, 'warn');
  logEvent(log, 'config', { config, data, wireDtype, batchnorm, resume: !!resume });
  const credentials = await secureRun(opts, run, !!resume, useTls);
  const { identity } = credentials;
  if (credentials.legacyWarning) logEvent(log, 'token-legacy', { warning: credentials.legacyWarning }, 'warn');

  // The data, the evaluation's fixed real sample, the local workers and how they exchange tensors.
  const { dataset, batches, evaluation } = await openData(opts, opened, log, print);
  const plan = planWorkers({
    gpus: opts.gpus,
    workers: opts.workers,
    backend: opts.backend,
    simulateStepMs: opts.simulateStepMs,
    threads: opts.threadsPerWorker,
  });
  const shm = chooseTransport(opts, config, plan.length, log, print);

  // Started once the coordinator listens; its events stop the restarts when the run ends.
  let local: LocalWorkers | undefined;
  const coordinator = new Coordinator({
    monitors,
    shm,
    config,
    wireDtype,
    batchnorm,
    batches,
    iterationsPerEpoch: batches.iterationsPerEpoch,
    log,
    token: credentials.tokens,
    host,
    port,
    tls: identity,
    balance: opts.balance,
    shardsAt: opts.shardsAt,
    adamThreads: opts.adamThreads,
    minWorkers: opts.minWorkers ?? Math.max(1, opts.gpus?.length || opts.workers),
    resume,
    checkpointEvery: opts.checkpointEvery,
    evalEvery: opts.evalEvery,
    evaluation,
    onEvent: (name, f) => onRunEvent(name, f, local, print),
    finalCheckpoint: !opts.skipFinalCheckpoint,
    saveSnapshot: async (s) => {
      const specs = parameterTable(modelConfigOf(config)).map(({ name, shape, role }) => ({ name, shape, role }));
      return (await saveCheckpoint(run.path, { ...s, specs }, { keep: opts.keepCheckpoints })).path;
    },
    writeSamples: async (iteration, images, count) => {
      const file = path.join(run.samplesDir, sampleFileName(iteration));
      await writeSampleGrid(file, images, count, config.imageSize);
      return file;
    },
    onIteration: (r) => printIteration(r, coordinator.maxIterations, opts.printEvery ?? 10, print),
  });
  opts.onCoordinator?.(coordinator, run.path);
  const endpoint = await coordinator.listen();
  writeEndpoint(run, endpoint);
  const scheme = identity ? 'wss' : 'ws';
  print(`run ${run.path}${resume ? ` (resumed at iteration ${resume.iteration})` : ''}`);
  for (const line of credentialLines(credentials, `${scheme}://${endpoint}`)) print(line);
  const localUrl = `${scheme}://${isLoopbackHost(host) ? endpoint : `127.0.0.1:${endpoint.split(':').pop()}`}`;
  const started = startLocalWorkers(plan, coordinator, {
    url: localUrl,
    token: credentials.workerToken,
    tokenFile: identity ? credentials.files.worker : undefined,
    shmRegion: shm?.dir,
    log,
    maxRestarts: opts.maxRestarts ?? DEFAULT_MAX_RESTARTS,
  });
  local = started.workers;
  const workers = local;
  const offSignals = opts.handleSignals ? stopOnSignals(coordinator, workers, print) : () => {};

  try {
    const state = await coordinator.run();
    print(`${state} at iteration ${coordinator.iteration}; run directory ${run.path}`);
    const deserted = started.deserted();
    if (deserted) throw desertedError(deserted, coordinator.iteration, run.path);
    return { runDir: run.path, state, iteration: coordinator.iteration, runId: coordinator.runId };
  } finally {
    offSignals();
    await workers.exited(5000);
    dataset.close();
    shm?.close();
    // Its final checkpoint is written: the optimizer's memory goes back to this process's arena.
    await coordinator.dispose();
    await flushLogger(log);
  }
}

/** The train process's part in the coordinator's events: restarts end with the run; SWD lines print. */
function onRunEvent(
  name: string,
  f: Record<string, unknown>,
  local: LocalWorkers | undefined,
  print: (line: string) => void,
): void {
  // From a stop on, a local worker that exits is leaving with the run, not failing.
  if (name === 'stop-requested' || (name === 'state' && ['stopping', 'finished', 'failed'].includes(f.to as string)))
    local?.shutdown();
  if (name === 'eval')
    print(`eval iter ${f.iteration}: SWD x1e3 ${f.swd} (${(f.swdLevels as number[]).join(' / ')}; floor ${f.floor})`);
}

/**
 * Starts the local workers, restarted as they fail. When every one is down for good and no other
 * worker is here: before any joined, the run fails with the first one's own error; mid-run it
 * stops as a Stop would (the last completed iteration checkpointed) and `deserted` says so.
 */
function startLocalWorkers(
  plan: ReturnType<typeof planWorkers>,
  coordinator: Coordinator,
  opts: Omit<ConstructorParameters<typeof LocalWorkers>[1], 'onAllGone'>,
): { workers: LocalWorkers; deserted: () => LocalWorkersGone | undefined } {
  let deserted: LocalWorkersGone | undefined;
  const workers: LocalWorkers = new LocalWorkers(plan, {
    ...opts,
    onAllGone: (gone) => {
      // Workers that are not ours (remote ones) carry the run on. Our dead ones may still be in
      // the table until their sockets' ends are seen, hence the check by id.
      if ([...coordinator.workers.keys()].some((id) => !workers.isLocal(id))) return;
      if (!gone.joinedAny) return coordinator.fail(neverJoined(gone.failures[0]));
      deserted = gone;
      const failed = gone.failures.map(({ rank, code, signal }) => ({ rank, code, signal }));
      logEvent(opts.log, 'no-workers-left', { failed }, 'error');
      coordinator.requestStop('every local worker is down for good');
    },
  }).start();
  return { workers, deserted: () => deserted };
}

/** Flags that contradict each other or the installation, before anything is created. */
function checkOptions(opts: TrainOptions): { host: string; port: number; useTls: boolean } {
  const backend = parseBackendName(opts.backend);
  // Whether a GPU works is for each worker to find out (worker/backend.ts); here, only whether
  // any GPU backend is installed at all.
  const webgpu = [WEBGPU_PACKAGE, TFJS_WEBGPU_PACKAGE].every((p) => installedVersion(p));
  const cuda = !!installedVersion(GPU_PACKAGE);
  if (opts.gpus?.length && ((backend === 'auto' && !webgpu && !cuda) || (backend === 'tensorflow-gpu' && !cuda))) {
    throw new GanDistError(
      'GAN_DIST_E_BACKEND',
      backend === 'auto'
        ? `--gpus ${opts.gpus.join(',')} needs a GPU backend: neither ${WEBGPU_PACKAGE} with ${TFJS_WEBGPU_PACKAGE} nor ${GPU_PACKAGE} is installed`
        : `--backend tensorflow-gpu needs ${GPU_PACKAGE}, which is not installed (it requires CUDA 11.2 and cuDNN 8.1)`,
      `install \`npm install ${WEBGPU_PACKAGE} ${TFJS_WEBGPU_PACKAGE}\` (WebGPU: a Vulkan driver, no CUDA; \`gan-dist doctor\` checks it), or train on CPUs with --workers N`,
    );
  }
  if (!!opts.tlsCert !== !!opts.tlsKey) {
    throw new GanDistError(
      'GAN_DIST_E_CONFIG',
      '--tls-cert and --tls-key go together',
      'give both, or neither for a certificate made for the run',
    );
  }
  const { host, port } = parseListen(opts.listen);
  // Beyond loopback the connection is always TLS: the user's certificate or one made for the run.
  return { host, port, useTls: opts.tls === true || !isLoopbackHost(host) || !!opts.tlsCert };
}

function printIteration(r: IterationRecord, max: number, every: number, print: (line: string) => void): void {
  if (r.iteration !== 1 && r.iteration % every !== 0 && r.iteration !== max) return;
  print(
    `iter ${r.iteration}/${max}  epoch ${r.epoch}  scoreG ${r.scoreG.toFixed(3)}  scoreD ${r.scoreD.toFixed(3)}  ` +
      `lossG ${r.lossG.toFixed(3)}  lossD ${r.lossD.toFixed(3)}  ${r.imagesPerSec.toFixed(1)} img/s  ${r.workers} worker${r.workers === 1 ? '' : 's'}`,
  );
}

/** The run's failure when every local worker exited before joining and no other worker is here. */
function neverJoined(first: FailedWorker): GanDistError {
  const code = /\[(GAN_DIST_E_[A-Z_]+)\]$/.exec(first.line ?? '')?.[1] as ErrorCode | undefined;
  const why = first.line?.replace(/^gan-dist: /, '').replace(/ \[GAN_DIST_E_[A-Z_]+\]$/, '') ?? 'no output';
  return new GanDistError(
    code ?? 'GAN_DIST_E_WORKER',
    `every local worker exited before joining; rank ${first.rank} exited ${first.code ?? first.signal}: ${why}`,
    '`gan-dist doctor` shows which backends load here',
  );
}

/** What train() throws after a run that lost every local worker for good mid-run had stopped and checkpointed. */
function desertedError(gone: LocalWorkersGone, iteration: number, runDir: string): GanDistError {
  const ranks = gone.failures.map((f) => `rank ${f.rank} (${f.signal ?? `exit ${f.code}`})`).join(', ');
  return new GanDistError(
    'GAN_DIST_E_WORKER',
    `every local worker is down for good and no other worker is connected: ${ranks}; stopped at iteration ${iteration}`,
    `the last completed iteration is checkpointed; \`gan-dist train --resume ${runDir}\` continues the run (train.log has each worker's output)`,
  );
}

/** Ctrl-C / SIGTERM: the first finishes the iteration and checkpoints, a second quits at once. Returns the uninstall. */
function stopOnSignals(coordinator: Coordinator, local: LocalWorkers, print: (line: string) => void): () => void {
  let signals = 0;
  const onSignal = (sig: NodeJS.Signals) => {
    signals++;
    if (signals === 1) {
      print(`${sig}: finishing the current iteration, then a checkpoint (again to quit at once)`);
      coordinator.requestStop(`${sig} received`);
    } else {
      // Checkpoints are written to a temporary name and renamed, so quitting now breaks none.
      // The processes running now: restarted ones too, and no restart waiting out its backoff starts.
      local.kill();
      process.exit(130);
    }
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  return () => {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  };
}
