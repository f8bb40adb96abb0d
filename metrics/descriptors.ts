// Patch descriptors of one pyramid level: random 7x7x3 neighbourhoods per image, normalised per
// colour channel by their set's own statistics. Steps 2 and 3 of the SWD recipe (swd.ts).

import type { Rng } from '../protocol/rng.ts';

/**
 * `perImage` patch x patch x 3 neighbourhoods of each image of one level (count x n x n x 3),
 * centres uniform over the positions where the patch fits; one descriptor per row, laid out
 * channel, row, column as ProGAN's.
 */
export function patchDescriptors(
  level: Float32Array,
  count: number,
  n: number,
  perImage: number,
  patch: number,
  rng: Rng,
): Float32Array {
  const h = Math.floor(patch / 2);
  const span = n - 2 * h;
  if (span < 1) throw new RangeError(`a ${patch}x${patch} patch does not fit a ${n}x${n} level`);
  const rows = count * perImage;
  // Positions first, x then y for every row, as ProGAN draws them.
  const xs = new Int32Array(rows);
  const ys = new Int32Array(rows);
  for (let i = 0; i < rows; i++) xs[i] = h + Math.floor(rng.uniform() * span);
  for (let i = 0; i < rows; i++) ys[i] = h + Math.floor(rng.uniform() * span);
  const dim = 3 * patch * patch;
  const out = new Float32Array(rows * dim);
  for (let i = 0; i < rows; i++) {
    const img = Math.floor(i / perImage);
    const o = i * dim;
    for (let c = 0; c < 3; c++) {
      for (let dy = 0; dy < patch; dy++) {
        const rowBase = ((img * n + ys[i] + dy - h) * n + xs[i] - h) * 3 + c;
        const d = o + (c * patch + dy) * patch;
        for (let dx = 0; dx < patch; dx++) out[d + dx] = level[rowBase + dx * 3];
      }
    }
  }
  return out;
}

/** ProGAN's finalize_descriptors, in place: per channel, subtract the set's mean and divide by its standard deviation. */
export function normalizeDescriptors(desc: Float32Array, patch: number): Float32Array {
  const per = patch * patch;
  const dim = 3 * per;
  const rows = desc.length / dim;
  for (let c = 0; c < 3; c++) {
    let sum = 0;
    let sumSq = 0;
    for (let i = 0; i < rows; i++) {
      const o = i * dim + c * per;
      for (let k = 0; k < per; k++) {
        const v = desc[o + k];
        sum += v;
        sumSq += v * v;
      }
    }
    const n = rows * per;
    const mean = sum / n;
    // A flat channel (a constant image set) has no spread to divide by: leave it centred.
    const std = Math.sqrt(Math.max(0, sumSq / n - mean * mean));
    const inv = std > 1e-8 ? 1 / std : 1;
    for (let i = 0; i < rows; i++) {
      const o = i * dim + c * per;
      for (let k = 0; k < per; k++) desc[o + k] = (desc[o + k] - mean) * inv;
    }
  }
  return desc;
}
