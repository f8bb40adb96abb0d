import { describe, expect, it } from 'vitest';
import { adamStep } from '../../coordinator/optimizer/adam.ts';

describe('adamStep', () => {
  it('matches a hand computation of MATLAB adamupdate over three steps', () => {
    const h = { lr: 2e-4, beta1: 0.5, beta2: 0.999, epsilon: 1e-8 };
    const w = new Float32Array([0.5, -1, 2]);
    const m = new Float32Array(3);
    const v = new Float32Array(3);
    const grads = [
      [0.1, -0.2, 3],
      [0.3, 0.0, -1],
      [-0.5, 0.4, 0.25],
    ];
    // Reference in float64, written out term by term from MATLAB's documentation.
    const rw = [0.5, -1, 2];
    const rm = [0, 0, 0];
    const rv = [0, 0, 0];
    grads.forEach((g, k) => {
      const t = k + 1;
      for (let i = 0; i < 3; i++) {
        rm[i] = 0.5 * rm[i] + 0.5 * g[i];
        rv[i] = 0.999 * rv[i] + 0.001 * g[i] * g[i];
        const mhat = rm[i] / (1 - 0.5 ** t);
        const vhat = rv[i] / (1 - 0.999 ** t);
        rw[i] = rw[i] - (2e-4 * mhat) / (Math.sqrt(vhat) + 1e-8);
      }
      adamStep(w, new Float32Array(g), m, v, t, h);
    });
    for (let i = 0; i < 3; i++) {
      expect(w[i]).toBeCloseTo(rw[i], 6);
      expect(m[i]).toBeCloseTo(rm[i], 6);
      expect(v[i]).toBeCloseTo(rv[i], 8);
    }
    // Each step moves a weight by about lr, far above the 5e-7 tolerance: the test sees a wrong step.
    expect(Math.abs(0.5 - w[0])).toBeGreaterThan(2e-4);
  });

  it('updates only the slice it is given', () => {
    const h = { lr: 0.1, beta1: 0.9, beta2: 0.999, epsilon: 1e-8 };
    const w = new Float32Array([1, 1, 1, 1]);
    const g = new Float32Array([1, 1, 1, 1]);
    adamStep(w, g, new Float32Array(4), new Float32Array(4), 1, h, 1, 3);
    expect(Array.from(w)).toEqual([1, expect.closeTo(0.9, 6), expect.closeTo(0.9, 6), 1]);
  });
});
