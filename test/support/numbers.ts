// Reproducible arrays and the error measures the kernel and training tests share.

import type { TrainConfig } from '../../protocol/config.ts';
import { layersOf, type NamedArrays } from '../../protocol/model/architecture.ts';

/** n floats in [-1, 1) from a small LCG: the same numbers on every backend and machine. */
export function random(n: number, seed: number): Float32Array {
  const a = new Float32Array(n);
  let s = seed >>> 0;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    a[i] = s / 2 ** 31 - 1;
  }
  return a;
}

/** max |a - b| / max |b| (b the reference; its length decides). */
export function relErr(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let err = 0;
  let ref = 0;
  for (let i = 0; i < b.length; i++) {
    err = Math.max(err, Math.abs(a[i] - b[i]));
    ref = Math.max(ref, Math.abs(b[i]));
  }
  return err / (ref || 1);
}

/**
 * The biases right before a BatchNorm, and that BatchNorm's running mean: the normalisation takes
 * the bias out again, so its gradient is zero up to rounding, and Adam turns that noise into steps
 * of about lr whatever its size. They are compared by an absolute bound instead.
 */
export function bnFedNames(config: TrainConfig): Set<string> {
  const out = new Set<string>();
  for (const net of ['G', 'D'] as const) {
    const layers = layersOf(net, config);
    layers.forEach((l, i) => {
      const next = layers[i + 1];
      if ((l.kind === 'conv' || l.kind === 'tconv') && next?.kind === 'bn') {
        out.add(`${net}/${l.name}/b`);
        out.add(`${net}/${next.name}/mean`);
      }
    });
  }
  return out;
}

/** Per network, the largest |difference| over its weights relative to its largest |weight|. */
export function compareWeights(a: NamedArrays, b: NamedArrays, loose: Set<string>) {
  const worst = { G: 0, D: 0, looseAbs: 0 };
  const largest = { G: 0, D: 0 };
  for (const [name, w] of Object.entries(a)) {
    const net = name.startsWith('G/') ? 'G' : 'D';
    for (let i = 0; i < w.length; i++) largest[net] = Math.max(largest[net], Math.abs(w[i]));
  }
  for (const [name, w] of Object.entries(a)) {
    const net = name.startsWith('G/') ? 'G' : 'D';
    const o = b[name];
    let d = 0;
    for (let i = 0; i < w.length; i++) d = Math.max(d, Math.abs(w[i] - o[i]));
    if (loose.has(name)) worst.looseAbs = Math.max(worst.looseAbs, d);
    else worst[net] = Math.max(worst[net], d / largest[net]);
  }
  return worst;
}

/**
 * A coordinator's weights, copied: after dispose() its arrays are views of arena memory that the
 * next coordinator reuses, so two runs compared through them would compare one with itself.
 */
export function copyWeights(params: NamedArrays): NamedArrays {
  return Object.fromEntries(Object.entries(params).map(([k, v]) => [k, v.slice()]));
}
