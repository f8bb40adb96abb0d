import { describe, expect, it } from 'vitest';
import { Rng } from '../../protocol/rng.ts';
import {
  createSwdEvaluator,
  SWD_DIRECTION_BLOCK,
  evalLatents,
  pickRealImages,
  prepareRunEvaluation,
  pyramidResolutions,
} from '../../metrics/swd.ts';
import { laplacianPyramid, pyrDown, pyrUp } from '../../metrics/pyramid.ts';
import { normalizeDescriptors, patchDescriptors } from '../../metrics/descriptors.ts';
import { randomDirections, sortedProjections, sortFloat32 } from '../../metrics/projections.ts';

const randomImages = (count: number, size: number, seed: number, lo = 0, hi = 256) => {
  const rng = new Rng(seed);
  return Float32Array.from({ length: count * size * size * 3 }, () => Math.floor(lo + rng.uniform() * (hi - lo)));
};

/**
 * Pictures with structure at every scale: a few discs of random colour on a gradient.
 * Distinct seeds give distinct images of one family, as two halves of a real data set are.
 */
function blobImages(count: number, size: number, seed: number): Uint8Array {
  const rng = new Rng(seed, 7);
  const out = new Uint8Array(count * size * size * 3);
  for (let i = 0; i < count; i++) {
    const blobs = Array.from({ length: 4 }, () => ({
      x: rng.uniform() * size,
      y: rng.uniform() * size,
      r: 2 + rng.uniform() * size * 0.3,
      c: [20 + rng.uniform() * 180, 20 + rng.uniform() * 180, 20 + rng.uniform() * 180],
    }));
    for (let y = 0; y < size; y++) {
      for (let x = 0; x < size; x++) {
        const px = [40 + (160 * y) / size, 90, 200 - (120 * x) / size];
        for (const b of blobs) {
          // Hard-edged discs: detail at the finest level, which a blur takes away.
          const w = (x - b.x) ** 2 + (y - b.y) ** 2 < b.r * b.r ? 1 : 0;
          for (let c = 0; c < 3; c++) px[c] = px[c] * (1 - w) + b.c[c] * w;
        }
        for (let c = 0; c < 3; c++) out[((i * size + y) * size + x) * 3 + c] = Math.round(px[c]);
      }
    }
  }
  return out;
}

/** A 5x5 box blur with clamped edges. */
function boxBlur(images: Uint8Array, count: number, size: number): Uint8Array {
  const out = new Uint8Array(images.length);
  const at = (i: number, y: number, x: number, c: number) =>
    images[((i * size + Math.min(size - 1, Math.max(0, y))) * size + Math.min(size - 1, Math.max(0, x))) * 3 + c];
  for (let i = 0; i < count; i++) {
    for (let y = 0; y < size; y++) {
      for (let x = 0; x < size; x++) {
        for (let c = 0; c < 3; c++) {
          let s = 0;
          for (let dy = -2; dy <= 2; dy++) for (let dx = -2; dx <= 2; dx++) s += at(i, y + dy, x + dx, c);
          out[((i * size + y) * size + x) * 3 + c] = Math.round(s / 25);
        }
      }
    }
  }
  return out;
}

/** The 5x5 binomial filter with scipy's 'mirror' edges, evaluated directly at one output pixel. */
function naivePyrDownAt(img: Float32Array, n: number, y: number, x: number, c: number): number {
  const g = [1, 4, 6, 4, 1];
  const m = (i: number) => (i < 0 ? -i : i >= n ? 2 * (n - 1) - i : i);
  let s = 0;
  for (let j = 0; j < 5; j++)
    for (let k = 0; k < 5; k++) s += g[j] * g[k] * img[(m(2 * y + j - 2) * n + m(2 * x + k - 2)) * 3 + c];
  return s / 256;
}

describe('Laplacian pyramid', () => {
  it('halves down to 16x16, as ProGAN: 64 -> 64, 32, 16; 32 -> 32, 16', () => {
    expect(pyramidResolutions(64)).toEqual([64, 32, 16]);
    expect(pyramidResolutions(32)).toEqual([32, 16]);
    expect(pyramidResolutions(16)).toEqual([16]);
    expect(() => pyramidResolutions(8)).toThrow(/below the smallest SWD level/);
  });

  it('pyrDown is cv2.pyrDown: the 5x5 binomial filter with mirrored edges at even pixels', () => {
    const n = 8;
    const img = randomImages(1, n, 3);
    const down = pyrDown(img, 1, n);
    for (const [y, x] of [
      [0, 0],
      [0, 3],
      [2, 1],
      [3, 3],
      [1, 2],
    ]) {
      for (let c = 0; c < 3; c++) expect(down[(y * 4 + x) * 3 + c]).toBeCloseTo(naivePyrDownAt(img, n, y, x, c), 3);
    }
  });

  it('keeps a flat image flat at every scale, and its detail levels zero', () => {
    const img = new Float32Array(2 * 32 * 32 * 3).fill(77);
    expect(pyrUp(pyrDown(img, 2, 32), 2, 16).every((v) => Math.abs(v - 77) < 1e-3)).toBe(true);
    const [fine, coarse] = laplacianPyramid(img, 2, 32, 2);
    expect(fine.every((v) => Math.abs(v) < 1e-3)).toBe(true);
    expect(coarse.every((v) => Math.abs(v - 77) < 1e-3)).toBe(true);
  });

  it('collapses back to the image: each level plus the upsampled coarser one', () => {
    const img = randomImages(2, 64, 5);
    const levels = laplacianPyramid(img, 2, 64, 3);
    expect(levels.map((l) => l.length)).toEqual([2 * 64 * 64 * 3, 2 * 32 * 32 * 3, 2 * 16 * 16 * 3]);
    let rebuilt = levels[2];
    for (const [l, n] of [
      [1, 16],
      [0, 32],
    ] as const) {
      const up = pyrUp(rebuilt, 2, n);
      rebuilt = levels[l].map((v, i) => v + up[i]);
    }
    let worst = 0;
    for (let i = 0; i < img.length; i++) worst = Math.max(worst, Math.abs(rebuilt[i] - img[i]));
    expect(worst).toBeLessThan(1e-3);
  });
});

describe('descriptors and projections', () => {
  it('cuts 7x7x3 neighbourhoods that lie inside the level, laid out channel, row, column', () => {
    const n = 16;
    // Each pixel holds its own coordinates, so a descriptor says where it was cut.
    const level = new Float32Array(n * n * 3);
    for (let y = 0; y < n; y++) for (let x = 0; x < n; x++) level.set([y, x, 1000 + y * n + x], (y * n + x) * 3);
    const desc = patchDescriptors(level, 1, n, 50, 7, new Rng(1));
    expect(desc.length).toBe(50 * 147);
    for (let i = 0; i < 50; i++) {
      const d = desc.subarray(i * 147, (i + 1) * 147);
      const y0 = d[0];
      const x0 = d[49];
      expect(y0).toBeGreaterThanOrEqual(0);
      expect(y0 + 6).toBeLessThan(n);
      expect(x0 + 6).toBeLessThan(n);
      // channel 0 row 3 col 5: y0 + 3; channel 1 row 2 col 6: x0 + 6; channel 2 row 6 col 6.
      expect([d[3 * 7 + 5], d[49 + 2 * 7 + 6], d[98 + 48]]).toEqual([y0 + 3, x0 + 6, 1000 + (y0 + 6) * n + x0 + 6]);
    }
  });

  it('normalises each colour channel of a set to mean 0 and standard deviation 1', () => {
    const rng = new Rng(2);
    // Channel c: offset 50c, spread 1 + c.
    const desc = Float32Array.from({ length: 300 * 147 }, (_, i) => {
      const c = Math.floor(i / 49) % 3;
      return 50 * c + rng.uniform() * (1 + c);
    });
    normalizeDescriptors(desc, 7);
    for (let c = 0; c < 3; c++) {
      let s = 0;
      let q = 0;
      for (let r = 0; r < 300; r++)
        for (let k = 0; k < 49; k++) {
          const v = desc[r * 147 + c * 49 + k];
          s += v;
          q += v * v;
        }
      expect(s / (300 * 49)).toBeCloseTo(0, 5);
      expect(Math.sqrt(q / (300 * 49))).toBeCloseTo(1, 4);
    }
  });

  it('sorts float32 values as the native sort does, negatives, zeros and extremes included', () => {
    const rng = new Rng(4);
    const a = rng
      .fillNormal(new Float32Array(5001))
      .map((v, i) => (i % 97 === 0 ? 0 : i % 101 === 0 ? v * 1e30 : v * 1e-3));
    expect(sortFloat32(a.slice())).toEqual(a.slice().sort());
  });

  it('projects on unit directions: each sorted column is the sorted dot products', () => {
    const rng = new Rng(5);
    const dim = 147;
    const desc = rng.fillNormal(new Float32Array(9 * dim)); // odd rows: the tiled loop's remainder too
    const dirs = randomDirections(6, dim, rng); // not a multiple of 4 either
    for (let d = 0; d < 6; d++)
      expect(dirs.subarray(d * dim, (d + 1) * dim).reduce((s, v) => s + v * v, 0)).toBeCloseTo(1, 5);
    const proj = sortedProjections(desc, dim, dirs);
    for (let d = 0; d < 6; d++) {
      const expected = Float32Array.from({ length: 9 }, (_, r) => {
        let s = 0;
        for (let k = 0; k < dim; k++) s += desc[r * dim + k] * dirs[d * dim + k];
        return s;
      }).sort();
      for (let r = 0; r < 9; r++) expect(proj[d * 9 + r]).toBeCloseTo(expected[r], 4);
    }
  });
});

describe('SWD evaluator', () => {
  const size = 32;
  const count = 48;
  const fast = { directions: 32, repeats: 2, patchesPerImage: 64 };
  const toGenerated = (u8: Uint8Array) => Float32Array.from(u8, (v) => v / 127.5 - 1);

  it('is a function of the images and the seed: the same twice, sync and async alike', async () => {
    const real = blobImages(count, size, 1);
    const other = blobImages(count, size, 2);
    const a = createSwdEvaluator({ realImages: real, count, size, seed: 3, ...fast });
    const b = createSwdEvaluator({ realImages: real, count, size, seed: 3, ...fast });
    const r = a.swd(toGenerated(other));
    expect(r.resolutions).toEqual([32, 16]);
    expect(r.levels).toHaveLength(2);
    expect(r.mean).toBeCloseTo((r.levels[0] + r.levels[1]) / 2, 10);
    expect(b.swd(toGenerated(other))).toEqual(r);
    expect(await a.swdAsync(toGenerated(other))).toEqual(r);
    expect(a.swdUint8(other)).toEqual(r);
    expect(
      createSwdEvaluator({ realImages: real, count, size, seed: 4, ...fast }).swd(toGenerated(other)).mean,
    ).not.toBe(r.mean);
  });

  it('swdAsync lets the event loop through after every block of directions, not only between repeats', async () => {
    const real = blobImages(count, size, 1);
    const ev = createSwdEvaluator({
      realImages: real,
      count,
      size,
      seed: 3,
      ...fast,
      directions: 4 * SWD_DIRECTION_BLOCK,
    });
    let turns = 0;
    let done = false;
    const tick = () => {
      if (done) return;
      turns++;
      setImmediate(tick);
    };
    setImmediate(tick);
    await ev.swdAsync(toGenerated(blobImages(count, size, 2)));
    done = true;
    // 2 levels x 2 repeats x 4 blocks.
    expect(turns).toBeGreaterThanOrEqual(2 * fast.repeats * 4 - 1);
  });

  it('sees a set of its own family as near, noise as far, and a blurred copy in between', () => {
    const real = blobImages(count, size, 1);
    const ev = createSwdEvaluator({ realImages: real, count, size, seed: 0, ...fast });
    const near = ev.swdUint8(blobImages(count, size, 2)).mean;
    const noise = ev.swdUint8(Uint8Array.from(randomImages(count, size, 6))).mean;
    const blurred = ev.swdUint8(boxBlur(blobImages(count, size, 2), count, size));
    expect(near).toBeLessThan(noise / 3);
    expect(blurred.mean).toBeGreaterThan(1.3 * near);
    expect(blurred.mean).toBeLessThan(noise);
  });

  it("ignores a uniform brightness offset, as ProGAN's per-set normalisation does", () => {
    const real = blobImages(count, size, 1);
    const ev = createSwdEvaluator({ realImages: real, count, size, seed: 0, ...fast });
    const same = ev.swdUint8(real);
    // Disc images stay within [20, 200], so +30 neither clips nor changes anything but the mean.
    const brighter = ev.swdUint8(real.map((v) => v + 30));
    expect(brighter.mean).toBeCloseTo(same.mean, 2);
  });

  it('names the sizes it needs when given the wrong ones', () => {
    const real = blobImages(4, size, 1);
    expect(() => createSwdEvaluator({ realImages: real, count: 5, size, seed: 0 })).toThrow(
      /holds 4 images of 32x32x3; count is 5/,
    );
    const ev = createSwdEvaluator({ realImages: real, count: 4, size, seed: 0, ...fast });
    expect(() => ev.swd(new Float32Array(3 * size * size * 3))).toThrow(
      /generated has 9216 values; 4 images of 32x32x3 need 12288/,
    );
    expect(() => createSwdEvaluator({ realImages: real, count: 4, size: 8, seed: 0 })).toThrow(
      /below the smallest SWD level/,
    );
  });
});

describe('picking real images', () => {
  const source = { size: 10, imageSize: 2, image: (i: number) => new Uint8Array(12).fill(i) };

  it('draws disjoint sets without replacement, reproducibly for a seed', () => {
    const [a, b] = pickRealImages(source, 4, 1, 2);
    const ids = (u: Uint8Array) => Array.from({ length: 4 }, (_, k) => u[k * 12]);
    const all = [...ids(a), ...ids(b)];
    expect(new Set(all).size).toBe(8);
    expect(pickRealImages(source, 4, 1, 2).map(ids)).toEqual([ids(a), ids(b)]);
    expect(pickRealImages(source, 4, 2, 2).map(ids)).not.toEqual([ids(a), ids(b)]);
  });

  it('refuses more images than the source holds', () => {
    expect(() => pickRealImages(source, 6, 0, 2)).toThrow(
      /2 disjoint sets of 6 images need 12 images; the data has 10/,
    );
  });

  it('prepares a run evaluation on half the data at most when the data is small', () => {
    const small = { size: 10, imageSize: 16, image: (i: number) => new Uint8Array(16 * 16 * 3).fill(20 * i) };
    const p = prepareRunEvaluation(small, 100, 128, 0);
    expect([p.count, p.evaluator.count, p.z.length]).toEqual([5, 5, 500]);
    expect(p.floor.resolutions).toEqual([16]);
  });

  it('draws the latents `generate --seed` draws', () => {
    expect(evalLatents(3, 100, 11)).toEqual(new Rng(11).fillNormal(new Float32Array(300)));
  });
});
