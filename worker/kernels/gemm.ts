// The GEMM behind the wasm backend's convolutions (scripts/gemm-wat.ts generates it): one
// instance per tfjs wasm heap, importing that heap as its memory, so it reads and writes tensors
// in place. worker/kernels/wasm-kernels.ts builds Conv2D and both its gradients from it.
//
// Two builds: with relaxed-SIMD fused multiply-adds, about twice XNNPACK's convolution rate on this
// machine's one core, and with f32x4 mul + add where the engine lacks relaxed SIMD. Node 20's V8
// (11.3) has relaxed SIMD behind --experimental-wasm-relaxed-simd, which this module sets before
// compiling; later engines have it on.

import v8 from 'node:v8';
import type { BackendWasm } from '@tensorflow/tfjs-backend-wasm';
import type { TensorInfo } from '@tensorflow/tfjs';
import { GEMM_FMA_WASM_BASE64, GEMM_PLAIN_WASM_BASE64 } from './gemm-wasm.ts';

/** Rows of C one micro-kernel call computes (scripts/gemm-wat.ts MR): the size of `tmp` is MR*8 floats. */
export const GEMM_TILE_FLOATS = 5 * 8;

export type GemmBuild = 'fma' | 'plain';

/** The module's exports: every pointer a byte address in the heap, every stride in bytes. */
export interface GemmKernels {
  /** C (m x n) = A B (or += when acc): A at a, row stride lda (trans: A is stored transposed); B packed by packB. */
  gemm(
    a: number,
    lda: number,
    trans: number,
    bp: number,
    c: number,
    ldc: number,
    m: number,
    n: number,
    k: number,
    acc: number,
    tmp: number,
  ): void;
  /** Packs B (k x n, element (kk, j) at src + kk*rs + j*cs) into 8-column panels, zeros past n: ceil(n/8)*8*k floats. */
  packB(src: number, rs: number, cs: number, k: number, n: number, dst: number): void;
  /** NHWC x [b, h, w, c] to rows [b*oh*ow, kh*kw*c] for a kh x kw kernel at strides sh, sw, padding top pt and left pl. */
  im2col(
    x: number,
    b: number,
    h: number,
    w: number,
    c: number,
    kh: number,
    kw: number,
    sh: number,
    sw: number,
    pt: number,
    pl: number,
    oh: number,
    ow: number,
    dst: number,
  ): void;
  /** The adjoint of im2col: adds the rows' in-image segments into dx [b, h, w, c]. */
  col2im(
    cols: number,
    b: number,
    h: number,
    w: number,
    c: number,
    kh: number,
    kw: number,
    sh: number,
    sw: number,
    pt: number,
    pl: number,
    oh: number,
    ow: number,
    dx: number,
  ): void;
  /** out[ch] = the sum of x [rows, c] over rows. */
  channelSum(x: number, rows: number, c: number, out: number): void;
  /** BatchNorm's sums of g and g * xhat per channel, xhat = (x - mean) * rstd (c a multiple of 4). */
  bnParamGrads(
    g: number,
    x: number,
    mean: number,
    rstd: number,
    rows: number,
    c: number,
    sumG: number,
    sumGX: number,
  ): void;
  /** dx = (g - k1 - xhat * k2) * k3 per channel, xhat = (x - mean) * rstd (c a multiple of 4). */
  bnInputGrad(
    g: number,
    x: number,
    mean: number,
    rstd: number,
    k1: number,
    k2: number,
    k3: number,
    rows: number,
    c: number,
    dx: number,
  ): void;
  /** Per channel of x [rows, c]: mean, and the biased variance around it (c a multiple of 4). */
  channelMoments(x: number, rows: number, c: number, mean: number, variance: number): void;
  /** out = x > 0 ? g : g * alpha over n floats (a multiple of 4); with g = x, leaky ReLU. */
  leakyReluGrad(g: number, x: number, alpha: number, n: number, out: number): void;
}

const BINARIES: Record<GemmBuild, string> = { fma: GEMM_FMA_WASM_BASE64, plain: GEMM_PLAIN_WASM_BASE64 };
const modules = new Map<GemmBuild, WebAssembly.Module>();
let best: GemmBuild | undefined;
let forced: GemmBuild | 'auto' = 'auto';

const bytes = (build: GemmBuild) => Buffer.from(BINARIES[build], 'base64');

/** 'fma' where the engine validates relaxed SIMD (turning its flag on if it must), else 'plain'. */
export function bestGemmBuild(): GemmBuild {
  if (best === undefined) {
    if (!WebAssembly.validate(bytes('fma'))) v8.setFlagsFromString('--experimental-wasm-relaxed-simd');
    best = WebAssembly.validate(bytes('fma')) ? 'fma' : 'plain';
  }
  return best;
}

/** The build used from now on ('auto' = the best this engine runs): for benchmarks and tests. */
export function forceGemmBuild(build: GemmBuild | 'auto'): void {
  if (build === 'fma' && bestGemmBuild() !== 'fma')
    throw new Error('this engine has no relaxed SIMD: the fma GEMM cannot run');
  forced = build;
}

export function gemmBuild(): GemmBuild {
  return forced === 'auto' ? bestGemmBuild() : forced;
}

function compiled(build: GemmBuild): WebAssembly.Module {
  let mod = modules.get(build);
  if (mod === undefined) {
    mod = new WebAssembly.Module(bytes(build));
    modules.set(build, mod);
  }
  return mod;
}

const instances = new WeakMap<WebAssembly.Memory, Map<GemmBuild, GemmKernels>>();

/** The backend's heap, where its emscripten module exposes it (tfjs-backend-wasm 4.x does). */
function heapMemory(backend: BackendWasm): WebAssembly.Memory | undefined {
  const memory = (backend.wasm as unknown as { asm?: { memory?: unknown } }).asm?.memory;
  return memory instanceof WebAssembly.Memory ? memory : undefined;
}

/** The kernels of one build on a memory (an unshared one: the tfjs heap is), one instance per pair. */
export function gemmOn(memory: WebAssembly.Memory, build: GemmBuild = gemmBuild()): GemmKernels {
  let byBuild = instances.get(memory);
  if (byBuild === undefined) {
    byBuild = new Map();
    instances.set(memory, byBuild);
  }
  let kernels = byBuild.get(build);
  if (kernels === undefined) {
    kernels = new WebAssembly.Instance(compiled(build), { env: { memory } }).exports as unknown as GemmKernels;
    byBuild.set(build, kernels);
  }
  return kernels;
}

const unusable = new WeakSet<WebAssembly.Memory>();

/**
 * The GEMM kernels on this backend's heap, or undefined where they cannot run there: the heap out
 * of reach, or one the module cannot import (a shared heap, as tfjs's threaded build would have;
 * under Node tfjs runs the unthreaded one). wasm-kernels.ts then composes XNNPACK's kernels.
 */
export function gemmKernels(backend: BackendWasm): GemmKernels | undefined {
  const memory = heapMemory(backend);
  if (memory === undefined || unusable.has(memory)) return undefined;
  try {
    return gemmOn(memory);
  } catch {
    unusable.add(memory);
    return undefined;
  }
}

/**
 * A float32 tensor's values where they lie in the backend's heap, when it is reachable: a view
 * for reading at once (the heap may grow and move on the backend's next allocation).
 */
export function heapFloats(backend: BackendWasm, t: TensorInfo & { size: number }): Float32Array | undefined {
  const memory = heapMemory(backend);
  if (memory === undefined || t.dtype !== 'float32') return undefined;
  return new Float32Array(memory.buffer, heapAddress(backend, t), t.size);
}

/** A tensor's byte address in the backend's heap. */
export function heapAddress(backend: BackendWasm, t: TensorInfo): number {
  const data = backend.dataIdMap.get(t.dataId) as { memoryOffset?: number } | undefined;
  if (data?.memoryOffset === undefined || data.memoryOffset === null)
    throw new Error('tensor has no place in the wasm heap');
  return data.memoryOffset;
}
