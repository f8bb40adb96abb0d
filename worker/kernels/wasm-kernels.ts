// Convolution kernels for tfjs's wasm backend: Conv2D, Conv2DBackpropFilter (which it lacks) and
// Conv2DBackpropInput (its own is a naive loop, 8-15x slower), plus BatchMatMul and Tile where the
// stock kernels fall off a fast path. This file chooses a way per shape and registers the kernels;
// each way lives in a file of its own beside it. bench/kernels.ts measures every choice made here.
//
// Where the backend's heap is reachable (always, with tfjs-backend-wasm 4.x), all three convolutions
// are one GEMM of our own (conv-gemm.ts) around im2col or col2im, about twice XNNPACK's rate:
// - y = im2col(x) W;  dW = im2col(x)^T dy;  dx = col2im(dy W^T).
// - im2col blocks hold at most IM2COL_LIMIT elements; larger batches run in blocks of images.
// - Packed filters are kept while their source lives (D's weights serve two forwards and a dx).
// The compositions of XNNPACK's kernels remain for the other cases, and as the baseline:
// - dW (filter-grad.ts): a stride-1 conv dilated by the stride, with x as [Cin, H, W, B] the
//   image and dy as [OH, OW, B, Cout] the filter; or, where B*OH*OW is small (and its im2col fits
//   in IM2COL_LIMIT), im2col(x)^T [KH*KW*Cin, B*OH*OW] x dy, one matmul into [KH, KW, Cin, Cout].
// - dx (input-grad.ts) at stride s, which is also every transposed conv's forward: the s*s
//   sub-pixel phases of the kernel, each a stride-1 conv of dy with its flipped, channel-swapped
//   taps (for 5x5 at stride 2: 3x3, 3x2, 2x3 and 2x2), interleaved into dx. Phase filters are
//   kept while their source filter lives: D's dx runs three times a step with the same weights.
// - dx where dy is small (at most 4x4) and the phase convs would mostly multiply padding:
//   W [KH*KW*Cx, Cdy] x dy^T, then a scatter-add (col2im); W needs no transpose or packing.

import '@tensorflow/tfjs-backend-wasm';
import { getKernel, registerKernel, unregisterKernel } from '@tensorflow/tfjs';
import type { backend_util, KernelFunc, TensorInfo } from '@tensorflow/tfjs';
import type { BackendWasm } from '@tensorflow/tfjs-backend-wasm';
import { BN_INPUT_GRAD, BN_PARAM_GRADS, CHANNEL_SUM, LEAKY_RELU, LEAKY_RELU_GRAD, MOMENTS } from './fused-kernels.ts';
import { bnInputGrad, bnParamGrads, channelSum, leakyRelu, leakyReluGrad, moments } from './channel-kernels.ts';
import { assertShape, convInfo, fromNHWC, IM2COL_LIMIT, toNHWC } from './conv-geometry.ts';
import { convGemm, filterGradGemm, gemmFor, inputGradGemm } from './conv-gemm.ts';
import { filterGradDilated, filterGradIm2col } from './filter-grad.ts';
import { inputGradCol2im, inputGradPhases } from './input-grad.ts';
import { purgeKept } from './kept-filters.ts';
import { batchMatMul } from './matmul.ts';
import { BACKEND, input, withScratch } from './scratch.ts';
import { stock, stockKernel } from './stock-kernels.ts';
import { tile } from './tile.ts';

/** Ways to compute each kernel; 'auto' picks per shape. Forcing one is for benchmarks and tests. */
export type FilterGradWay = 'auto' | 'gemm' | 'im2col' | 'dilated';
export type InputGradWay = 'auto' | 'gemm' | 'phases' | 'rowPhases' | 'col2im';
export type ConvWay = 'auto' | 'gemm' | 'xnnpack';

const forced: { dW: FilterGradWay; dx: InputGradWay; conv: ConvWay } = { dW: 'auto', dx: 'auto', conv: 'auto' };

export function forceConvGradWays(ways: Partial<typeof forced>): void {
  Object.assign(forced, ways);
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

/** Whether ours are registered: registering twice would record our kernels as the stock ones. */
let registered = false;

/** Registers the kernels above for the 'wasm' backend. Safe to call more than once. */
export function registerWasmGradientKernels(): void {
  if (registered) return;
  registered = true;
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
  if (!registered) return;
  for (const [name, old] of stock) {
    unregisterKernel(name, BACKEND);
    if (old !== undefined) registerKernel(old);
  }
  stock.clear();
  registered = false;
}
