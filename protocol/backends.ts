// The backends gan-dist knows, by name, and how `auto` resolves: the contract between the CLI, the
// coordinator (which plans workers by backend) and the worker (which loads one). No tfjs here.

import { createRequire } from 'node:module';
import { GanDistError } from './errors.ts';

export const backendNames = ['auto', 'webgpu', 'tensorflow-gpu', 'tensorflow', 'wasm', 'cpu'] as const;
export type BackendName = (typeof backendNames)[number];

export interface BackendInfo {
  /** What was asked for and what it resolved to (auto -> one of the others). */
  requested: BackendName;
  name: Exclude<BackendName, 'auto'>;
  /** The npm package that provides it, and its version. */
  package: string;
  version: string;
  /** A person-readable device: "CPU (wasm, SIMD, relaxed FMA, 1 thread)", "GPU 0 (CUDA)". */
  device: string;
  threads: number;
  simd?: boolean;
}

const requireHere = createRequire(import.meta.url);

/** The installed version of a package, or undefined when it is not installed. */
export function installedVersion(pkg: string): string | undefined {
  try {
    return (requireHere(`${pkg}/package.json`) as { version: string }).version;
  } catch {
    return undefined;
  }
}

export const GPU_PACKAGE = '@tensorflow/tfjs-node-gpu';
/** The WebGPU backend's two packages: Dawn's Node bindings and tfjs's backend on them. */
export const WEBGPU_PACKAGE = 'webgpu';
export const TFJS_WEBGPU_PACKAGE = '@tensorflow/tfjs-backend-webgpu';
export const NODE_PACKAGE = '@tensorflow/tfjs-node';

export function parseBackendName(raw: string): BackendName {
  if ((backendNames as readonly string[]).includes(raw)) return raw as BackendName;
  throw new GanDistError(
    'GAN_DIST_E_CONFIG',
    `--backend: unknown backend "${raw}"`,
    `use one of: ${backendNames.join(', ')}`,
  );
}

/**
 * auto without GPUs: tfjs-node when installed, else wasm; CPU workers never pick webgpu. (With
 * GPUs the worker tries tfjs-node-gpu, then WebGPU on a hardware adapter: worker/backend.ts.)
 */
export function resolveBackendName(requested: BackendName, wantsGpu: boolean): Exclude<BackendName, 'auto'> {
  if (requested !== 'auto') return requested;
  if (wantsGpu) return 'tensorflow-gpu';
  return installedVersion(NODE_PACKAGE) ? 'tensorflow' : 'wasm';
}
