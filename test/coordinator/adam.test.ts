import { describe, expect, it } from 'vitest';
import { adamConstants, adamStep } from '../../coordinator/optimizer/adam.ts';
import { f32Bits, HAND_GRADS, HAND_W0, matlabAdamByHand, SEED_ADAM, textbookAdam } from '../support/matlab-adam.ts';

describe('adamStep', () => {
  it("gives bitwise MATLAB adamupdate's floats, written out by hand, over three steps", () => {
    const want = matlabAdamByHand();
    const w = Float32Array.from(HAND_W0);
    const m = new Float32Array(w.length);
    const v = new Float32Array(w.length);
    // Plain arrays, outside the SIMD arena: the JavaScript loop does every element.
    for (const [k, g] of HAND_GRADS.entries()) adamStep(w, new Float32Array(g), m, v, k + 1, SEED_ADAM);
    expect(f32Bits(w)).toEqual(f32Bits(want.w));
    expect(f32Bits(m)).toEqual(f32Bits(want.m));
    expect(f32Bits(v)).toEqual(f32Bits(want.v));
    // Each step moves a weight by about lr: the comparison is not between untouched copies.
    expect(Math.abs(HAND_W0[0] - w[0])).toBeGreaterThan(2e-4);
  });

  it('adds eps to the uncorrected sqrt(v), not to the bias-corrected one of the textbook form', () => {
    const w = Float32Array.from(HAND_W0);
    const m = new Float32Array(w.length);
    const v = new Float32Array(w.length);
    adamStep(w, new Float32Array(HAND_GRADS[0]), m, v, 1, SEED_ADAM);
    // Weight 3's gradient (1e-7) puts sqrt(v) near eps: at t = 1 MATLAB's step is 0.24 lr, the
    // textbook form's 0.91 lr. On ordinary gradients the two agree to float rounding.
    const step = (HAND_W0[3] - w[3]) / SEED_ADAM.lr;
    const textbook = (HAND_W0[3] - textbookAdam([HAND_GRADS[0]])[3]) / SEED_ADAM.lr;
    expect(step).toBeCloseTo(0.2403, 3);
    expect(textbook).toBeCloseTo(0.9091, 3);
    expect(w[0]).toBeCloseTo(textbookAdam([HAND_GRADS[0]])[0], 7);
  });

  it('folds the bias correction into one float32 learning rate per step', () => {
    for (const t of [1, 2, 100, 10000]) {
      const k = adamConstants(1, t, SEED_ADAM);
      expect(k.lrt).toBe(Math.fround((2e-4 * Math.sqrt(1 - 0.999 ** t)) / (1 - 0.5 ** t)));
    }
    // sqrt(0.001) / 0.5 of lr at t = 1; the correction fades to 1 as t grows.
    expect(adamConstants(1, 1, SEED_ADAM).lrt).toBeCloseTo(2e-4 * 0.0632456, 10);
    expect(adamConstants(1, 1e5, SEED_ADAM).lrt).toBeCloseTo(2e-4, 10);
  });

  it('updates only the slice it is given', () => {
    const h = { lr: 0.1, beta1: 0.9, beta2: 0.999, epsilon: 1e-8 };
    const w = new Float32Array([1, 1, 1, 1]);
    const g = new Float32Array([1, 1, 1, 1]);
    adamStep(w, g, new Float32Array(4), new Float32Array(4), 1, h, 1, 3);
    // At t = 1 with g = 1: lr sqrt(1 - b2) / (1 - b1) * (1 - b1) / (sqrt(1 - b2) + eps), about lr.
    expect(Array.from(w)).toEqual([1, expect.closeTo(0.9, 6), expect.closeTo(0.9, 6), 1]);
  });
});
