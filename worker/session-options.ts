// What a worker session is given (WorkerOptions) and how it ends (WorkerOutcome, with the exit
// codes cluster launchers read): shared by the session (client.ts), its reconnect loop
// (reconnect.ts), a node (node/) and the CLI.

import type { BackendName } from '../protocol/backends.ts';
import type { Message, WelcomeMessage } from '../protocol/wire/protocol.ts';
import type { Compute } from './simulated.ts';

/** Exit codes of `gan-dist worker`, documented in the README for cluster launchers. */
export const WorkerExit = {
  DONE: 0,
  FAILED: 1,
  REJECTED: 10,
  VERSION_MISMATCH: 11,
  COORDINATOR_GONE: 12,
} as const;

/** A coordinator turned this worker away: 11 when the two differ in version or model (redeploying fixes it), else 10. */
export function rejectionExit(reason: string): number {
  return /protocol version|parameter table/.test(reason) ? WorkerExit.VERSION_MISMATCH : WorkerExit.REJECTED;
}

export function leaveReason(signal: AbortSignal | undefined): string {
  return typeof signal?.reason === 'string' ? signal.reason : 'aborted';
}

export interface WorkerOptions {
  url: string;
  token: string;
  backend: BackendName;
  wantsGpu?: boolean;
  /** This worker's own GPU (placement.ts: one CUDA index or UUID), which WebGPU pins Vulkan to. */
  gpu?: string;
  threads?: number;
  ganDistVersion: string;
  /**
   * Benchmarks only: no backend, no model; every shard is answered after this many ms with zero
   * gradients of the right names and sizes, so the coordinator's own costs can be measured.
   */
  simulateStepMs?: number;
  /** Tests only, with simulateStepMs: every shard's gradients hold a NaN (the divergence paths). */
  simulateNonFinite?: boolean;
  /**
   * The coordinator's shared-memory region (GAN_DIST_SHM_REGION, set by the launcher for local
   * workers): weights and gradients then travel through /dev/shm, the socket carries control only.
   */
  shmRegion?: string;
  /** wss: the SHA-256 fingerprint (from the token file) the coordinator's certificate must have. */
  fingerprint?: string;
  /** wss: a CA certificate (PEM) that signed the coordinator's certificate (--ca). */
  ca?: string;
  /**
   * Leaving: aborting says goodbye (a `leave` message with the abort's reason, e.g. 'SIGTERM') and
   * closes the connection, so the coordinator reassigns what this worker held at once. A worker
   * that leaves when told to has not failed: it ends as DONE.
   */
  signal?: AbortSignal;
  /** This worker's rank from its launcher (placement.ts), for the coordinator's events. */
  rank?: number;
  /**
   * A node (node/): what answers the shards instead of a backend in this process, built when the
   * welcome names the model. The session never disposes it: a node's workers outlive a reconnect.
   * `report` sends a message of the node's own (nodeWorkers) once the session is joined; false: not sent.
   */
  computeFor?: (welcome: WelcomeMessage, report: (m: Message) => boolean) => Compute;
  /** With computeFor: the node's local worker count (hello.capacity) and its hello's device line. */
  capacity?: number;
  device?: string;
  log?: (event: Record<string, unknown>) => void;
}

export interface WorkerOutcome {
  exitCode: number;
  reason: string;
  /** The session got past the handshake (it trained, or could have). */
  joined?: boolean;
}
