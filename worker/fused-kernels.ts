// Names of backprop's one-pass kernels (registered for wasm by wasm-kernels.ts) and whether they
// run here. Kept apart from wasm-kernels.ts, which loads tfjs when imported: backprop.ts imports
// this, and processes that only coordinate never load tfjs.

import { gemmKernels } from './gemm.ts';

export const CHANNEL_SUM = 'GanDistChannelSum';
export const BN_PARAM_GRADS = 'GanDistBatchNormParamGrads';
export const BN_INPUT_GRAD = 'GanDistBatchNormInputGrad';
export const LEAKY_RELU_GRAD = 'GanDistLeakyReluGrad';

interface Engine {
  getBackend(): string;
  backend(): unknown;
  getKernel(name: string, backend: string): unknown;
}

/**
 * Whether backprop may call the kernels: the wasm backend with them registered and its heap in
 * reach. The BatchNorm and leaky-ReLU ones also need a multiple of 4 channels.
 */
export function fusedBackpropKernels(tf: Engine): boolean {
  return tf.getBackend() === 'wasm' && tf.getKernel(CHANNEL_SUM, 'wasm') !== undefined && gemmKernels(tf.backend() as never) !== undefined;
}
