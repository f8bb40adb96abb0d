// A convolution's geometry as our kernels see it: NHWC whatever the data format, checked shapes,
// and the largest im2col a matmul formulation may build.

import { backend_util } from '@tensorflow/tfjs';
import type { NamedAttrMap, TensorInfo } from '@tensorflow/tfjs';
import type { Scratch } from './scratch.ts';

/** Largest im2col (elements) a matmul formulation may build: 32 MB; bigger batches use convs. */
export const IM2COL_LIMIT = 8 * 2 ** 20;

type Shape4 = [number, number, number, number];

export const toNHWC = (s: Scratch, t: TensorInfo, format: unknown) =>
  format === 'NCHW' ? s.transpose(t, [0, 2, 3, 1]) : t;
export const fromNHWC = (s: Scratch, t: TensorInfo, format: unknown) =>
  format === 'NCHW' ? s.transpose(t, [0, 3, 1, 2]) : t;

/** The forward conv's geometry, in NHWC whatever the data format. */
export function convInfo(xShape: number[], filterShape: number[], attrs: NamedAttrMap): backend_util.Conv2DInfo {
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

export function assertShape(what: string, got: number[], want: number[]): void {
  if (got.length !== want.length || got.some((d, i) => d !== want[i])) {
    throw new Error(`${what} has shape [${got}], expected [${want}]`);
  }
}
