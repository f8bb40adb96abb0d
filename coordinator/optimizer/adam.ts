// Adam on flat Float32Arrays, exactly as MATLAB's adamupdate:
//   m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2
//   w -= lr sqrt(1 - b2^t) / (1 - b1^t) * (m / (sqrt(v) + eps))
// The bias correction is folded into the learning rate, so eps is added to the uncorrected
// sqrt(v). That is the textbook form (w -= lr mhat / (sqrt(vhat) + eps), which gan-dist used
// before) with eps replaced by eps / sqrt(1 - b2^t): 32x larger at t = 1, 3.2x at t = 100.
// t is the shared iteration count of G and D, from 1.

import type { AdamConstants } from '../../protocol/arena/simd.ts';
import { existingArena } from '../../protocol/arena/simd.ts';

export interface AdamHyper {
  lr: number;
  beta1: number;
  beta2: number;
  epsilon: number;
}

export const ADAM_EPSILON = 1e-8;

/**
 * One in-place Adam step on `w`, `m`, `v` from gradient `g`, for indices [from, to): the fused
 * step with a mean of one (fround(g * 1) is g, so the floats are those of a separate loop).
 */
export function adamStep(
  w: Float32Array,
  g: Float32Array,
  m: Float32Array,
  v: Float32Array,
  t: number,
  h: AdamHyper,
  from = 0,
  to = w.length,
): void {
  meanAdamStep(w, g, 1, m, v, t, h, from, to);
}

/**
 * The mean gradient and the Adam step in one pass over [from, to), every operation in float32
 * (as MATLAB's adamupdate computes on the example's single-precision dlarrays, its double
 * scalars taken as single), in the order of its expressions:
 *   g = sum * inv (the mean of the shards' gradients)
 *   m = b1 m + a1 g;  v = b2 v + a2 (g g);  w = w - lrt (m / (sqrt(v) + eps))
 * with a1 = 1 - b1, a2 = 1 - b2 and lrt = lr sqrt(1 - b2^t) / (1 - b1^t), the step's scalar,
 * worked out once in float64 and rounded to float32 (MATLAB's effective learning rate, a double).
 *
 * Arrays in the SIMD arena (the coordinator's optimizer state) go through simd.wat's kernel,
 * which does these float32 operations four lanes at a time in this order; this loop does the
 * rest, each operation rounded to float32 by Math.fround (a float64 result rounded to float32
 * is the float32 result for + - * / and sqrt, as float64 has more than twice float32's precision).
 * So the floats are the same on any path. Measured on 9.45 M parameters on this 2-core machine: 11-15 ms in wasm
 * against 83-119 ms for the earlier float64 JavaScript loop, whose three divisions and square
 * root per element bound it. The MATLAB form has one division a lane where the textbook form had
 * three: its kernel took 15.0 ms against the textbook kernel's 17.8 (medians of 15 interleaved
 * runs, load average 11).
 */
export function meanAdamStep(
  w: Float32Array,
  sum: Float32Array,
  inv: number,
  m: Float32Array,
  v: Float32Array,
  t: number,
  h: AdamHyper,
  from = 0,
  to = w.length,
): void {
  const f = Math.fround;
  const k = adamConstants(inv, t, h);
  from = existingArena()?.adam(w, sum, m, v, k, from, to) ?? from;
  const { inv: inv32, b1, b2, a1, a2, lrt, eps } = k;
  for (let i = from; i < to; i++) {
    const gi = f(sum[i] * inv32);
    const mi = f(f(b1 * m[i]) + f(a1 * gi));
    const vi = f(f(b2 * v[i]) + f(a2 * f(gi * gi)));
    m[i] = mi;
    v[i] = vi;
    w[i] = f(w[i] - f(lrt * f(mi / f(f(Math.sqrt(vi)) + eps))));
  }
}

export type { AdamConstants };

/**
 * The step's scalars for the kernels, each rounded to float32 once. The bias correction is one
 * number per step, so the per-element loops do no power: lr sqrt(1 - b2^t) / (1 - b1^t) in
 * float64, as MATLAB computes its effective learning rate from double scalars.
 */
export function adamConstants(inv: number, t: number, h: AdamHyper): AdamConstants {
  const f = Math.fround;
  return {
    inv: f(inv),
    b1: f(h.beta1),
    b2: f(h.beta2),
    a1: f(1 - h.beta1),
    a2: f(1 - h.beta2),
    lrt: f((h.lr * Math.sqrt(1 - h.beta2 ** t)) / (1 - h.beta1 ** t)),
    eps: f(h.epsilon),
  };
}
