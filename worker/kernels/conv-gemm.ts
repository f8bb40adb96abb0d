// Conv2D, dW and dx as one packed-B GEMM of our own (worker/kernels/gemm.ts) around im2col or
// col2im: y = im2col(x) W;  dW = im2col(x)^T dy;  dx = col2im(dy W^T).

import type { backend_util, TensorInfo } from '@tensorflow/tfjs';
import { GEMM_TILE_FLOATS, gemmKernels, heapAddress, type GemmKernels } from './gemm.ts';
import { IM2COL_LIMIT } from './conv-geometry.ts';
import { keptFilters } from './kept-filters.ts';
import type { Scratch } from './scratch.ts';

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
export function convGemm(
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
export function filterGradGemm(
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
export function inputGradGemm(
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
export function gemmFor(s: Scratch, way: 'auto' | string): GemmKernels | undefined {
  return way === 'auto' || way === 'gemm' ? gemmKernels(s.backend) : undefined;
}
