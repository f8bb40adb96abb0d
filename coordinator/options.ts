// What a Coordinator is given (its options and hooks) and what it hands back: the snapshot a
// checkpoint stores and a resume starts from, and the states of its run.

import type { BatchIterator, IteratorState } from '../data/batches.ts';
import type { RunEvaluation } from '../metrics/swd.ts';
import type { TrainConfig } from '../protocol/config.ts';
import type { RoleTokens } from '../protocol/wire/auth.ts';
import type { NamedArrays } from '../protocol/model/architecture.ts';
import type { RngState } from '../protocol/rng.ts';
import type { ShmRegion } from '../protocol/wire/shm.ts';
import type { WireDtype } from '../protocol/wire/wire-dtype.ts';
import type { BatchNormMode } from '../protocol/wire/bn-sync.ts';
import type { LogBroadcaster } from './broadcast.ts';
import type { IterationRecord } from './iteration.ts';
import type { RunLogger } from './logger.ts';

export type RunState = 'starting' | 'waiting' | 'running' | 'stopping' | 'finished' | 'failed';

/** Everything a checkpoint holds so that a resume continues the same run. */
export interface RunSnapshot {
  runId: string;
  iteration: number;
  epoch: number;
  config: TrainConfig;
  params: NamedArrays;
  adamM: NamedArrays;
  adamV: NamedArrays;
  zValidation: Float32Array;
  rng: { z: RngState; flip: RngState };
  data: IteratorState;
}

export interface CoordinatorOptions {
  config: TrainConfig;
  /** Remote monitors (`gan-dist watch ws://...`): they get every log line and may ask for Stop. */
  monitors?: LogBroadcaster;
  /**
   * The shared-memory region of this run (--transport auto|shm with local workers): a worker that
   * attaches to it gets weights and returns gradients through /dev/shm; others use the socket.
   */
  shm?: ShmRegion;
  batches: BatchIterator;
  iterationsPerEpoch: number;
  log: RunLogger;
  /** The run's worker, monitor and control secrets; one string: an older run's one token, for every role. */
  token: string | RoleTokens;
  host: string;
  port: number;
  /** wss with this certificate; plain ws on loopback without. */
  tls?: { cert: string; key: string };
  minWorkers: number;
  /** Shard sizes: equal ('off', the default: a run's arithmetic then does not depend on who computes), or by measured throughput. */
  balance?: 'off' | 'throughput';
  /** --adam-threads: threads of the reduction and Adam (default optimizer.ts DEFAULT_OPTIMIZER_THREADS; 1: main thread). Never changes the floats. */
  adamThreads?: number;
  /** Resume from this snapshot instead of initialising. */
  resume?: RunSnapshot;
  checkpointEvery: number;
  /** Checkpoint at the end of the run and on Stop (default true). */
  finalCheckpoint?: boolean;
  /** Persists a snapshot (checkpoint); called at checkpointEvery and at stop. */
  saveSnapshot: (s: RunSnapshot) => Promise<string>;
  /** Writes a sample grid for `iteration` (k images HWC in [-1, 1]). */
  writeSamples: (iteration: number, images: Float32Array, count: number) => Promise<string>;
  /** --eval-every K: score G by SWD every K iterations, at iteration 0 of a new run and at the iteration bound (0 or absent: never). */
  evalEvery?: number;
  /** The fixed real sample, floor and latents of those scores (swd.ts prepareRunEvaluation); required with evalEvery. */
  evaluation?: RunEvaluation;
  /** Called after every iteration, for the console and the terminal UI. */
  onIteration?: (r: IterationRecord) => void;
  onEvent?: (event: string, fields: Record<string, unknown>) => void;
  /** Sees each iteration's whole-batch draws (tests check they do not depend on the workers). */
  onDraw?: (iteration: number, z: Float32Array, flip: Uint8Array) => void;
  /**
   * --wire-dtype: the form of the weights sent to workers (socket or shared memory) and of the
   * gradients they send back (default float32, exact). Master weights and Adam stay float32 here whatever it is.
   */
  wireDtype?: WireDtype;
  /**
   * --batchnorm: 'sync' normalises every BatchNorm layer over the whole batch, its statistics
   * pooled through the coordinator at each layer (bn-barriers.ts), so the run computes the
   * single-process step whatever the workers; 'shard' (absent) over each shard's own rows.
   */
  batchnorm?: BatchNormMode;
  /**
   * Benchmarks only: the number of shards of iteration t, overriding min-workers and the live
   * count (bench scaling alternates 1 and 2 shards so both see the same minutes of a noisy host).
   */
  shardsAt?: (iteration: number) => number;
}
