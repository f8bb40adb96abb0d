// Names of the one-pass kernels of traced passes (registered for wasm by wasm-kernels.ts) and
// whether they run here: backprop's bias sums, BatchNorm and leaky-ReLU gradients, and the
// forward's batch statistics and leaky ReLU when model.ts records a trace (no tape, which would
// need their gradients). Kept apart from wasm-kernels.ts, which loads tfjs when imported:
// backprop.ts and model.ts import this, and processes that only coordinate never load tfjs.

import { gemmKernels } from './gemm.ts';

export const CHANNEL_SUM = 'GanDistChannelSum';
export const BN_PARAM_GRADS = 'GanDistBatchNormParamGrads';
export const BN_INPUT_GRAD = 'GanDistBatchNormInputGrad';
export const LEAKY_RELU_GRAD = 'GanDistLeakyReluGrad';
export const MOMENTS = 'GanDistMoments';
export const LEAKY_RELU = 'GanDistLeakyRelu';

interface Engine {
  getBackend(): string;
  backend(): unknown;
  getKernel(name: string, backend: string): unknown;
  engine(): { runKernel(name: string, inputs: never, attrs: never): unknown };
}

/**
 * Whether the kernels run here: the wasm backend with them registered and its heap in reach. All
 * but the channel sum also need a multiple of 4 channels.
 */
export function fusedKernelsRun(tf: Engine): boolean {
  return (
    tf.getBackend() === 'wasm' &&
    tf.getKernel(CHANNEL_SUM, 'wasm') !== undefined &&
    gemmKernels(tf.backend() as never) !== undefined
  );
}

/** Runs one of the kernels above; T is what it returns (a tensor, or a list of them). */
export function runFused<T>(
  tf: Engine,
  name: string,
  inputs: Record<string, unknown>,
  attrs: Record<string, unknown> = {},
): T {
  return tf.engine().runKernel(name, inputs as never, attrs as never) as T;
}
