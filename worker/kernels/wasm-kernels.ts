// Convolution kernels for tfjs's wasm backend: Conv2D, Conv2DBackpropFilter (which it lacks) and
// Conv2DBackpropInput (its own is a naive loop, 8-15x slower), plus BatchMatMul and Tile where the
// stock kernels fall off a fast path. bench/kernels.ts measures every choice made here.
//
// Where the backend's heap is reachable (always, with tfjs-backend-wasm 4.x), all three convolutions
// are one GEMM of our own (worker/kernels/gemm.ts) around im2col or col2im, about twice XNNPACK's rate:
// - y = im2col(x) W;  dW = im2col(x)^T dy;  dx = col2im(dy W^T).
// - im2col blocks hold at most IM2COL_LIMIT elements; larger batches run in blocks of images.
// - Packed filters are kept while their source lives (D's weights serve two forwards and a dx).
// The compositions of XNNPACK's kernels below remain for the other cases, and as the baseline:
// - dW: a stride-1 conv dilated by the stride, with x as [Cin, H, W, B] the image and dy as
//   [OH, OW, B, Cout] the filter; or, where B*OH*OW is small (and its im2col fits in
//   IM2COL_LIMIT), im2col(x)^T [KH*KW*Cin, B*OH*OW] x dy, one matmul into [KH, KW, Cin, Cout].
// - dx at stride s, which is also every transposed conv's forward: the s*s sub-pixel phases of
//   the kernel, each a stride-1 conv of dy with its flipped, channel-swapped taps (for 5x5 at
//   stride 2: 3x3, 3x2, 2x3 and 2x2), interleaved into dx. Phase filters are kept while their
//   source filter lives: D's dx runs three times a step with the same weights.
// - dx where dy is small (at most 4x4) and the phase convs would mostly multiply padding:
//   W [KH*KW*Cx, Cdy] x dy^T, then a scatter-add (col2im); W needs no transpose or packing.

import '@tensorflow/tfjs-backend-wasm';
import { backend_util, getKernel, registerKernel, unregisterKernel } from '@tensorflow/tfjs';
import type { KernelConfig, KernelFunc, NamedAttrMap, NamedTensorInfoMap, TensorInfo } from '@tensorflow/tfjs';
import type { BackendWasm } from '@tensorflow/tfjs-backend-wasm';
import { GEMM_TILE_FLOATS, gemmKernels, heapAddress, type GemmKernels } from './gemm.ts';
import { BN_INPUT_GRAD, BN_PARAM_GRADS, CHANNEL_SUM, LEAKY_RELU, LEAKY_RELU_GRAD, MOMENTS } from './fused-kernels.ts';

const BACKEND = 'wasm';

/** Largest im2col (elements) a matmul formulation may build: 32 MB; bigger batches use convs. */
const IM2COL_LIMIT = 8 * 2 ** 20;

type Shape4 = [number, number, number, number];
type Pad4 = [[number, number], [number, number], [number, number], [number, number]];

/**
 * Runs wasm kernels directly (no engine, no tape) and disposes every intermediate it made, so a
 * composed kernel leaks nothing, even when one of its steps throws.
 */
class Scratch {
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

function withScratch<T>(backend: BackendWasm, body: (s: Scratch) => T): T {
  const s = new Scratch(backend);
  try {
    return body(s);
  } finally {
    s.dispose();
  }
}

function input(inputs: NamedTensorInfoMap, name: string): TensorInfo {
  const t = inputs[name];
  if (t === undefined) throw new Error(`missing input ${name}`);
  return t;
}

const toNHWC = (s: Scratch, t: TensorInfo, format: unknown) => (format === 'NCHW' ? s.transpose(t, [0, 2, 3, 1]) : t);
const fromNHWC = (s: Scratch, t: TensorInfo, format: unknown) => (format === 'NCHW' ? s.transpose(t, [0, 3, 1, 2]) : t);

/** The forward conv's geometry, in NHWC whatever the data format. */
function convInfo(xShape: number[], filterShape: number[], attrs: NamedAttrMap): backend_util.Conv2DInfo {
  const nhwc = attrs.dataFormat === 'NCHW' ? [xShape[0], xShape[2], xShape[3], xShape[1]] : xShape;
  return backend_util.computeConv2DInfo(
    nhwc as Shape4,
    filterShape as Shape4,
    attrs.strides as [number, number],
    1,
    attrs.pad as 'same',
    attrs.dimRoundingMode as 'round',
    false,
    'channelsLast',
  );
}

function assertShape(what: string, got: number[], want: number[]): void {
  if (got.length !== want.length || got.some((d, i) => d !== want[i])) {
    throw new Error(`${what} has shape [${got}], expected [${want}]`);
  }
}

/** Ways to compute each kernel; 'auto' picks per shape. Forcing one is for benchmarks and tests. */
export type FilterGradWay = 'auto' | 'gemm' | 'im2col' | 'dilated';
export type InputGradWay = 'auto' | 'gemm' | 'phases' | 'rowPhases' | 'col2im';
export type ConvWay = 'auto' | 'gemm' | 'xnnpack';

const forced: { dW: FilterGradWay; dx: InputGradWay; conv: ConvWay } = { dW: 'auto', dx: 'auto', conv: 'auto' };

export function forceConvGradWays(ways: Partial<typeof forced>): void {
  Object.assign(forced, ways);
}

// ---------------------------------------------------------------------------------------------
// GEMM: im2col, one packed-B GEMM, col2im (worker/kernels/gemm.ts)

/**
 * Output pixels per im2col block: as many as the GEMM's k-block (scripts/gemm-wat.ts KC), so a
 * block is written and read back while it is still in cache, and dW's blocks are the GEMM's own
 * k-blocks. Whole images, one at least; IM2COL_LIMIT elements at most.
 */
const BLOCK_PIXELS = 512;

const imagesPerBlock = (info: backend_util.Conv2DInfo, k: number) => {
  const pixels = info.outHeight * info.outWidth;
  return Math.min(
    info.batchSize,
    Math.max(1, Math.min(Math.floor(BLOCK_PIXELS / pixels), Math.floor(IM2COL_LIMIT / (pixels * k)))),
  );
};

/** The window arguments im2col and col2im share: kh, kw, sh, sw, top, left, oh, ow. */
const windowArgs = (info: backend_util.Conv2DInfo) =>
  [
    info.filterHeight,
    info.filterWidth,
    info.strideHeight,
    info.strideWidth,
    info.padInfo.top,
    info.padInfo.left,
    info.outHeight,
    info.outWidth,
  ] as const;

/**
 * Room for gemm's packed B of k x n, and where in it the panels start: on a 64-byte line, as
 * XNNPACK's allocator places its own. tfjs's malloc aligns to 8 bytes, and B's vector loads
 * straddling cache lines cost the GEMM 40 % (25 against 44 GFLOP/s).
 */
const packedSize = (k: number, n: number) => [Math.ceil(n / 8) * 8 * k + 16];
const panels = (s: Scratch, t: TensorInfo) => (heapAddress(s.backend, t) + 63) & ~63;

/** Packs a k x n operand for gemm's B, read with row stride rs and column stride cs (bytes). */
function packed(s: Scratch, g: GemmKernels, src: TensorInfo, rs: number, cs: number, k: number, n: number): TensorInfo {
  const out = s.alloc(packedSize(k, n), false);
  g.packB(heapAddress(s.backend, src), rs, cs, k, n, panels(s, out));
  return out;
}

/** y [B, OH, OW, Cout] = im2col(x) W. */
function convGemm(
  s: Scratch,
  g: GemmKernels,
  x: TensorInfo,
  filter: TensorInfo,
  info: backend_util.Conv2DInfo,
): TensorInfo {
  const {
    batchSize: b,
    inHeight: h,
    inWidth: w,
    inChannels: cin,
    outHeight: oh,
    outWidth: ow,
    outChannels: cout,
  } = info;
  const k = info.filterHeight * info.filterWidth * cin;
  const [bp] = keptFilters(s, filter, `gemm W ${filter.shape}`, (make) => [
    packed(make, g, filter, cout * 4, 4, k, cout),
  ]);
  const per = imagesPerBlock(info, k);
  const y = s.alloc([b, oh, ow, cout], false);
  const cols = s.alloc([per * oh * ow * k], false);
  const tmp = s.alloc([GEMM_TILE_FLOATS], false);
  const at = (t: TensorInfo) => heapAddress(s.backend, t);
  for (let n0 = 0; n0 < b; n0 += per) {
    const nb = Math.min(per, b - n0);
    g.im2col(at(x) + n0 * h * w * cin * 4, nb, h, w, cin, ...windowArgs(info), at(cols));
    g.gemm(
      at(cols),
      k * 4,
      0,
      panels(s, bp),
      at(y) + n0 * oh * ow * cout * 4,
      cout * 4,
      nb * oh * ow,
      cout,
      k,
      0,
      at(tmp),
    );
  }
  return y;
}

/** dW [KH*KW*Cin, Cout] = im2col(x)^T dy, summed over blocks of images. */
function filterGradGemm(
  s: Scratch,
  g: GemmKernels,
  x: TensorInfo,
  dy: TensorInfo,
  info: backend_util.Conv2DInfo,
): TensorInfo {
  const {
    batchSize: b,
    inHeight: h,
    inWidth: w,
    inChannels: cin,
    outHeight: oh,
    outWidth: ow,
    outChannels: cout,
  } = info;
  const k = info.filterHeight * info.filterWidth * cin;
  const per = imagesPerBlock(info, k);
  const dw = s.alloc([k, cout], false);
  const cols = s.alloc([per * oh * ow * k], false);
  const bp = s.alloc(packedSize(per * oh * ow, cout), false);
  const tmp = s.alloc([GEMM_TILE_FLOATS], false);
  const at = (t: TensorInfo) => heapAddress(s.backend, t);
  for (let n0 = 0; n0 < b; n0 += per) {
    const rows = Math.min(per, b - n0) * oh * ow;
    g.im2col(at(x) + n0 * h * w * cin * 4, rows / (oh * ow), h, w, cin, ...windowArgs(info), at(cols));
    g.packB(at(dy) + n0 * oh * ow * cout * 4, cout * 4, 4, rows, cout, panels(s, bp));
    // The block's im2col [rows, k] is A^T stored transposed: the GEMM reads it so, with no copy.
    g.gemm(at(cols), k * 4, 1, panels(s, bp), at(dw), cout * 4, k, cout, rows, n0 > 0 ? 1 : 0, at(tmp));
  }
  return dw;
}

/** dx [B, H, W, Cx] = col2im(dy W^T). */
function inputGradGemm(
  s: Scratch,
  g: GemmKernels,
  dy: TensorInfo,
  filter: TensorInfo,
  info: backend_util.Conv2DInfo,
): TensorInfo {
  const { batchSize: b, inHeight: h, inWidth: w, inChannels: cx, outHeight: oh, outWidth: ow, outChannels: cdy } = info;
  const k = info.filterHeight * info.filterWidth * cx;
  // W^T [Cdy, KH*KW*Cx]: element (c, j) of W^T is W's (j, c).
  const [bp] = keptFilters(s, filter, `gemm W^T ${filter.shape}`, (make) => [
    packed(make, g, filter, 4, cdy * 4, cdy, k),
  ]);
  const per = imagesPerBlock(info, k);
  const dx = s.alloc([b, h, w, cx]);
  const cols = s.alloc([per * oh * ow * k], false);
  const tmp = s.alloc([GEMM_TILE_FLOATS], false);
  const at = (t: TensorInfo) => heapAddress(s.backend, t);
  for (let n0 = 0; n0 < b; n0 += per) {
    const nb = Math.min(per, b - n0);
    g.gemm(
      at(dy) + n0 * oh * ow * cdy * 4,
      cdy * 4,
      0,
      panels(s, bp),
      at(cols),
      k * 4,
      nb * oh * ow,
      k,
      cdy,
      0,
      at(tmp),
    );
    g.col2im(at(cols), nb, h, w, cx, ...windowArgs(info), at(dx) + n0 * h * w * cx * 4);
  }
  return dx;
}

/** The GEMM kernels, unless a way other than 'gemm' is forced or the heap is out of reach. */
function gemmFor(s: Scratch, way: 'auto' | string): GemmKernels | undefined {
  return way === 'auto' || way === 'gemm' ? gemmKernels(s.backend) : undefined;
}

// ---------------------------------------------------------------------------------------------
// Conv2D

/**
 * Below this many input channels XNNPACK's own Conv2D is the faster (bench-kernels, ms: the RGB
 * layers D conv1 and G's last tconv's dx, 1.2 and 1.1 against 1.8 and 1.6 on the tiny preset,
 * 10.0 against 10.2 on the seed's model): rows of A too short for the GEMM's tiles to pay.
 */
const GEMM_MIN_CHANNELS = 8;

const conv2D: KernelFunc = (args) => {
  const { inputs, backend, attrs = {} } = args;
  const dilations = attrs.dilations as number | [number, number] | undefined;
  const dilated = dilations !== undefined && [dilations].flat().some((d) => d !== 1);
  const x = input(inputs, 'x');
  const channels = x.shape[attrs.dataFormat === 'NCHW' ? 1 : 3];
  const few = forced.conv === 'auto' && channels < GEMM_MIN_CHANNELS;
  if (dilated || few || x.dtype !== 'float32') return stockKernel('Conv2D').kernelFunc(args);
  return withScratch(backend as BackendWasm, (s) => {
    purgeKept(s.backend);
    const g = gemmFor(s, forced.conv);
    if (g === undefined) return s.keep(s.track(stockKernel('Conv2D').kernelFunc(args) as TensorInfo));
    const filter = input(inputs, 'filter');
    const info = convInfo(x.shape, filter.shape, attrs);
    return s.keep(fromNHWC(s, convGemm(s, g, toNHWC(s, x, attrs.dataFormat), filter, info), attrs.dataFormat));
  });
};

// ---------------------------------------------------------------------------------------------
// dW

function filterGradIm2col(s: Scratch, x: TensorInfo, dy: TensorInfo, info: backend_util.Conv2DInfo): TensorInfo {
  const { batchSize: b, inHeight: h, inWidth: w, inChannels: cin, outHeight: oh, outWidth: ow } = info;
  const { filterHeight: kh, filterWidth: kw, strideHeight: sh, strideWidth: sw, padInfo } = info;
  const m = b * oh * ow;
  const xt = s.transpose(x, [3, 0, 1, 2]); // [Cin, B, H, W]: rows of x contiguous for the gather
  const colsT = s.alloc([kh * kw * cin, m]);
  const dst = s.view(colsT);
  const src = s.view(xt);
  for (let i = 0; i < kh; i++) {
    for (let j = 0; j < kw; j++) {
      // The output columns p whose input column p*sw + j - left lies inside x.
      const p0 = Math.max(0, Math.ceil((padInfo.left - j) / sw));
      const p1 = Math.min(ow, Math.floor((w - 1 + padInfo.left - j) / sw) + 1);
      for (let c = 0; c < cin; c++) {
        for (let n = 0; n < b; n++) {
          for (let o = 0; o < oh; o++) {
            const row = o * sh + i - padInfo.top;
            if (row < 0 || row >= h) continue;
            const from = ((c * b + n) * h + row) * w + j - padInfo.left;
            const to = ((i * kw + j) * cin + c) * m + (n * oh + o) * ow;
            for (let p = p0; p < p1; p++) dst[to + p] = src[from + p * sw];
          }
        }
      }
    }
  }
  return matMul(s, colsT, s.reshape(dy, [m, info.outChannels]));
}

function filterGradDilated(s: Scratch, x: TensorInfo, dy: TensorInfo, info: backend_util.Conv2DInfo): TensorInfo {
  const { inChannels: cin, outChannels: cout, filterHeight: kh, filterWidth: kw, padInfo } = info;
  const bottom = Math.max(0, kh + info.strideHeight * (info.outHeight - 1) - info.inHeight - padInfo.top);
  const right = Math.max(0, kw + info.strideWidth * (info.outWidth - 1) - info.inWidth - padInfo.left);
  let w = s.conv(
    s.transpose(x, [3, 1, 2, 0]),
    s.transpose(dy, [1, 2, 0, 3]),
    [
      [0, 0],
      [padInfo.top, bottom],
      [padInfo.left, right],
      [0, 0],
    ],
    [info.outHeight > 1 ? info.strideHeight : 1, info.outWidth > 1 ? info.strideWidth : 1],
  );
  // [Cin, KH', KW', Cout]: the padded image can leave rows and columns past the kernel.
  if (w.shape[1] !== kh || w.shape[2] !== kw) w = s.slice(w, [0, 0, 0, 0], [cin, kh, kw, cout]);
  return s.transpose(w, [1, 2, 0, 3]);
}

/** The fastest way measured for this geometry (bench/kernels.ts). */
function filterGradWay(info: backend_util.Conv2DInfo): Exclude<FilterGradWay, 'auto'> {
  const m = info.batchSize * info.outHeight * info.outWidth;
  if (info.filterHeight * info.filterWidth * info.inChannels * m > IM2COL_LIMIT) return 'dilated';
  // Long columns (many output pixels) cost more to gather than the dilated conv loses, unless the
  // conv would have only KH*KW*Cin output pixels of a few channels (the RGB layer). A 1x1 output
  // makes the dilated conv a plain matmul.
  return (m >= 4096 && info.inChannels >= 16) || info.outHeight * info.outWidth === 1 ? 'dilated' : 'im2col';
}

const conv2DBackpropFilter: KernelFunc = ({ inputs, backend, attrs = {} }) =>
  withScratch(backend as BackendWasm, (s) => {
    const info = convInfo(input(inputs, 'x').shape, attrs.filterShape as number[], attrs);
    const x = toNHWC(s, input(inputs, 'x'), attrs.dataFormat);
    const dy = toNHWC(s, input(inputs, 'dy'), attrs.dataFormat);
    assertShape('Conv2DBackpropFilter dy', dy.shape, [info.batchSize, info.outHeight, info.outWidth, info.outChannels]);
    const g = gemmFor(s, forced.dW);
    // g is there when 'gemm' is forced or 'auto' chose it; otherwise an XNNPACK composition.
    const way = forced.dW === 'auto' ? filterGradWay(info) : forced.dW;
    const dw =
      g !== undefined
        ? filterGradGemm(s, g, x, dy, info)
        : way === 'im2col'
          ? filterGradIm2col(s, x, dy, info)
          : filterGradDilated(s, x, dy, info);
    return s.keep(s.reshape(dw, [info.filterHeight, info.filterWidth, info.inChannels, info.outChannels]));
  });

// ---------------------------------------------------------------------------------------------
// dx

/**
 * One axis of a stride-s transposed conv split into phases: output index i = s*m + r takes the
 * kernel taps k = s*t + q, q = (r + pad) mod s, reading dy[m + c - t], c = floor((r + pad) / s).
 */
interface Phase {
  q: number;
  taps: number;
  c: number;
}

function phases(stride: number, kernel: number, pad: number): Phase[] {
  return Array.from({ length: stride }, (_, r) => {
    const q = (r + pad) % stride;
    return { q, taps: q < kernel ? Math.ceil((kernel - q) / stride) : 0, c: Math.floor((r + pad) / stride) };
  });
}

/** The dy window of a set of phases sharing a conv: offsets d = c - t in [lo, lo + span). */
function window(ps: Phase[]): { lo: number; span: number } {
  const lo = Math.min(...ps.map((p) => p.c - p.taps + 1));
  return { lo, span: Math.max(...ps.map((p) => p.c)) - lo + 1 };
}

/** Padding for `rows` outputs of a window at dy offset lo over `len` rows, and leading rows to drop when lo > 0. */
function convPad(lo: number, span: number, rows: number, len: number): { before: number; after: number; skip: number } {
  const before = Math.max(0, -lo);
  const skip = Math.max(0, lo);
  return { before, after: Math.max(0, skip + rows + span - 1 - before - len), skip };
}

/** One conv of the decomposition: output row phase rh and column phases rw, side by side in its channels. */
interface PhaseConv {
  rh: number;
  rw: number[];
  rows: { lo: number; span: number };
  cols: { lo: number; span: number };
}

function phaseConvs(info: backend_util.Conv2DInfo, byRow: boolean): PhaseConv[] {
  const ph = phases(info.strideHeight, info.filterHeight, info.padInfo.top);
  const pw = phases(info.strideWidth, info.filterWidth, info.padInfo.left);
  const colSets = byRow ? [pw.map((_, r) => r)] : pw.map((_, r) => [r]);
  return ph.flatMap((p, rh) =>
    colSets.map((rw) => ({ rh, rw, rows: window([p]), cols: window(rw.map((r) => pw[r])) })),
  );
}

/** Each conv's filter [Th, Tw, Cdy, |rw|*Cx]: its phases' taps, flipped, in and out channels swapped. */
function phaseFilters(s: Scratch, filter: TensorInfo, info: backend_util.Conv2DInfo, convs: PhaseConv[]): TensorInfo[] {
  const [, kw, cx, cdy] = filter.shape;
  const wt = s.transpose(filter, [0, 1, 3, 2]); // [KH, KW, Cdy, Cx]
  const ph = phases(info.strideHeight, info.filterHeight, info.padInfo.top);
  const pw = phases(info.strideWidth, info.filterWidth, info.padInfo.left);
  const out = convs.map((g) => s.alloc([g.rows.span, g.cols.span, cdy, g.rw.length * cx]));
  const w = s.view(wt);
  convs.forEach((g, gi) => {
    const f = s.view(out[gi]);
    const np = g.rw.length;
    const p = ph[g.rh];
    for (let u = 0; u < g.rows.span; u++) {
      const tr = p.c - (g.rows.lo + u);
      if (tr < 0 || tr >= p.taps) continue;
      for (let v = 0; v < g.cols.span; v++) {
        g.rw.forEach((r, j) => {
          const tc = pw[r].c - (g.cols.lo + v);
          if (tc < 0 || tc >= pw[r].taps) return; // zero: this phase has no tap here
          const src = ((info.strideHeight * tr + p.q) * kw + info.strideWidth * tc + pw[r].q) * cdy * cx;
          const dst = (u * g.cols.span + v) * cdy * np * cx + j * cx;
          if (np === 1) f.set(w.subarray(src, src + cdy * cx), dst);
          else
            for (let co = 0; co < cdy; co++) f.set(w.subarray(src + co * cx, src + (co + 1) * cx), dst + co * np * cx);
        });
      }
    }
  });
  return out;
}

/**
 * Filters derived from a weight tensor (phase filters, packed GEMM operands), kept while their
 * source lives: D's weights serve two forwards and a dx each step. There is no disposal hook:
 * entries whose source is gone are freed when a kernel next runs.
 */
const kept = new WeakMap<BackendWasm, Map<object, Map<string, TensorInfo[]>>>();

function keptFor(b: BackendWasm): Map<object, Map<string, TensorInfo[]>> {
  let entries = kept.get(b);
  if (!entries) {
    entries = new Map();
    kept.set(b, entries);
  }
  return entries;
}

function freeKept(b: BackendWasm, id: object): void {
  const entries = keptFor(b);
  for (const filters of entries.get(id)?.values() ?? []) for (const t of filters) b.disposeData(t.dataId);
  entries.delete(id);
}

/** Frees what was kept for every source filter disposed since the last call. */
function purgeKept(b: BackendWasm): void {
  for (const id of keptFor(b).keys()) if (!b.dataIdMap.has(id)) freeKept(b, id);
}

/** What `make` derives from `filter` under `key`, made once while the filter lives. */
function keptFilters(s: Scratch, filter: TensorInfo, key: string, make: (s: Scratch) => TensorInfo[]): TensorInfo[] {
  const entries = keptFor(s.backend);
  let byKey = entries.get(filter.dataId);
  const hit = byKey?.get(key);
  if (hit !== undefined) return hit;
  const filters = withScratch(s.backend, (m) => make(m).map((f) => m.keep(f)));
  if (byKey === undefined) {
    byKey = new Map();
    entries.set(filter.dataId, byKey);
  }
  byKey.set(key, filters);
  return filters;
}

function inputGradPhases(
  s: Scratch,
  dy: TensorInfo,
  filter: TensorInfo,
  info: backend_util.Conv2DInfo,
  byRow: boolean,
): TensorInfo {
  const { batchSize: b, inHeight: h, inWidth: w, inChannels: cx, strideHeight: sh, strideWidth: sw } = info;
  const convs = phaseConvs(info, byRow);
  const key = `phases ${filter.shape} ${byRow} ${sh} ${sw} ${info.padInfo.top} ${info.padInfo.left}`;
  const filters = keptFilters(s, filter, key, (make) => phaseFilters(make, filter, info, convs));
  const mh = Math.ceil(h / sh);
  const mw = Math.ceil(w / sw);
  const outs = convs.map((g, i) => {
    const ph = convPad(g.rows.lo, g.rows.span, mh, info.outHeight);
    const pw = convPad(g.cols.lo, g.cols.span, mw, info.outWidth);
    const out = s.conv(dy, filters[i], [
      [0, 0],
      [ph.before, ph.after],
      [pw.before, pw.after],
      [0, 0],
    ]);
    const exact = ph.skip === 0 && pw.skip === 0 && out.shape[1] === mh && out.shape[2] === mw;
    return exact ? out : s.slice(out, [0, ph.skip, pw.skip, 0], [b, mh, mw, out.shape[3]]);
  });
  const dx = s.alloc([b, h, w, cx], false);
  const out = s.view(dx);
  convs.forEach(({ rh, rw }, gi) => {
    // dx pixel (s*m + rh, s*n + rw[j]) is the conv's pixel (m, n), channels j*Cx .. (j+1)*Cx.
    const src = s.view(outs[gi]);
    const run = rw.length * cx;
    const wholeRows = rw.length === sw && mw * sw === w;
    for (let n = 0; n < b; n++) {
      for (let m = 0; m * sh + rh < h; m++) {
        const from = (n * mh + m) * mw * run;
        const row = (n * h + m * sh + rh) * w * cx;
        if (wholeRows) {
          out.set(src.subarray(from, from + mw * run), row);
          continue;
        }
        for (let q = 0; q < mw; q++) {
          rw.forEach((r, j) => {
            const col = q * sw + r;
            if (col >= w) return;
            const at = from + q * run + j * cx;
            if (cx >= 16) out.set(src.subarray(at, at + cx), row + col * cx);
            else for (let c = 0; c < cx; c++) out[row + col * cx + c] = src[at + c];
          });
        }
      }
    }
  });
  return dx;
}

function inputGradCol2im(s: Scratch, dy: TensorInfo, filter: TensorInfo, info: backend_util.Conv2DInfo): TensorInfo {
  const { batchSize: b, inHeight: h, inWidth: w, inChannels: cx, outHeight: oh, outWidth: ow, outChannels: cdy } = info;
  const { filterHeight: kh, filterWidth: kw, strideHeight: sh, strideWidth: sw, padInfo } = info;
  const m = b * oh * ow;
  // colsT [(kh, kw, ci), (b, o, ow)]: dy is the packed operand, so W is used as it is.
  const colsT = matMul(s, s.reshape(filter, [kh * kw * cx, cdy]), s.transpose(s.reshape(dy, [m, cdy]), [1, 0]));
  const dx = s.alloc([b, h, w, cx]);
  const out = s.view(dx);
  const src = s.view(colsT);
  for (let i = 0; i < kh; i++) {
    for (let j = 0; j < kw; j++) {
      const p0 = Math.max(0, Math.ceil((padInfo.left - j) / sw));
      const p1 = Math.min(ow, Math.floor((w - 1 + padInfo.left - j) / sw) + 1);
      for (let n = 0; n < b; n++) {
        for (let o = 0; o < oh; o++) {
          const row = o * sh + i - padInfo.top;
          if (row < 0 || row >= h) continue;
          for (let c = 0; c < cx; c++) {
            const from = ((i * kw + j) * cx + c) * m + (n * oh + o) * ow;
            const to = ((n * h + row) * w + j - padInfo.left) * cx + c;
            for (let p = p0; p < p1; p++) out[to + p * sw * cx] += src[from + p];
          }
        }
      }
    }
  }
  return dx;
}

/** A kernel smaller than the stride leaves phases without a tap: only col2im handles those. */
const hasEmptyPhase = (info: backend_util.Conv2DInfo) =>
  info.filterHeight < info.strideHeight || info.filterWidth < info.strideWidth;

/** The fastest way measured for this geometry (bench/kernels.ts). */
function inputGradWay(info: backend_util.Conv2DInfo): Exclude<InputGradWay, 'auto'> {
  const cols = info.filterHeight * info.filterWidth * info.inChannels * info.batchSize * info.outHeight * info.outWidth;
  if (hasEmptyPhase(info)) return 'col2im';
  // A small dy padded for a phase conv is mostly padding (4x4 -> 8x8 by 5x5: three quarters).
  if (info.outHeight * info.outWidth <= 16 && cols <= IM2COL_LIMIT) return 'col2im';
  // Few channels: separate phase convs would interleave tiny pieces; one conv per row does not.
  return info.inChannels < 16 ? 'rowPhases' : 'phases';
}

const conv2DBackpropInput: KernelFunc = ({ inputs, backend, attrs = {} }) =>
  withScratch(backend as BackendWasm, (s) => {
    purgeKept(s.backend);
    const filter = input(inputs, 'filter');
    const info = convInfo(attrs.inputShape as number[], filter.shape, attrs);
    const dy = toNHWC(s, input(inputs, 'dy'), attrs.dataFormat);
    assertShape('Conv2DBackpropInput dy', dy.shape, [info.batchSize, info.outHeight, info.outWidth, info.outChannels]);
    const g = gemmFor(s, forced.dx);
    const way = forced.dx === 'auto' || hasEmptyPhase(info) ? inputGradWay(info) : forced.dx;
    const dx =
      g !== undefined
        ? inputGradGemm(s, g, dy, filter, info)
        : way === 'col2im'
          ? inputGradCol2im(s, dy, filter, info)
          : inputGradPhases(s, dy, filter, info, way === 'rowPhases');
    return s.keep(fromNHWC(s, dx, attrs.dataFormat));
  });

// ---------------------------------------------------------------------------------------------
// BatchMatMul and Tile

/** Stock configs we replaced (undefined where the backend had none), restored on unregister. */
let stock: Map<string, KernelConfig | undefined> | null = null;

function stockKernel(name: string): KernelConfig {
  const config = stock?.get(name);
  if (config === undefined) throw new Error(`no stock wasm kernel ${name}: registerWasmGradientKernels() has not run`);
  return config;
}

/** a [M, K] x b [K, N]: the only case the stock kernel hands to XNNPACK (the rest is a naive loop). */
function matMul(s: Scratch, a: TensorInfo, b: TensorInfo): TensorInfo {
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
const batchMatMul: KernelFunc = ({ inputs, backend, attrs = {} }) =>
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

/**
 * Tile by block copies: each axis's first block is built once, then doubled with copyWithin. The
 * stock kernel computes an index per element, and BatchNorm's gradient tiles [1,1,1,C] up to a
 * whole activation several times a step.
 */
const tile: KernelFunc = ({ inputs, backend, attrs = {} }) => {
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

// ---------------------------------------------------------------------------------------------
// The per-channel kernels of traced passes (backprop.ts, and model.ts when it records a trace):
// one pass each where tfjs's ops transpose an activation to sum it over N, H and W, or build a
// mask to select by. Registered under names of our own (fused-kernels.ts); other backends, and
// passes under a tape, compose tfjs ops instead.

function heapKernels(backend: BackendWasm): GemmKernels {
  const g = gemmKernels(backend);
  if (g === undefined)
    throw new Error('the wasm heap is out of reach: callers must compose tfjs ops (fusedKernelsRun)');
  return g;
}

const rowsOf = (t: TensorInfo) => t.shape.slice(0, -1).reduce((a, d) => a * d, 1);

/** x [..., C] -> [C]: the sum over every other axis. */
const channelSum: KernelFunc = ({ inputs, backend }) => {
  const b = backend as BackendWasm;
  const x = input(inputs, 'x');
  const c = x.shape.at(-1)!;
  const out = b.makeOutput([c], 'float32');
  heapKernels(b).channelSum(heapAddress(b, x), rowsOf(x), c, heapAddress(b, out));
  return out;
};

/** g, x [..., C], mean, rstd [C] -> [sum g, sum g * xhat], each [C]. */
const bnParamGrads: KernelFunc = ({ inputs, backend }) => {
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
const bnInputGrad: KernelFunc = ({ inputs, backend }) => {
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
const moments: KernelFunc = ({ inputs, backend }) => {
  const b = backend as BackendWasm;
  const x = input(inputs, 'x');
  const c = x.shape.at(-1)!;
  const mean = b.makeOutput([c], 'float32');
  const variance = b.makeOutput([c], 'float32');
  heapKernels(b).channelMoments(heapAddress(b, x), rowsOf(x), c, heapAddress(b, mean), heapAddress(b, variance));
  return [mean, variance];
};

/** g, x -> x > 0 ? g : g * alpha. */
const leakyReluGrad: KernelFunc = ({ inputs, backend, attrs = {} }) => {
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
const leakyRelu: KernelFunc = (args) =>
  leakyReluGrad({ ...args, inputs: { g: input(args.inputs, 'x'), x: input(args.inputs, 'x') } });

// ---------------------------------------------------------------------------------------------
// registration

const OURS: Record<string, KernelFunc> = {
  [CHANNEL_SUM]: channelSum,
  [BN_PARAM_GRADS]: bnParamGrads,
  [BN_INPUT_GRAD]: bnInputGrad,
  [LEAKY_RELU_GRAD]: leakyReluGrad,
  [MOMENTS]: moments,
  [LEAKY_RELU]: leakyRelu,
  Conv2D: conv2D,
  Conv2DBackpropFilter: conv2DBackpropFilter,
  Conv2DBackpropInput: conv2DBackpropInput,
  BatchMatMul: batchMatMul,
  Tile: tile,
};

/** Registers the kernels above for the 'wasm' backend. Safe to call more than once. */
export function registerWasmGradientKernels(): void {
  if (stock !== null) return;
  stock = new Map();
  for (const [name, kernelFunc] of Object.entries(OURS)) {
    const old = getKernel(name, BACKEND);
    stock.set(name, old);
    if (old !== undefined) unregisterKernel(name, BACKEND);
    // The stock setup (its wasm function bindings) still has to run when the backend starts: we call it.
    registerKernel({ kernelName: name, backendName: BACKEND, kernelFunc, setupFunc: old?.setupFunc });
  }
}

/** Puts the stock wasm kernels back (benchmarks and tests compare against them). */
export function unregisterWasmGradientKernels(): void {
  if (stock === null) return;
  for (const [name, old] of stock) {
    unregisterKernel(name, BACKEND);
    if (old !== undefined) registerKernel(old);
  }
  stock = null;
}
