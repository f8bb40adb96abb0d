// `gan-dist train`: the run directory, the data, the token, the coordinator and its local
// workers, wired together; Ctrl-C finishes the iteration, checkpoints and exits.

import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { newToken, resolveToken, writeTokenFile, readTokenFile } from '../protocol/wire/auth.ts';
import { loadTlsIdentity, runTlsIdentity } from '../protocol/wire/tls.ts';
import { LogBroadcaster } from './broadcast.ts';
import { loadLatestCheckpoint, saveCheckpoint } from '../protocol/run/checkpoint.ts';
import type { TrainConfig } from '../protocol/config.ts';
import { Coordinator, type RunSnapshot } from './coordinator.ts';
import type { IterationRecord } from './iteration.ts';
import { GanDistError } from '../protocol/errors.ts';
import { launchWorker, planWorkers, type LaunchedWorker } from './launcher.ts';
import { createRunLogger, flushLogger, logEvent } from './logger.ts';
import {
  createRunDir,
  openRunDirForResume,
  writeEndpoint,
  writeRunConfig,
  type RunDir,
} from '../protocol/run/run-dir.ts';
import { sampleFileName, writeSampleGrid } from '../protocol/run/samples.ts';
import { decideTransport, removeStaleRegions, ShmRegion, type TransportChoice } from '../protocol/wire/shm.ts';
import { evalEventFields, prepareRunEvaluation, type RunEvaluation } from '../metrics/swd.ts';
import { openDataset } from '../data/index.ts';
import type { IteratorState } from '../data/batches.ts';
import type { DataEvent } from '../data/events.ts';
import { GPU_PACKAGE, installedVersion, parseBackendName } from '../protocol/backends.ts';
import { parameterTable, sizeOf } from '../protocol/model/architecture.ts';
import { modelConfigOf } from '../protocol/config.ts';
import { parseWireDtype, type WireDtype } from '../protocol/wire/wire-dtype.ts';

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
  /** Benchmarks: local workers compute nothing and answer each shard after this delay. */
  simulateStepMs?: number;
  /** Benchmarks: the number of shards of each iteration (Coordinator's shardsAt). */
  shardsAt?: (iteration: number) => number;
  /** wasm threads per local CPU worker (default: cores / workers). */
  threadsPerWorker?: number;
  /** Benchmarks: no checkpoint at the end of the run. */
  skipFinalCheckpoint?: boolean;
  /**
   * --wire-dtype: weights and gradients between the coordinator and socket workers as float32
   * (default, exact), bfloat16 or float16 with a per-tensor scale. Kept in config.json for a resume.
   */
  wireDtype?: WireDtype;
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

const LOOPBACK = new Set(['127.0.0.1', 'localhost', '::1']);

export async function train(opts: TrainOptions): Promise<TrainResult> {
  const cwd = opts.cwd ?? process.cwd();
  const print = opts.print ?? (() => {});
  const backend = parseBackendName(opts.backend);
  if (opts.gpus?.length && (backend === 'auto' || backend === 'tensorflow-gpu') && !installedVersion(GPU_PACKAGE)) {
    throw new GanDistError(
      'GAN_DIST_E_BACKEND',
      `--gpus ${opts.gpus.join(',')} needs ${GPU_PACKAGE}, which is not installed (it requires CUDA 11.2 and cuDNN 8.1)`,
      `install it with \`npm install ${GPU_PACKAGE}\` on a machine with the NVIDIA libraries (\`gan-dist doctor\` checks them), or train on CPUs with --workers N`,
    );
  }
  const { host, port } = parseListen(opts.listen);
  // Beyond loopback the connection is always TLS: the user's certificate or one made for the run.
  const useTls = opts.tls === true || !LOOPBACK.has(host) || !!opts.tlsCert;
  if (!!opts.tlsCert !== !!opts.tlsKey) {
    throw new GanDistError(
      'GAN_DIST_E_CONFIG',
      '--tls-cert and --tls-key go together',
      'give both, or neither for a certificate made for the run',
    );
  }

  // The run directory, and what a resume continues from.
  let run: RunDir;
  let resume: RunSnapshot | undefined;
  let config = opts.config;
  let data = opts.data ?? 'synthetic';
  let wireDtype = opts.wireDtype ?? 'float32';
  const warnings: string[] = [];
  if (opts.resume) {
    run = openRunDirForResume(opts.resume, cwd);
    const {
      data: storedData,
      wireDtype: storedWire,
      ...stored
    } = JSON.parse(readFileSync(run.configPath, 'utf8')) as TrainConfig & { data?: string; wireDtype?: unknown };
    config = { ...stored, ...(opts.overrides ?? {}) };
    data = opts.data ?? storedData ?? 'synthetic';
    // A resume keeps the run's wire dtype unless --wire-dtype is given again.
    wireDtype =
      opts.wireDtype ??
      (storedWire === undefined ? 'float32' : parseWireDtype(storedWire, `${run.configPath}: wireDtype`));
    const ckpt = await loadLatestCheckpoint(run.path, {
      expectSpecs: parameterTable(modelConfigOf(config)),
      onWarning: (m) => warnings.push(m),
    });
    resume = {
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
  } else {
    run = createRunDir({ runDir: opts.runDir, cwd });
  }
  // config.json: the resolved config, and the data source a resume reads again.
  writeRunConfig(run, { ...config, data, wireDtype });
  const monitors = new LogBroadcaster();
  const log = createRunLogger(run.logPath, (line) => monitors.write(line));
  for (const w of warnings) logEvent(log, 'checkpoint-skipped', { warning: w }, 'warn');
  logEvent(log, 'config', { config, data, wireDtype, resume: !!resume });

  // The token: a resume reuses the run's; else --token-file, GAN_DIST_TOKEN, or a new one.
  let token: string;
  if (resume && existsSync(run.tokenPath)) token = (await readTokenFile(run.tokenPath)).token;
  else if (opts.tokenFile || process.env.GAN_DIST_TOKEN)
    token = (await resolveToken({ tokenFile: opts.tokenFile })).token;
  else token = newToken();
  const identity = useTls
    ? opts.tlsCert
      ? loadTlsIdentity(opts.tlsCert, opts.tlsKey!)
      : await runTlsIdentity(run.path)
    : undefined;
  // One file gives a worker both the secret and the server's identity.
  await writeTokenFile(run.tokenPath, { token, fingerprint: identity?.fingerprint });

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
    logEvent(
      log,
      'eval-floor',
      evalEventFields(resume?.iteration ?? 0, evaluation.floor, { count: evaluation.count, seed: evaluation.seed }),
    );
    print(
      `eval: SWD every ${opts.evalEvery} iterations on ${evaluation.count} images; real-vs-real floor ${evaluation.floor.mean.toFixed(2)}`,
    );
  }

  // Local workers exchange tensors through /dev/shm when it has room; remote ones use the socket.
  const plan = planWorkers({
    gpus: opts.gpus,
    workers: opts.workers,
    backend: opts.backend,
    simulateStepMs: opts.simulateStepMs,
    threads: opts.threadsPerWorker,
  });
  const frameBytes = 4 * parameterTable(modelConfigOf(config)).reduce((n, s) => n + sizeOf(s.shape), 0) + 65536;
  const transport = opts.transport ?? 'auto';
  const decision = decideTransport({
    transport,
    localWorkers: plan.length,
    weightsBytes: frameBytes,
    gradientsBytes: frameBytes,
    root: opts.shmRoot,
    free: opts.shmFreeBytes,
  });
  let shm: ShmRegion | undefined;
  if (decision.use) {
    const made = ShmRegion.create(opts.shmRoot);
    shm = made.region;
    if (made.removed.length > 0) logEvent(log, 'shm-stale-removed', { regions: made.removed }, 'warn');
    logEvent(log, 'transport', {
      local: 'shm',
      region: shm.dir,
      needMB: Math.round(decision.needBytes / 2 ** 20),
      freeMB: Math.round(decision.freeBytes / 2 ** 20),
    });
  } else {
    // Regions of coordinators killed earlier are removed even by a run that does not use one.
    const removed = removeStaleRegions(opts.shmRoot);
    if (removed.length > 0) logEvent(log, 'shm-stale-removed', { regions: removed }, 'warn');
    const forced = transport === 'shm' && plan.length > 0;
    logEvent(log, 'transport', { local: 'socket', reason: decision.reason }, forced ? 'warn' : 'info');
    if (forced) print(`--transport shm: falling back to the socket: ${decision.reason}`);
  }

  const coordinator = new Coordinator({
    monitors,
    shm,
    config,
    wireDtype,
    batches,
    iterationsPerEpoch: batches.iterationsPerEpoch,
    log,
    token,
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
    onEvent: (name, f) => {
      if (name === 'eval')
        print(
          `eval iter ${f.iteration}: SWD x1e3 ${f.swd} (${(f.swdLevels as number[]).join(' / ')}; floor ${f.floor})`,
        );
    },
    finalCheckpoint: !opts.skipFinalCheckpoint,
    saveSnapshot: async (s) =>
      (
        await saveCheckpoint(
          run.path,
          {
            ...s,
            specs: parameterTable(modelConfigOf(config)).map(({ name, shape, role }) => ({ name, shape, role })),
          },
          { keep: opts.keepCheckpoints },
        )
      ).path,
    writeSamples: async (iteration, images, count) => {
      const file = path.join(run.samplesDir, sampleFileName(iteration));
      await writeSampleGrid(file, images, count, config.imageSize);
      return file;
    },
    onIteration: (r: IterationRecord) => {
      const every = opts.printEvery ?? 10;
      if (r.iteration === 1 || r.iteration % every === 0 || r.iteration === coordinator.maxIterations) {
        print(
          `iter ${r.iteration}/${coordinator.maxIterations}  epoch ${r.epoch}  scoreG ${r.scoreG.toFixed(3)}  scoreD ${r.scoreD.toFixed(3)}  ` +
            `lossG ${r.lossG.toFixed(3)}  lossD ${r.lossD.toFixed(3)}  ${r.imagesPerSec.toFixed(1)} img/s  ${r.workers} worker${r.workers === 1 ? '' : 's'}`,
        );
      }
    },
  });
  opts.onCoordinator?.(coordinator, run.path);
  const endpoint = await coordinator.listen();
  writeEndpoint(run, endpoint);
  const scheme = identity ? 'wss' : 'ws';
  print(
    `run ${run.path}${resume ? ` (resumed at iteration ${resume.iteration})` : ''}; workers join ${scheme}://${endpoint} with --token-file ${run.tokenPath}`,
  );
  const localUrl = `${scheme}://${LOOPBACK.has(host) ? endpoint : `127.0.0.1:${endpoint.split(':').pop()}`}`;

  const launched: LaunchedWorker[] = [];
  for (const spec of plan) {
    spec.shmRegion = shm?.dir;
    launched.push(
      launchWorker(
        spec,
        localUrl,
        token,
        identity ? run.tokenPath : undefined,
        (w, code, signal) =>
          logEvent(log, 'worker-exited', { rank: w.rank, gpu: w.gpu, code, signal }, code === 0 ? 'info' : 'warn'),
        (w, line) => log.debug({ event: 'worker-output', rank: w.rank, line }, 'event'),
      ),
    );
    logEvent(log, 'worker-launched', { rank: spec.rank, gpu: spec.gpu, backend: spec.backend, threads: spec.threads });
  }

  let signals = 0;
  const onSignal = (sig: NodeJS.Signals) => {
    signals++;
    if (signals === 1) {
      print(`${sig}: finishing the current iteration, then a checkpoint (again to quit at once)`);
      coordinator.requestStop(`${sig} received`);
    } else {
      // Checkpoints are written to a temporary name and renamed, so quitting now breaks none.
      for (const w of launched) w.child.kill('SIGKILL');
      process.exit(130);
    }
  };
  if (opts.handleSignals) {
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
  }
  try {
    const state = await coordinator.run();
    print(`${state} at iteration ${coordinator.iteration}; run directory ${run.path}`);
    return { runDir: run.path, state, iteration: coordinator.iteration, runId: coordinator.runId };
  } finally {
    if (opts.handleSignals) {
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
    }
    await Promise.all(
      launched.map(
        (w) =>
          new Promise<void>((resolve) => {
            if (w.child.exitCode !== null || w.child.signalCode !== null) return resolve();
            const t = setTimeout(() => w.child.kill('SIGKILL'), 5000);
            w.child.once('exit', () => {
              clearTimeout(t);
              resolve();
            });
          }),
      ),
    );
    dataset.close();
    shm?.close();
    // Its final checkpoint is written: the optimizer's memory goes back to this process's arena.
    await coordinator.dispose();
    await flushLogger(log);
  }
}
