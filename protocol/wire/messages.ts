// The messages of the gan-dist wire protocol, one declaration each, and their union: what
// coordinator, workers and monitors exchange. protocol.ts encodes and decodes them.

import type { WorkerModelConfig } from '../config.ts';
import type { WireDtype } from './wire-dtype.ts';

/**
 * 2: bfloat16 and float16 tensors, welcome.wireDtype. 3: hello.capacity and nodeWorkers (nodes).
 * 4: synced BatchNorm (welcome.batchnorm, bnPart, bnResult, bnAbort). 5: weights and gradients in
 * parts over sockets (part, parts; parts.ts).
 */
export const PROTOCOL_VERSION = 5;

export type Role = 'worker' | 'monitor';
export type Shape = readonly number[];

// --- handshake -------------------------------------------------------------------------------

export interface HelloMessage {
  type: 'hello';
  protocolVersion: number;
  ganDistVersion: string;
  backend: string;
  device: string;
  /** 32 random bytes, hex. */
  nonce: string;
  role: Role;
  /**
   * A worker's rank as its launcher numbered it (SLURM_PROCID, a Kubernetes completion index,
   * GAN_DIST_RANK), for logs and events only; absent when nothing numbered it.
   */
  rank?: number;
  /**
   * How many workers' worth of rows this peer takes (a node: its local workers, which it splits
   * its shard among); the coordinator sizes its shard by it. Absent: 1.
   */
  capacity?: number;
}
export interface ChallengeMessage {
  type: 'challenge';
  nonce: string;
  proof: string;
}
export interface ProofMessage {
  type: 'proof';
  proof: string;
}
export interface WelcomeMessage {
  type: 'welcome';
  runId: string;
  workerId: number;
  modelConfig: WorkerModelConfig;
  seed: number;
  /** The dtype of the weights this worker is sent and the gradients it sends; absent: float32. */
  wireDtype?: WireDtype;
  /**
   * 'sync' (`--batchnorm sync`): every BatchNorm layer of a shard's step waits for the global
   * batch's statistics (bnPart, bnResult); absent: each shard normalises over its own rows.
   */
  batchnorm?: 'sync';
}
export interface ReadyMessage {
  type: 'ready';
  paramTableHash: string;
}
export interface RejectMessage {
  type: 'reject';
  reason: string;
  code: string;
}

// --- training --------------------------------------------------------------------------------

export interface WeightsMessage {
  type: 'weights';
  version: number;
  iteration: number;
  /** G and D parameters and BatchNorm running statistics, by name. */
  tensors: Record<string, Float32Array>;
  shapes: Record<string, Shape>;
  /** In parts (parts.ts): this one's index, and how many there are; absent when whole. */
  part?: number;
  parts?: number;
}
export interface ShardMessage {
  type: 'shard';
  iteration: number;
  weightsVersion: number;
  shardId: number;
  rowStart: number;
  rowCount: number;
  /** images uint8 [n,H,W,3]; z float32 [n,latent]; flip uint8 [n] of 0/1; n = rowCount. */
  tensors: { images: Uint8Array; z: Float32Array; flip: Uint8Array };
  shapes: { images: Shape; z: Shape; flip: Shape };
}
export interface Timings {
  computeMs: number;
  [phase: string]: number;
}
export interface GradientsMessage {
  type: 'gradients';
  iteration: number;
  shardId: number;
  weightsVersion: number;
  n: number;
  scoreG: number;
  scoreD: number;
  lossG: number;
  lossD: number;
  timings: Timings;
  /** One gradient per parameter, plus each BatchNorm layer's per-channel sum and sum of squares. */
  tensors: Record<string, Float32Array>;
  shapes: Record<string, Shape>;
  /** In parts (parts.ts): this one's index, and how many there are; absent when whole. */
  part?: number;
  parts?: number;
}
/**
 * What a worker sends instead of `gradients` when its shard gave NaN or Infinity: `gradients`
 * must be finite (a non-finite one costs the sender its connection), yet the coordinator needs
 * to hear of it to recompute the shard elsewhere or conclude the run diverged.
 */
export interface GradientsNonFiniteMessage {
  type: 'gradientsNonFinite';
  iteration: number;
  shardId: number;
  weightsVersion: number;
  n: number;
  /** The tensors that held a non-finite value (at most 4096 names). */
  tensorNames: string[];
}
/**
 * `--batchnorm sync`: a shard's part of one BatchNorm barrier (protocol/wire/bn-sync.ts), worker
 * to coordinator. Barrier `barrier` of the step at layer `key`: kind 'moments' carries a = the
 * shard's per-channel mean, b = its M2; 'gradSums' a = sum of dy, b = sum of dy*xhat.
 */
export interface BnPartMessage {
  type: 'bnPart';
  iteration: number;
  shardId: number;
  barrier: number;
  key: string;
  kind: 'moments' | 'gradSums';
  /** Elements per channel: rows x H x W. */
  count: number;
  tensors: { a: Float32Array; b: Float32Array };
  shapes: { a: Shape; b: Shape };
}
/** A BatchNorm barrier's global result (bn-sync.ts BnBarrierResult), coordinator to worker. */
export interface BnResultMessage {
  type: 'bnResult';
  iteration: number;
  shardId: number;
  barrier: number;
  count: number;
  tensors: { a: Float32Array; b: Float32Array };
  shapes: { a: Shape; b: Shape };
}
/**
 * `--batchnorm sync`: the step of shard `shardId` is given up (a worker it waits on is gone and no
 * other can take its rows); the worker drops it, sends nothing for it and takes its next message.
 * The coordinator re-splits the batch over the workers still live, under new shard ids.
 */
export interface BnAbortMessage {
  type: 'bnAbort';
  iteration: number;
  shardId: number;
}
export interface SampleRequestMessage {
  type: 'sampleRequest';
  iteration: number;
  tensors: { z: Float32Array };
  shapes: { z: Shape };
}
export interface SampleMessage {
  type: 'sample';
  iteration: number;
  /** G(z) in inference mode, float32 [k,H,W,3] in [-1,1]; not checked for finiteness. */
  tensors: { images: Float32Array };
  shapes: { images: Shape };
}
// --- shared-memory transport (protocol/wire/shm.ts): control messages only ----------------------

/** Worker -> coordinator: it was launched with this region and can read and write it. */
export interface ShmAttachMessage {
  type: 'shmAttach';
  region: string;
}
/** Coordinator -> worker: from now on weights and gradients travel through these files. */
export interface ShmReadyMessage {
  type: 'shmReady';
  weightsFile: string;
  gradientsFile: string;
}
/** Coordinator -> worker: weights `version` is committed in the weights file as frame `seq`. */
export interface WeightsRefMessage {
  type: 'weightsRef';
  version: number;
  iteration: number;
  seq: number;
  byteLength: number;
}
/** Worker -> coordinator: the gradients of a shard are committed in its own file as frame `seq`. */
export interface GradientsRefMessage {
  type: 'gradientsRef';
  iteration: number;
  shardId: number;
  weightsVersion: number;
  n: number;
  seq: number;
  byteLength: number;
}
/** One of a node's local workers, as the node reports it to the coordinator. */
export interface LocalWorkerReport {
  rank: number;
  device: string;
  backend: string;
  /** starting: launched, not joined yet (or restarting); joined; left: its connection ended. */
  state: 'starting' | 'joined' | 'left';
  /** Rows a second it computed in the node's latest step. */
  imagesPerSec?: number;
}
/** Node -> coordinator: its local workers, when they change (at most one a second). */
export interface NodeWorkersMessage {
  type: 'nodeWorkers';
  workers: LocalWorkerReport[];
}
export interface HeartbeatMessage {
  type: 'heartbeat';
  t: number;
}
export interface StopMessage {
  type: 'stop';
  reason: string;
}
/** A worker leaving on purpose (SIGTERM, SIGINT): whatever shard it holds is reassigned at once. */
export interface LeaveMessage {
  type: 'leave';
  reason: string;
}
export interface ErrorMessage {
  type: 'error';
  code: string;
  message: string;
}
export interface LogMessage {
  type: 'log';
  line: Record<string, unknown>;
}

export type Message =
  | HelloMessage
  | ChallengeMessage
  | ProofMessage
  | WelcomeMessage
  | ReadyMessage
  | RejectMessage
  | WeightsMessage
  | ShardMessage
  | GradientsMessage
  | GradientsNonFiniteMessage
  | BnPartMessage
  | BnResultMessage
  | BnAbortMessage
  | SampleRequestMessage
  | SampleMessage
  | ShmAttachMessage
  | ShmReadyMessage
  | WeightsRefMessage
  | GradientsRefMessage
  | NodeWorkersMessage
  | HeartbeatMessage
  | StopMessage
  | LeaveMessage
  | ErrorMessage
  | LogMessage;
export type MessageType = Message['type'];
export type MessageOf<T extends MessageType> = Extract<Message, { type: T }>;
