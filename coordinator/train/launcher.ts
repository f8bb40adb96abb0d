// Starts local worker processes: one per GPU id (CUDA_VISIBLE_DEVICES set before tfjs-node-gpu
// loads) or N CPU workers sharing the cores. Identity reaches a worker through its environment.

import { spawn, type ChildProcess } from 'node:child_process';
import os from 'node:os';
import { fileURLToPath } from 'node:url';
import { TOKEN_ENV } from '../../protocol/wire/auth.ts';
import { SHM_ENV, type TransportChoice } from '../../protocol/wire/shm.ts';

const CLI = fileURLToPath(new URL('../../cmd/gan-dist.mjs', import.meta.url));

export interface LaunchSpec {
  rank: number;
  /** GPU id for CUDA_VISIBLE_DEVICES, when launching for --gpus. */
  gpu?: string;
  backend: string;
  /** wasm threads for a CPU worker. */
  threads?: number;
  /** Benchmarks: replace compute by this fixed delay per shard. */
  simulateStepMs?: number;
  /** The coordinator's shared-memory region, when local workers use it. */
  shmRegion?: string;
  /** Benchmarks: the process is a node of this many local workers (`--workers N`), served over `transport`. */
  node?: { workers: number; transport: TransportChoice };
}

export interface LaunchedWorker {
  rank: number;
  gpu?: string;
  child: ChildProcess;
  env: Record<string, string>;
  /** The coordinator's id for it, once its `joined` line has come (local-workers.ts). */
  workerId?: number;
}

/** The launch plan: --gpus ids take precedence; else N CPU workers with cores / N threads each. */
export function planWorkers(opts: {
  gpus?: string[];
  workers: number;
  backend: string;
  cores?: number;
  simulateStepMs?: number;
  /** wasm threads per CPU worker; default cores / workers. */
  threads?: number;
}): LaunchSpec[] {
  if (opts.simulateStepMs !== undefined) {
    return Array.from({ length: opts.workers }, (_, rank) => ({
      rank,
      backend: 'wasm',
      simulateStepMs: opts.simulateStepMs,
    }));
  }
  if (opts.gpus && opts.gpus.length > 0) {
    return opts.gpus.map((gpu, rank) => ({
      rank,
      gpu,
      // auto with a GPU: each worker takes tfjs-node-gpu where it loads, else WebGPU (worker/backend.ts).
      backend: opts.backend,
    }));
  }
  const cores = opts.cores ?? os.availableParallelism();
  const threads = opts.threads ?? Math.max(1, Math.floor(cores / Math.max(1, opts.workers)));
  return Array.from({ length: opts.workers }, (_, rank) => ({ rank, backend: opts.backend, threads }));
}

/** The environment a worker process gets: the run's token, its rank, and its GPU. */
export function workerEnv(
  spec: LaunchSpec,
  token: string,
  base: NodeJS.ProcessEnv = process.env,
): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(base)) if (v !== undefined) env[k] = v;
  env[TOKEN_ENV] = token;
  env.GAN_DIST_RANK = String(spec.rank);
  if (spec.shmRegion !== undefined) env[SHM_ENV] = spec.shmRegion;
  else delete env[SHM_ENV];
  if (spec.gpu !== undefined) {
    env.CUDA_VISIBLE_DEVICES = spec.gpu;
    env.TF_FORCE_GPU_ALLOW_GROWTH = 'true';
  }
  return env;
}

export function launchWorker(
  spec: LaunchSpec,
  url: string,
  token: string,
  /** With TLS: the run's token file, which carries the certificate fingerprint to pin. */
  tokenFile: string | undefined,
  onExit: (w: LaunchedWorker, code: number | null, signal: NodeJS.Signals | null) => void,
  onOutput: (w: LaunchedWorker, line: string) => void,
): LaunchedWorker {
  // A local worker lives and dies with its coordinator: no reconnecting to a later one.
  const args = [CLI, 'worker', '--join', url, '--backend', spec.backend, '--reconnect-timeout', '0'];
  if (spec.threads !== undefined) args.push('--threads', String(spec.threads));
  // CUDA_VISIBLE_DEVICES (workerEnv) already narrows the worker to its GPU; --gpu counts within it.
  if (spec.gpu !== undefined) args.push('--gpu', '0');
  if (tokenFile !== undefined) args.push('--token-file', tokenFile);
  if (spec.simulateStepMs !== undefined) args.push('--simulate-step-ms', String(spec.simulateStepMs));
  if (spec.node !== undefined) args.push('--workers', String(spec.node.workers), '--transport', spec.node.transport);
  const env = workerEnv(spec, token);
  const child = spawn(process.execPath, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
  const w: LaunchedWorker = { rank: spec.rank, gpu: spec.gpu, child, env };
  for (const stream of [child.stdout!, child.stderr!]) {
    let buf = '';
    stream.setEncoding('utf8');
    stream.on('data', (chunk: string) => {
      buf += chunk;
      for (let i = buf.indexOf('\n'); i >= 0; i = buf.indexOf('\n')) {
        const line = buf.slice(0, i).trim();
        buf = buf.slice(i + 1);
        if (line) onOutput(w, line);
      }
    });
  }
  child.on('exit', (code, signal) => onExit(w, code, signal));
  return w;
}
