// MATLAB's adamupdate written out by hand, statement by statement, for the Adam tests of every
// path (the JavaScript loop, the SIMD kernel, the optimizer's pool threads) to match bitwise; and
// checkpoints made to look as gan-dist wrote them before it recorded the Adam form.

import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { MANIFEST, sealManifest, type CheckpointManifest } from '../../protocol/run/checkpoint-manifest.ts';

/** The seed's Adam settings. */
export const SEED_ADAM = { lr: 2e-4, beta1: 0.5, beta2: 0.999, epsilon: 1e-8 };

/**
 * Three steps' gradients over 8 weights (two SIMD vectors, so the kernel does every element).
 * Weight 3's gradients are about 1e-7, where sqrt(v) is near eps and the two forms part: the
 * textbook form (eps on the bias-corrected sqrt(v)) steps it by 0.91 lr at t = 1, MATLAB's by 0.24 lr.
 */
export const HAND_W0 = [0.5, -1, 2, 0.03, -0.25, 1e-3, 0, 7];
export const HAND_GRADS = [
  [0.1, -0.2, 3, 1e-7, 0.015, -4e-5, 0, -2.5],
  [0.3, 0.0, -1, 1.2e-7, -0.02, 6e-5, 1e-3, 0.5],
  [-0.5, 0.4, 0.25, -0.8e-7, 0.01, -2e-5, -1e-3, 1.75],
];

export interface HandAdam {
  w: Float32Array;
  m: Float32Array;
  v: Float32Array;
}

/**
 * MATLAB's adamupdate on single-precision arrays (the example's dlarrays), its scalars doubles:
 *
 *   effectiveLearnRate = learnRate * sqrt(1 - beta2^t) / (1 - beta1^t)     % double
 *   avg_g   = beta1 .* avg_g   + (1 - beta1) .* g                            % single
 *   avg_gsq = beta2 .* avg_gsq + (1 - beta2) .* g.^2
 *   p = p - effectiveLearnRate .* (avg_g ./ (sqrt(avg_gsq) + epsilon))
 *
 * A double scalar meets a single array as a single (MATLAB's mixed-class rule), and each single
 * operation rounds to float32: here Math.fround after every operation, in MATLAB's order.
 */
export function matlabAdamByHand(
  steps = HAND_GRADS,
  w0 = HAND_W0,
  h: { lr: number; beta1: number; beta2: number; epsilon: number } = SEED_ADAM,
): HandAdam {
  const f = Math.fround;
  const w = Float32Array.from(w0);
  const m = new Float32Array(w.length);
  const v = new Float32Array(w.length);
  steps.forEach((grad, k) => {
    const t = k + 1;
    const effectiveLearnRate = f((h.lr * Math.sqrt(1 - h.beta2 ** t)) / (1 - h.beta1 ** t));
    for (let i = 0; i < w.length; i++) {
      const g = f(grad[i]);
      m[i] = f(f(f(h.beta1) * m[i]) + f(f(1 - h.beta1) * g));
      const gsq = f(g * g);
      v[i] = f(f(f(h.beta2) * v[i]) + f(f(1 - h.beta2) * gsq));
      const denom = f(f(Math.sqrt(v[i])) + f(h.epsilon));
      w[i] = f(w[i] - f(effectiveLearnRate * f(m[i] / denom)));
    }
  });
  return { w, m, v };
}

/** The form gan-dist used before: w -= lr mhat / (sqrt(vhat) + eps), in float64, to tell the forms apart. */
export function textbookAdam(steps = HAND_GRADS, w0 = HAND_W0, h = SEED_ADAM): number[] {
  const w = [...w0];
  const m = w.map(() => 0);
  const v = w.map(() => 0);
  steps.forEach((grad, k) => {
    const t = k + 1;
    for (let i = 0; i < w.length; i++) {
      m[i] = h.beta1 * m[i] + (1 - h.beta1) * grad[i];
      v[i] = h.beta2 * v[i] + (1 - h.beta2) * grad[i] ** 2;
      w[i] -= (h.lr * (m[i] / (1 - h.beta1 ** t))) / (Math.sqrt(v[i] / (1 - h.beta2 ** t)) + h.epsilon);
    }
  });
  return w;
}

/** The float32 bits of an array, for bitwise comparison (a -0 or a NaN shows). */
export const f32Bits = (a: Float32Array): number[] => Array.from(new Uint32Array(a.buffer, a.byteOffset, a.length));

/**
 * Rewrites a checkpoint's manifest as gan-dist wrote it before the MATLAB form: no `adam` field,
 * sealed again, so it stays intact.
 */
export function asTextbookCheckpoint(dir: string): void {
  const path = join(dir, MANIFEST);
  const { manifestSha256: _, adam, ...rest } = JSON.parse(readFileSync(path, 'utf8')) as CheckpointManifest;
  if (adam === undefined) throw new Error(`${dir} has no adam field to remove`);
  writeFileSync(path, sealManifest(rest));
}
