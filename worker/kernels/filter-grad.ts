// dW composed of XNNPACK's kernels, where our GEMM is not used: im2col(x)^T dy as one matmul, or a
// stride-1 conv dilated by the stride with x as the image and dy as the filter.

import type { backend_util, TensorInfo } from '@tensorflow/tfjs';
import { matMul } from './matmul.ts';
import type { Scratch } from './scratch.ts';

export function filterGradIm2col(s: Scratch, x: TensorInfo, dy: TensorInfo, info: backend_util.Conv2DInfo): TensorInfo {
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

export function filterGradDilated(
  s: Scratch,
  x: TensorInfo,
  dy: TensorInfo,
  info: backend_util.Conv2DInfo,
): TensorInfo {
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
