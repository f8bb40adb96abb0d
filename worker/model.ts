// Forward passes of G and D as tfjs ops over named parameter tensors, following the layer lists
// of architecture.ts. Training mode normalises with batch statistics and records them.

import type { Tensor, Tensor1D, Tensor2D, Tensor4D } from '@tensorflow/tfjs';
import type { TF } from './backend.ts';
import { BN_EPSILON, type Layer, type Net } from '../protocol/model/architecture.ts';
import { fusedKernelsRun, LEAKY_RELU, MOMENTS, runFused } from './kernels/fused-kernels.ts';
import type { BnBarrierResult } from '../protocol/wire/bn-sync.ts';

export type ParamTensors = Record<string, Tensor>;

/** Per-channel batch statistics one BatchNorm layer saw in training mode. */
export interface BatchStats {
  mean: Tensor1D;
  variance: Tensor1D;
  /** Elements per channel that went into them: rows x H x W. */
  count: number;
}

export interface ForwardOptions {
  training: boolean;
  /** D only: dropout multipliers shaped like the input (0 or 1/(1-rate)); training only. */
  dropoutMask?: Tensor;
  /** When given, each BatchNorm layer's batch statistics are kept here (tf.keep'd). */
  stats?: Map<string, BatchStats>;
  /** When given, every layer's input and output (and a BatchNorm's batch statistics) in order, for backprop.ts. */
  trace?: LayerTrace[];
  /**
   * `--batchnorm sync`: each BatchNorm layer yields its shard's moments (a BnBarrierAsk) and
   * normalises with the global batch's that the driver resumes it with (forwardSteps only).
   */
  syncBn?: boolean;
}

/** What a synced BatchNorm layer asks its barrier: this shard's part, as tensors the driver reads. */
export interface BnBarrierAsk {
  key: string;
  kind: 'moments' | 'gradSums';
  /** Elements per channel: rows x H x W. */
  count: number;
  /** moments: the shard's mean and biased variance; gradSums: sum of dy and of dy*xhat. */
  a: Tensor;
  b: Tensor;
}

/** A pass that may stop at BatchNorm barriers: resumed with each barrier's global result. */
export type BnSteps<T> = Generator<BnBarrierAsk, T, BnBarrierResult>;

/** Runs a pass that must not reach a barrier (every pass outside `--batchnorm sync`). */
export function drain<T>(steps: BnSteps<T>): T {
  const r = steps.next();
  if (!r.done) throw new Error(`a BatchNorm barrier (${r.value.key}) was reached with no driver`);
  return r.value;
}

/** What one layer saw and made in a forward pass: all backprop.ts needs to run it backwards. */
export interface LayerTrace {
  layer: Layer;
  x: Tensor;
  y: Tensor;
  /** BatchNorm in training mode: the batch statistics it normalised with. */
  mean?: Tensor1D;
  variance?: Tensor1D;
  /** Dropout in training mode: the multipliers applied. */
  mask?: Tensor;
}

/** Whether a traced pass runs fused-kernels.ts's kernels on x (a tape would need their gradients). */
const fusedHere = (tf: TF, opts: ForwardOptions, x: Tensor) =>
  opts.trace !== undefined && x.shape.at(-1)! % 4 === 0 && fusedKernelsRun(tf);

function* batchNorm(
  tf: TF,
  x: Tensor4D,
  net: Net,
  l: Extract<Layer, { kind: 'bn' }>,
  p: ParamTensors,
  opts: ForwardOptions,
  seen?: Partial<LayerTrace>,
): BnSteps<Tensor4D> {
  const key = `${net}/${l.name}`;
  const offset = p[`${key}/offset`] as Tensor1D;
  const scale = p[`${key}/scale`] as Tensor1D;
  if (!opts.training) {
    return tf.batchNorm4d(x, p[`${key}/mean`] as Tensor1D, p[`${key}/var`] as Tensor1D, offset, scale, BN_EPSILON);
  }
  // Biased batch variance normalises, as MATLAB's and every framework's BatchNorm in training.
  // A traced pass (no tape) takes them in one kernel on wasm.
  let mean: Tensor;
  let variance: Tensor;
  if (fusedHere(tf, opts, x)) [mean, variance] = runFused<Tensor[]>(tf, MOMENTS, { x });
  else ({ mean, variance } = tf.moments(x, [0, 1, 2]));
  const count = x.shape[0] * x.shape[1] * x.shape[2];
  // The running statistics pool each shard's own sums either way; only the normalisation is global.
  const local = { mean, variance };
  if (opts.syncBn) {
    const global = yield { key, kind: 'moments', count, a: mean, b: variance };
    mean = tf.tensor1d(global.a);
    variance = tf.tensor1d(global.b);
  }
  if (seen) Object.assign(seen, { mean, variance });
  if (opts.stats) {
    opts.stats.set(key, {
      mean: tf.keep(local.mean as Tensor1D),
      variance: tf.keep(local.variance as Tensor1D),
      count,
    });
  }
  return tf.batchNorm4d(x, mean as Tensor1D, variance as Tensor1D, offset, scale, BN_EPSILON);
}

/** Runs one network's layers on `input`: G from Z [n, latent] to images, D from images to logits [n]. */
export function forward(
  tf: TF,
  net: Net,
  layers: Layer[],
  p: ParamTensors,
  input: Tensor,
  opts: ForwardOptions,
): Tensor {
  return drain(forwardSteps(tf, net, layers, p, input, opts));
}

/** forward as a pass that stops at each BatchNorm barrier when `opts.syncBn`. */
export function* forwardSteps(
  tf: TF,
  net: Net,
  layers: Layer[],
  p: ParamTensors,
  input: Tensor,
  opts: ForwardOptions,
): BnSteps<Tensor> {
  let x: Tensor = input;
  const n = input.shape[0];
  for (const l of layers) {
    const key = `${net}/${l.name}`;
    const layerIn = x;
    const seen: Partial<LayerTrace> = {};
    switch (l.kind) {
      case 'input':
        break;
      case 'project': // fully connected with bias, reshaped to 4 x 4 x 8nf (projectAndReshapeLayer)
        x = tf.add(tf.matMul(x as Tensor2D, p[`${key}/w`] as Tensor2D), p[`${key}/b`]).reshape([n, ...l.shape]);
        break;
      case 'tconv': {
        const [, h, w] = x.shape;
        const size = (s: number) => (l.pad === 'same' ? s * l.stride : (s - 1) * l.stride + l.k);
        // 'same' crops 1 row/column at the top/left and 2 at the bottom/right for a 5x5 kernel at
        // stride 2, as MATLAB's Cropping 'same' (the extra row comes off the bottom).
        const y = tf.conv2dTranspose(
          x as Tensor4D,
          p[`${key}/w`] as Tensor4D,
          [n, size(h!), size(w!), l.outC],
          l.stride,
          l.pad,
        );
        x = tf.add(y, p[`${key}/b`]);
        break;
      }
      case 'conv':
        x = tf.add(tf.conv2d(x as Tensor4D, p[`${key}/w`] as Tensor4D, l.stride, l.pad), p[`${key}/b`]);
        break;
      case 'bn':
        x = yield* batchNorm(tf, x as Tensor4D, net, l, p, opts, seen);
        break;
      case 'relu':
        x = tf.relu(x);
        break;
      case 'leakyrelu':
        x = fusedHere(tf, opts, x)
          ? runFused<Tensor>(tf, LEAKY_RELU, { x }, { alpha: l.alpha })
          : tf.leakyRelu(x, l.alpha);
        break;
      case 'tanh':
        x = tf.tanh(x);
        break;
      case 'dropout':
        if (opts.training && opts.dropoutMask) {
          x = tf.mul(x, opts.dropoutMask);
          seen.mask = opts.dropoutMask;
        }
        break;
      case 'sigmoid':
        // D returns its logit; the loss applies log-sigmoid (softplus) so no log(0) can occur.
        x = x.reshape([n]);
        break;
    }
    opts.trace?.push({ layer: l, x: layerIn, y: x, ...seen });
  }
  return x;
}

/** uint8 HWC images [n, s, s, 3] in [0, 255] -> float in [-1, 1], as the seed's rescale. */
export function imagesToInput(tf: TF, images: Uint8Array, n: number, size: number): Tensor4D {
  return tf.tidy(
    () => tf.sub(tf.div(tf.tensor4d(images, [n, size, size, 3], 'int32').toFloat(), 127.5), 1) as Tensor4D,
  );
}
