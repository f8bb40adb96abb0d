// The per-channel kernels of traced passes (backprop.ts, and model.ts when it records a trace) on
// the wasm heap: one pass each where tfjs's ops transpose an activation to sum it over N, H and W,
// or build a mask to select by. Registered under names of our own (fused-kernels.ts); other
// backends, and passes under a tape, compose tfjs ops instead.

import type { KernelFunc, TensorInfo } from '@tensorflow/tfjs';
import type { BackendWasm } from '@tensorflow/tfjs-backend-wasm';
import { gemmKernels, heapAddress, type GemmKernels } from './gemm.ts';
import { input } from './scratch.ts';

function heapKernels(backend: BackendWasm): GemmKernels {
  const g = gemmKernels(backend);
  if (g === undefined)
    throw new Error('the wasm heap is out of reach: callers must compose tfjs ops (fusedKernelsRun)');
  return g;
}

const rowsOf = (t: TensorInfo) => t.shape.slice(0, -1).reduce((a, d) => a * d, 1);

/** x [..., C] -> [C]: the sum over every other axis. */
export const channelSum: KernelFunc = ({ inputs, backend }) => {
  const b = backend as BackendWasm;
  const x = input(inputs, 'x');
  const c = x.shape.at(-1)!;
  const out = b.makeOutput([c], 'float32');
  heapKernels(b).channelSum(heapAddress(b, x), rowsOf(x), c, heapAddress(b, out));
  return out;
};

/** g, x [..., C], mean, rstd [C] -> [sum g, sum g * xhat], each [C]. */
export const bnParamGrads: KernelFunc = ({ inputs, backend }) => {
  const b = backend as BackendWasm;
  const [g, x, mean, rstd] = ['g', 'x', 'mean', 'rstd'].map((n) => input(inputs, n));
  const c = x.shape.at(-1)!;
  const sumG = b.makeOutput([c], 'float32');
  const sumGX = b.makeOutput([c], 'float32');
  const at = (t: TensorInfo) => heapAddress(b, t);
  heapKernels(b).bnParamGrads(at(g), at(x), at(mean), at(rstd), rowsOf(x), c, at(sumG), at(sumGX));
  return [sumG, sumGX];
};

/** g, x [..., C], mean, rstd, k1, k2, k3 [C] -> dx = (g - k1 - xhat * k2) * k3. */
export const bnInputGrad: KernelFunc = ({ inputs, backend }) => {
  const b = backend as BackendWasm;
  const [g, x, mean, rstd, k1, k2, k3] = ['g', 'x', 'mean', 'rstd', 'k1', 'k2', 'k3'].map((n) => input(inputs, n));
  const dx = b.makeOutput(x.shape, 'float32');
  const at = (t: TensorInfo) => heapAddress(b, t);
  heapKernels(b).bnInputGrad(
    at(g),
    at(x),
    at(mean),
    at(rstd),
    at(k1),
    at(k2),
    at(k3),
    rowsOf(x),
    x.shape.at(-1)!,
    at(dx),
  );
  return dx;
};

/** x [..., C] -> [mean, variance] over every other axis, each [C], as tf.moments. */
export const moments: KernelFunc = ({ inputs, backend }) => {
  const b = backend as BackendWasm;
  const x = input(inputs, 'x');
  const c = x.shape.at(-1)!;
  const mean = b.makeOutput([c], 'float32');
  const variance = b.makeOutput([c], 'float32');
  heapKernels(b).channelMoments(heapAddress(b, x), rowsOf(x), c, heapAddress(b, mean), heapAddress(b, variance));
  return [mean, variance];
};

/** g, x -> x > 0 ? g : g * alpha. */
export const leakyReluGrad: KernelFunc = ({ inputs, backend, attrs = {} }) => {
  const b = backend as BackendWasm;
  const [g, x] = ['g', 'x'].map((n) => input(inputs, n));
  const out = b.makeOutput(x.shape, 'float32');
  heapKernels(b).leakyReluGrad(
    heapAddress(b, g),
    heapAddress(b, x),
    attrs.alpha as number,
    rowsOf(x) * x.shape.at(-1)!,
    heapAddress(b, out),
  );
  return out;
};

/** x -> x > 0 ? x : x * alpha: the gradient kernel with g = x. */
export const leakyRelu: KernelFunc = (args) =>
  leakyReluGrad({ ...args, inputs: { g: input(args.inputs, 'x'), x: input(args.inputs, 'x') } });
