// `gan-dist worker`: a thin command over worker/client.ts, or with --workers / --gpus over
// node/node.ts (a node: this machine's workers joining the coordinator as one peer).

import { Option, type Command } from 'commander';
import os from 'node:os';
import { createRequire } from 'node:module';
import { readFileSync } from 'node:fs';
import { requireRole, resolveToken } from '../protocol/wire/auth.ts';
import { SHM_ENV, TRANSPORTS, parseTransport } from '../protocol/wire/shm.ts';
import { backendNames, parseBackendName } from '../protocol/backends.ts';
import { GanDistError } from '../protocol/errors.ts';
import { planWorkers } from '../coordinator/train/launcher.ts';
import { DEFAULT_MAX_RESTARTS } from '../coordinator/train/restart-policy.ts';
import { runWorkerWithReconnect } from '../worker/reconnect.ts';
import { workerPlacement } from '../worker/placement.ts';
import { runNode } from '../node/node.ts';
import { parseGpus, positiveInt } from './options.ts';

const { version } = createRequire(import.meta.url)('../package.json') as { version: string };

/** `gan-dist worker`: join a coordinator (local, remote, or under a launcher) and compute. */
export function registerWorker(program: Command): void {
  program
    .command('worker')
    .description('join a coordinator and compute gradients for it')
    .requiredOption('--join <url>', 'the coordinator, e.g. ws://127.0.0.1:7070')
    .option('--token-file <file>', "the run's worker.token (or set GAN_DIST_TOKEN)")
    .addOption(new Option('--backend <name>', 'compute backend').choices([...backendNames]).default('auto'))
    .option(
      '--gpu <index>',
      "GPU index among those this process may see (CUDA_VISIBLE_DEVICES when a launcher set it, else all); default: the launcher's pin, else SLURM_LOCALID",
    )
    .option('--threads <n>', 'wasm threads (default: all cores)', positiveInt('--threads', 1))
    .option(
      '--ca <file>',
      'wss: trust the coordinator certificate signed by this CA (PEM) instead of a pinned fingerprint',
    )
    .option(
      '--reconnect-timeout <s>',
      'keep trying to (re)join for this many seconds when the coordinator is away',
      positiveInt('--reconnect-timeout'),
      60,
    )
    .option(
      '--workers <n>',
      'a node: start this many CPU workers here and join as one peer that reduces their gradients first',
      positiveInt('--workers', 1),
    )
    .option(
      '--gpus <ids>',
      'a node: one worker per GPU id here (e.g. 0,1,2,3), joining as one peer that reduces their gradients first',
      parseGpus,
    )
    .option(
      '--max-restarts <n>',
      'a node: restarts per local worker within 10 minutes before it is left down',
      positiveInt('--max-restarts'),
      DEFAULT_MAX_RESTARTS,
    )
    .addOption(
      new Option(
        '--transport <kind>',
        'a node: how its local workers exchange tensors with it (auto: /dev/shm when it has room)',
      )
        .choices([...TRANSPORTS])
        .default('auto'),
    )
    .addOption(
      new Option(
        '--simulate-step-ms <ms>',
        'benchmarks: answer each shard with zero gradients after this delay, computing nothing',
      )
        .argParser(positiveInt('--simulate-step-ms'))
        .hideHelp(),
    )
    .action(async (opts) => {
      // Rank and GPU from the launcher (srun, a Kubernetes Job, gan-dist train), before the backend loads.
      const placement = workerPlacement({ gpu: opts.gpu });
      if (placement.cudaVisibleDevices !== undefined) process.env.CUDA_VISIBLE_DEVICES = placement.cudaVisibleDevices;
      // Every line says which worker wrote it; under srun, all tasks write to one stream.
      const log = (e: Record<string, unknown>) => console.error(JSON.stringify({ rank: placement.rank, ...e }));
      log({
        event: 'placement',
        rankFrom: placement.rankFrom,
        cudaVisibleDevices: placement.cudaVisibleDevices,
        gpuFrom: placement.gpuFrom,
      });
      const leaving = leaveOnSignals(log);
      try {
        const resolved = await resolveToken({ tokenFile: opts.tokenFile });
        requireRole(resolved, ['worker'], 'join as a worker');
        const { token, fingerprint } = resolved;
        const common = {
          reconnectTimeoutMs: opts.reconnectTimeout * 1000,
          fingerprint,
          ca: opts.ca ? readFileSync(opts.ca, 'utf8') : undefined,
          url: opts.join,
          token,
          backend: parseBackendName(opts.backend),
          wantsGpu: placement.wantsGpu,
          ganDistVersion: version,
          rank: placement.rank,
          signal: leaving.signal,
          log,
        };
        const outcome =
          opts.workers !== undefined || opts.gpus !== undefined
            ? await runNode({
                ...common,
                plan: nodePlan(opts),
                maxRestarts: opts.maxRestarts,
                transport: parseTransport(opts.transport),
              })
            : await runWorkerWithReconnect({
                ...common,
                // One GPU of its own (not a list a launcher left visible): WebGPU pins Vulkan to it.
                gpu: placement.cudaVisibleDevices?.includes(',') ? undefined : placement.cudaVisibleDevices,
                threads: opts.threads ?? os.availableParallelism(),
                simulateStepMs: opts.simulateStepMs,
                // Set by the launcher for the workers of a coordinator on this machine.
                shmRegion: process.env[SHM_ENV] || undefined,
              });
        log({ event: 'exit', code: outcome.exitCode, reason: outcome.reason });
        process.exitCode = outcome.exitCode;
        // Told to go: the goodbye is written; whatever still holds the process (a close handshake, a shard's timer) gets 2 s.
        if (leaving.signal.aborted) setTimeout(() => process.exit(outcome.exitCode), 2000).unref();
      } finally {
        leaving.off();
      }
    });
}

/** A node's local workers: one per --gpus id, or --workers CPU workers sharing this machine's cores. */
function nodePlan(opts: {
  workers?: number;
  gpus?: string[];
  gpu?: string;
  backend: string;
  threads?: number;
  simulateStepMs?: number;
}) {
  if (opts.gpus && opts.workers !== undefined)
    throw new GanDistError(
      'GAN_DIST_E_CONFIG',
      '--workers and --gpus: give one (a node runs one worker per GPU, or N CPU workers)',
    );
  if (opts.gpus && opts.gpu !== undefined)
    throw new GanDistError(
      'GAN_DIST_E_CONFIG',
      '--gpu and --gpus: give one',
      '--gpus starts one worker per id; --gpu picks the one GPU of a plain worker',
    );
  return planWorkers({
    gpus: opts.gpus,
    workers: opts.workers ?? 0,
    backend: opts.backend,
    simulateStepMs: opts.simulateStepMs,
    threads: opts.threads,
  });
}

/**
 * SIGTERM (scancel, srun ending its step, a pod's deletion, `kill`) or SIGINT: the worker says
 * goodbye and exits 0. It left when told to, which is no failure: srun, which exits with the
 * highest code of its tasks, then reports the task that did fail (10 for a wrong token), not the
 * tasks it terminated because of it. A second signal quits at once with 128 + its number.
 */
function leaveOnSignals(log: (e: Record<string, unknown>) => void): { signal: AbortSignal; off: () => void } {
  const leave = new AbortController();
  const onSignal = (sig: NodeJS.Signals) => {
    if (leave.signal.aborted) process.exit(128 + os.constants.signals[sig]);
    log({ event: 'signal', signal: sig });
    leave.abort(sig);
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  return {
    signal: leave.signal,
    off: () => {
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
    },
  };
}
