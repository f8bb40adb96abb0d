// Tile for the wasm backend by block copies, where the stock kernel computes an index per element.

import type { KernelFunc } from '@tensorflow/tfjs';
import type { BackendWasm } from '@tensorflow/tfjs-backend-wasm';
import { input } from './scratch.ts';
import { stockKernel } from './stock-kernels.ts';

/**
 * Tile by block copies: each axis's first block is built once, then doubled with copyWithin. The
 * stock kernel computes an index per element, and BatchNorm's gradient tiles [1,1,1,C] up to a
 * whole activation several times a step.
 */
export const tile: KernelFunc = ({ inputs, backend, attrs = {} }) => {
  const x = input(inputs, 'x');
  const reps = attrs.reps as number[];
  if (x.dtype === 'string' || reps.length !== x.shape.length)
    return stockKernel('Tile').kernelFunc({ inputs, backend, attrs });
  const wasm = backend as BackendWasm;
  const outShape = x.shape.map((d, i) => d * reps[i]);
  const out = wasm.makeOutput(outShape, x.dtype);
  if (outShape.some((d) => d === 0)) return out;
  const src = wasm.typedArrayFromHeap(x);
  const dst = wasm.typedArrayFromHeap(out);
  const rank = x.shape.length;
  if (rank === 0) {
    dst[0] = src[0];
    return out;
  }
  const inStride = x.shape.map((_, d) => x.shape.slice(d + 1).reduce((p, v) => p * v, 1));
  const outStride = outShape.map((_, d) => outShape.slice(d + 1).reduce((p, v) => p * v, 1));
  const build = (d: number, from: number, to: number): void => {
    if (d === rank - 1) dst.set(src.subarray(from, from + x.shape[d]), to);
    else for (let i = 0; i < x.shape[d]; i++) build(d + 1, from + i * inStride[d], to + i * outStride[d]);
    const block = x.shape[d] * outStride[d];
    const total = block * reps[d];
    for (let done = block; done < total; done *= 2) dst.copyWithin(to + done, to, to + Math.min(done, total - done));
  };
  build(0, 0, 0);
  return out;
};
