// The seed's GAN loss and scores, computed from D's logits.
//   lossD = -mean(log YReal') - mean(log(1 - YGen)),  YReal' = 1 - YReal on flipped rows
//   lossG = -mean(log YGen)
//   scoreD = (mean(YReal) + mean(1 - YGen)) / 2 (before flipping),  scoreG = mean(YGen)
// With Y = sigmoid(l): -log Y = softplus(-l) and -log(1 - Y) = softplus(l), so no log(0).

import type { Scalar, Tensor, Tensor1D } from '@tensorflow/tfjs';
import type { TF } from './backend.ts';

export function lossD(tf: TF, logitsReal: Tensor1D, logitsGen: Tensor1D, flip: Tensor1D): Scalar {
  // sign = +1 on kept rows (-log sigmoid(l) = softplus(-l)), -1 on flipped rows (softplus(l)).
  const sign = tf.sub(1, tf.mul(2, flip));
  const real = tf.mean(tf.softplus(tf.neg(tf.mul(sign, logitsReal))));
  const gen = tf.mean(tf.softplus(logitsGen));
  return tf.add(real, gen) as Scalar;
}

export function lossG(tf: TF, logitsGen: Tensor1D): Scalar {
  return tf.mean(tf.softplus(tf.neg(logitsGen))) as Scalar;
}

export function scores(tf: TF, logitsReal: Tensor, logitsGen: Tensor): { scoreD: Scalar; scoreG: Scalar } {
  const yReal = tf.sigmoid(logitsReal);
  const yGen = tf.sigmoid(logitsGen);
  const scoreG = tf.mean(yGen) as Scalar;
  const scoreD = tf.div(tf.add(tf.mean(yReal), tf.sub(1, scoreG)), 2) as Scalar;
  return { scoreD, scoreG };
}
