// Scratch: runs the wasm backend's kernels directly (no engine, no tape) inside our composed kernels
// and disposes what they made; and the small argument helpers every kernel shares.

import { getKernel } from '@tensorflow/tfjs';
import type { NamedAttrMap, NamedTensorInfoMap, TensorInfo } from '@tensorflow/tfjs';
import type { BackendWasm } from '@tensorflow/tfjs-backend-wasm';

export const BACKEND = 'wasm';

export type Pad4 = [[number, number], [number, number], [number, number], [number, number]];

/**
 * Runs wasm kernels directly (no engine, no tape) and disposes every intermediate it made, so a
 * composed kernel leaks nothing, even when one of its steps throws.
 */
export class Scratch {
  private readonly made: TensorInfo[] = [];

  constructor(readonly backend: BackendWasm) {}

  run(kernelName: string, inputs: NamedTensorInfoMap | TensorInfo[], attrs: NamedAttrMap = {}): TensorInfo {
    const config = getKernel(kernelName, BACKEND);
    if (config === undefined) throw new Error(`the wasm backend has no kernel ${kernelName}`);
    return this.track(
      config.kernelFunc({ inputs: inputs as NamedTensorInfoMap, attrs, backend: this.backend }) as TensorInfo,
    );
  }

  /** Adopts a tensor made outside run(), so it is disposed with the rest. */
  track(t: TensorInfo): TensorInfo {
    this.made.push(t);
    return t;
  }

  /** A float32 tensor to fill through view(); zeroed unless `zero` is false. */
  alloc(shape: number[], zero = true): TensorInfo {
    const out = this.track(this.backend.makeOutput(shape, 'float32'));
    if (zero) this.view(out).fill(0);
    return out;
  }

  /** A view on the wasm heap: take it after the last allocation, as a heap growth detaches it. */
  view(t: TensorInfo): Float32Array {
    return this.backend.typedArrayFromHeap(t) as Float32Array;
  }

  reshape = (x: TensorInfo, shape: number[]) => this.run('Reshape', { x }, { shape });
  transpose = (x: TensorInfo, perm: number[]) => this.run('Transpose', { x }, { perm });
  slice = (x: TensorInfo, begin: number[], size: number[]) => this.run('Slice', { x }, { begin, size });

  /** Stride-1 NHWC conv with explicit padding. */
  conv(x: TensorInfo, filter: TensorInfo, pad: Pad4, dilations: [number, number] = [1, 1]): TensorInfo {
    return this.run('Conv2D', { x, filter }, { strides: [1, 1], pad, dataFormat: 'NHWC', dilations });
  }

  /** Hands `t` to the caller: it survives dispose(). */
  keep(t: TensorInfo): TensorInfo {
    const i = this.made.lastIndexOf(t);
    if (i >= 0) this.made.splice(i, 1);
    return t;
  }

  dispose(): void {
    for (const t of this.made) this.backend.disposeData(t.dataId);
    this.made.length = 0;
  }
}

export function withScratch<T>(backend: BackendWasm, body: (s: Scratch) => T): T {
  const s = new Scratch(backend);
  try {
    return body(s);
  } finally {
    s.dispose();
  }
}

export function input(inputs: NamedTensorInfoMap, name: string): TensorInfo {
  const t = inputs[name];
  if (t === undefined) throw new Error(`missing input ${name}`);
  return t;
}
