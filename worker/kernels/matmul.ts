// Matrix products on XNNPACK: the one case the stock BatchMatMul hands it, and a BatchMatMul that
// reduces every other case (transposes, batches) to that one.

import { backend_util } from '@tensorflow/tfjs';
import type { KernelFunc, TensorInfo } from '@tensorflow/tfjs';
import type { BackendWasm } from '@tensorflow/tfjs-backend-wasm';
import { input, type Scratch, withScratch } from './scratch.ts';
import { stockKernel } from './stock-kernels.ts';

/** a [M, K] x b [K, N]: the only case the stock kernel hands to XNNPACK (the rest is a naive loop). */
export function matMul(s: Scratch, a: TensorInfo, b: TensorInfo): TensorInfo {
  const [m, k] = a.shape;
  const n = b.shape[1];
  const attrs = { transposeA: false, transposeB: false };
  const out = stockKernel('BatchMatMul').kernelFunc({
    inputs: { a: s.reshape(a, [1, m, k]), b: s.reshape(b, [1, k, n]) },
    attrs,
    backend: s.backend,
  });
  return s.reshape(s.track(out as TensorInfo), [m, n]);
}

/** Swaps the last two axes. */
const swapLast = (rank: number) => [...Array(rank).keys()].map((i) => (i < rank - 2 ? i : 2 * rank - 3 - i));

/** Transposes made explicit and batches looped, so every product runs on XNNPACK. */
export const batchMatMul: KernelFunc = ({ inputs, backend, attrs = {} }) =>
  withScratch(backend as BackendWasm, (s) => {
    let a = input(inputs, 'a');
    let b = input(inputs, 'b');
    if (attrs.transposeA) a = s.transpose(a, swapLast(a.shape.length));
    if (attrs.transposeB) b = s.transpose(b, swapLast(b.shape.length));
    const [m, k] = a.shape.slice(-2);
    const n = b.shape[b.shape.length - 1];
    if (b.shape[b.shape.length - 2] !== k)
      throw new Error(`matMul: inner dimensions ${k} and ${b.shape[b.shape.length - 2]} differ`);
    const outer = backend_util.assertAndGetBroadcastShape(a.shape.slice(0, -2), b.shape.slice(0, -2));
    const a3 = s.reshape(a, [-1, m, k]);
    const b3 = s.reshape(b, [-1, k, n]);
    // As tfjs's own kernels: the flattened batches are equal, or one of them is 1.
    const batches = Math.max(a3.shape[0], b3.shape[0]);
    if (a3.shape[0] !== b3.shape[0] && a3.shape[0] !== 1 && b3.shape[0] !== 1) {
      throw new Error(`matMul: batch shapes [${a.shape.slice(0, -2)}] and [${b.shape.slice(0, -2)}] do not broadcast`);
    }
    const matrix = (t: TensorInfo, i: number, rows: number, cols: number) =>
      s.reshape(t.shape[0] === 1 ? t : s.slice(t, [i, 0, 0], [1, rows, cols]), [rows, cols]);
    const parts = Array.from({ length: batches }, (_, i) =>
      s.reshape(matMul(s, matrix(a3, i, m, k), matrix(b3, i, k, n)), [1, m, n]),
    );
    const joined = parts.length === 1 ? parts[0] : s.run('Concat', parts, { axis: 0 });
    return s.keep(s.reshape(joined, [...outer, m, n]));
  });
