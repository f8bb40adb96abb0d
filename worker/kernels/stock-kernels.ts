// The wasm backend's own kernels that ours replace: what ours fall back on where theirs is the
// faster or ours does not apply, and what unregistering ours puts back.

import type { KernelConfig } from '@tensorflow/tfjs';

/** Stock configs we replaced (undefined where the backend had none); empty while ours are not registered. */
export const stock = new Map<string, KernelConfig | undefined>();

export function stockKernel(name: string): KernelConfig {
  const config = stock.get(name);
  if (config === undefined) throw new Error(`no stock wasm kernel ${name}: registerWasmGradientKernels() has not run`);
  return config;
}
