// Reverse-mode passes over a forward pass's trace (model.ts `trace`), layer by layer.
//
// Why not tfjs's tapes: a GAN step needs two different gradients through D's pass on the
// generated images (lossG's into G, lossD's into D). A tape can carry one upstream gradient, so
// two tapes meant running D on the generated images twice. Here the forward pass runs once and
// each backward pass asks only for what it needs: input gradients alone (lossG through D), or
// parameter gradients alone (lossD into D), which also skips dx of a network's first layer.
// Every formula is tfjs's own gradient of the same op (checked against tfjs's tapes in
// test/worker/trainer.test.ts and by finite differences).

import type { Tensor, Tensor1D, Tensor2D, Tensor4D } from '@tensorflow/tfjs';
import type { TF } from './backend.ts';
import { BN_EPSILON, type Net } from '../protocol/model/architecture.ts';
import { drain, type BnSteps, type LayerTrace, type ParamTensors } from './model.ts';
import {
  BN_INPUT_GRAD,
  BN_PARAM_GRADS,
  CHANNEL_SUM,
  fusedKernelsRun,
  LEAKY_RELU_GRAD,
  runFused,
} from './kernels/fused-kernels.ts';

export interface BackwardWants {
  /** Gradients of the learnables of the traced layers, by parameter name. */
  params: boolean;
  /** The gradient of the network's input. */
  input: boolean;
  /**
   * `--batchnorm sync`: each BatchNorm layer's input gradient yields this shard's sums of dy and
   * dy*xhat and uses the global batch's (backwardSteps only). Its parameter gradients stay local.
   */
  syncBn?: boolean;
}

export interface Backward {
  grads: Map<string, Tensor>;
  dx?: Tensor;
}

const HAS_PARAMS = new Set(['project', 'conv', 'tconv', 'bn']);

/** The filter gradient of a conv with this geometry (tfjs exports no op for it, only the kernel). */
function filterGrad(
  tf: TF,
  x: Tensor,
  dy: Tensor,
  filterShape: number[],
  stride: number,
  pad: 'same' | 'valid',
): Tensor4D {
  return tf.engine().runKernel('Conv2DBackpropFilter', { x, dy }, {
    strides: [stride, stride],
    pad,
    dataFormat: 'NHWC',
    dimRoundingMode: undefined,
    filterShape,
  } as never) as Tensor4D;
}

/** The sum over N, H and W: one pass where fused-kernels.ts's kernels run, tf.sum transposing the activation first. */
const sumNHW = (tf: TF, fused: boolean, t: Tensor) =>
  fused ? runFused<Tensor>(tf, CHANNEL_SUM, { x: t }) : tf.sum(t, [0, 1, 2]);

/**
 * BatchNorm's backward (see 'bn' below): dOffset, dScale and, when wanted, dx. Synced, dx takes
 * the means of dy and dy*xhat over the global batch (a barrier) instead of over this shard.
 */
function* batchNormGrads(
  tf: TF,
  key: string,
  sync: boolean,
  fused: boolean,
  g: Tensor,
  x: Tensor,
  mean: Tensor,
  variance: Tensor,
  scale: Tensor,
  needDx: boolean,
): BnSteps<{ dOffset: Tensor; dScale: Tensor; dx?: Tensor }> {
  const rstd = tf.rsqrt(tf.add(variance, BN_EPSILON));
  const count = x.shape[0] * x.shape[1]! * x.shape[2]!;
  const channels = x.shape.at(-1)!;
  // The sums the input gradient divides by count: this shard's, or the global batch's.
  function* sums(dOffset: Tensor, dScale: Tensor): BnSteps<[Tensor, Tensor]> {
    if (!sync) return [dOffset, dScale];
    const global = yield { key, kind: 'gradSums', count, a: dOffset, b: dScale };
    return [tf.tensor1d(global.a), tf.tensor1d(global.b)];
  }
  if (fused && channels % 4 === 0) {
    const [dOffset, dScale] = runFused<Tensor[]>(tf, BN_PARAM_GRADS, { g, x, mean, rstd });
    if (!needDx) return { dOffset, dScale };
    const [s1, s2] = yield* sums(dOffset, dScale);
    const dx = runFused<Tensor>(tf, BN_INPUT_GRAD, {
      g,
      x,
      mean,
      rstd,
      k1: tf.div(s1, count),
      k2: tf.div(s2, count),
      k3: tf.mul(scale, rstd),
    });
    return { dOffset, dScale, dx };
  }
  const xhat = tf.mul(tf.sub(x, mean), rstd);
  const dOffset = sumNHW(tf, fused, g);
  const dScale = sumNHW(tf, fused, tf.mul(g, xhat));
  if (!needDx) return { dOffset, dScale };
  const [s1, s2] = yield* sums(dOffset, dScale);
  // dx = scale * rstd * (dy - mean(dy) - xhat * mean(dy * xhat)), means over N, H, W.
  const dx = tf.mul(tf.sub(tf.sub(g, tf.div(s1, count)), tf.mul(xhat, tf.div(s2, count))), tf.mul(scale, rstd));
  return { dOffset, dScale, dx };
}

/**
 * Backpropagates `dy` (the gradient of a scalar w.r.t. the traced pass's output) through `trace`.
 * Input gradients stop at the first layer with learnables unless the network's input is wanted.
 */
export function backward(
  tf: TF,
  net: Net,
  p: ParamTensors,
  trace: LayerTrace[],
  dy: Tensor,
  want: BackwardWants,
): Backward {
  return drain(backwardSteps(tf, net, p, trace, dy, want));
}

/** backward as a pass that stops at each BatchNorm barrier when `want.syncBn`. */
export function* backwardSteps(
  tf: TF,
  net: Net,
  p: ParamTensors,
  trace: LayerTrace[],
  dy: Tensor,
  want: BackwardWants,
): BnSteps<Backward> {
  const grads = new Map<string, Tensor>();
  const fused = fusedKernelsRun(tf);
  const firstLearnable = trace.findIndex((t) => HAS_PARAMS.has(t.layer.kind));
  const lowest = want.input ? 0 : want.params ? Math.max(0, firstLearnable) : trace.length;
  let g = dy;
  for (let i = trace.length - 1; i >= lowest; i--) {
    const { layer: l, x, y } = trace[i];
    const key = `${net}/${l.name}`;
    const needDx = i > lowest || want.input;
    switch (l.kind) {
      case 'input':
        break;
      case 'project': {
        const flat = tf.reshape(g, [x.shape[0], -1]) as Tensor2D;
        if (want.params) {
          grads.set(`${key}/w`, tf.matMul(x as Tensor2D, flat, true, false));
          grads.set(`${key}/b`, tf.sum(flat, 0));
        }
        g = needDx ? tf.matMul(flat, p[`${key}/w`] as Tensor2D, false, true) : g;
        break;
      }
      case 'conv': {
        const w = p[`${key}/w`] as Tensor4D;
        if (want.params) {
          grads.set(`${key}/w`, filterGrad(tf, x, g, w.shape, l.stride, l.pad));
          grads.set(`${key}/b`, sumNHW(tf, fused, g));
        }
        if (needDx)
          g = tf.conv2dTranspose(g as Tensor4D, w, x.shape as [number, number, number, number], l.stride, l.pad);
        break;
      }
      case 'tconv': {
        // y = conv2dTranspose(x, w): the transpose of a conv whose input is y and output is x.
        const w = p[`${key}/w`] as Tensor4D;
        if (want.params) {
          grads.set(`${key}/w`, filterGrad(tf, g, x, w.shape, l.stride, l.pad));
          grads.set(`${key}/b`, sumNHW(tf, fused, g));
        }
        if (needDx) g = tf.conv2d(g as Tensor4D, w, l.stride, l.pad);
        break;
      }
      case 'bn': {
        const { mean, variance } = trace[i];
        if (!mean || !variance) throw new Error(`backward: ${key} was not run in training mode`);
        const { dOffset, dScale, dx } = yield* batchNormGrads(
          tf,
          key,
          want.syncBn === true,
          fused,
          g,
          x,
          mean,
          variance,
          p[`${key}/scale`],
          needDx,
        );
        if (want.params) {
          grads.set(`${key}/offset`, dOffset as Tensor1D);
          grads.set(`${key}/scale`, dScale as Tensor1D);
        }
        if (dx) g = dx;
        break;
      }
      case 'relu':
        g = tf.mul(g, tf.step(y));
        break;
      case 'leakyrelu':
        g =
          fused && x.shape.at(-1)! % 4 === 0
            ? runFused<Tensor>(tf, LEAKY_RELU_GRAD, { g, x }, { alpha: l.alpha })
            : tf.where(tf.greater(x, 0), g, tf.mul(g, l.alpha));
        break;
      case 'tanh':
        g = tf.mul(g, tf.sub(1, tf.square(y)));
        break;
      case 'dropout':
        if (trace[i].mask) g = tf.mul(g, trace[i].mask!);
        break;
      case 'sigmoid':
        g = tf.reshape(g, x.shape);
        break;
    }
  }
  return { grads, dx: want.input ? g : undefined };
}
