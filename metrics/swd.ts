// Sliced Wasserstein distance between two sets of images, ProGAN's recipe (Karras et al. 2018,
// metrics/sliced_wasserstein.py), in plain JS so the coordinator can run it without tfjs.
//
//   1. Each image (RGB in [0, 255]) becomes a Laplacian pyramid down to 16x16 (64x64: levels 64,
//      32, 16; 32x32: 32, 16), with cv2.pyrDown / pyrUp's 5x5 binomial filter and mirrored edges.
//   2. Each level gives `patchesPerImage` 7x7x3 neighbourhoods per image at random positions:
//      descriptors of 147 values.
//   3. Each set's descriptors are normalised per colour channel by that set's own mean and
//      standard deviation (ProGAN's finalize_descriptors: a level compares shapes of the
//      distributions, not their offsets).
//   4. Both sets are projected on `repeats` x `directions` random unit vectors; the sorted
//      projections are compared (the 1-D Wasserstein-1 distance of each projection), averaged
//      over descriptors and directions. Reported x 1e3, as ProGAN does; the mean over levels
//      is the headline number.
//
// Everything random (positions, directions) comes from Rng(seed, ...) streams, so a result is
// a function of the images and the seed. createSwdEvaluator does the reference set's half of the
// work once, for evaluation during training.

import { Rng } from '../protocol/rng.ts';

export interface SwdOptions {
  /** Side of the square neighbourhoods (ProGAN: 7). */
  patchSize?: number;
  /** Neighbourhoods drawn per image and level (ProGAN: 128). */
  patchesPerImage?: number;
  /** Random directions per repeat (ProGAN: 128). */
  directions?: number;
  /** Repeats, each with its own directions; the result averages them (ProGAN: 4). */
  repeats?: number;
  /** The pyramid stops at the last level at least this large (ProGAN: 16). */
  minResolution?: number;
  /** The reference set's sorted projections are kept when they fit in this many bytes (else recomputed per call). */
  cacheBytes?: number;
}

export const SWD_DEFAULTS: Required<SwdOptions> = {
  patchSize: 7,
  patchesPerImage: 128,
  directions: 128,
  repeats: 4,
  minResolution: 16,
  cacheBytes: 256 * 1024 * 1024,
};

export interface SwdResult {
  /** SWD x 1e3 per pyramid level, finest first (aligned with `resolutions`). */
  levels: number[];
  /** The side of each level: [64, 32, 16] for 64x64 images. */
  resolutions: number[];
  /** The mean of `levels`. */
  mean: number;
}

/** Images per side of an evaluation: ProGAN used 16384; 128 keeps one to seconds on a CPU. */
export const DEFAULT_EVAL_COUNT = 128;
/** The seed of `gan-dist eval` and of training-time evaluation, so their numbers agree. */
export const DEFAULT_EVAL_SEED = 0;

// Rng streams of one evaluation: independent of each other and of a training run's streams.
const STREAM_REFERENCE_PATCHES = 31;
const STREAM_OTHER_PATCHES = 32;
const STREAM_DIRECTIONS = 33;
const STREAM_REAL_PICK = 34;

/**
 * Directions projected per slice of swdAsync: at 128 images x 128 patches, a slice of 16 is
 * some 40 M multiply-adds (tens of ms), so a coordinator scoring during training answers its
 * workers' gradients between slices instead of after a whole repeat (~0.4 s).
 */
export const SWD_DIRECTION_BLOCK = 16;

/** The pyramid's level sides: halving while at least `min` (ProGAN: `while res >= 16`). */
export function pyramidResolutions(size: number, min = SWD_DEFAULTS.minResolution): number[] {
  if (!Number.isInteger(size) || size < min)
    throw new RangeError(`image size ${size} is below the smallest SWD level (${min})`);
  const out: number[] = [];
  for (let r = size; r >= min; r /= 2) {
    out.push(r);
    if (r % 2 !== 0) break;
  }
  return out;
}

/** scipy.ndimage's 'mirror' edge (cv2's BORDER_REFLECT_101): d c b | a b c d | c b a. */
const mirror = (i: number, n: number) => (i < 0 ? -i : i >= n ? 2 * (n - 1) - i : i);

// cv2.pyrDown's 5x5 binomial filter, separable: [1, 4, 6, 4, 1] / 16 along each axis.
const BINOMIAL = [1 / 16, 4 / 16, 6 / 16, 4 / 16, 1 / 16];

/**
 * One channel-interleaved plane stack (count x n x n x 3) filtered with `taps` along x, then y,
 * keeping every `step`-th output row and column: step 2 is pyrDown, step 1 a plain convolution.
 */
function separable(src: Float32Array, count: number, n: number, taps: number[], step: number): Float32Array {
  const m = n / step;
  const tmp = new Float32Array(n * m * 3);
  const out = new Float32Array(count * m * m * 3);
  for (let img = 0; img < count; img++) {
    const base = img * n * n * 3;
    for (let y = 0; y < n; y++) {
      for (let x = 0; x < m; x++) {
        let r = 0,
          g = 0,
          b = 0;
        for (let k = 0; k < 5; k++) {
          const o = base + (y * n + mirror(x * step + k - 2, n)) * 3;
          const t = taps[k];
          r += t * src[o];
          g += t * src[o + 1];
          b += t * src[o + 2];
        }
        const d = (y * m + x) * 3;
        tmp[d] = r;
        tmp[d + 1] = g;
        tmp[d + 2] = b;
      }
    }
    const obase = img * m * m * 3;
    for (let y = 0; y < m; y++) {
      for (let x = 0; x < m; x++) {
        let r = 0,
          g = 0,
          b = 0;
        for (let k = 0; k < 5; k++) {
          const o = (mirror(y * step + k - 2, n) * m + x) * 3;
          const t = taps[k];
          r += t * tmp[o];
          g += t * tmp[o + 1];
          b += t * tmp[o + 2];
        }
        const d = obase + (y * m + x) * 3;
        out[d] = r;
        out[d + 1] = g;
        out[d + 2] = b;
      }
    }
  }
  return out;
}

/** cv2.pyrDown: blur, keep even rows and columns. */
export function pyrDown(images: Float32Array, count: number, n: number): Float32Array {
  if (n % 2 !== 0) throw new RangeError(`pyrDown needs an even size, got ${n}`);
  return separable(images, count, n, BINOMIAL, 2);
}

/** cv2.pyrUp: zeros between the samples, then the binomial filter times 4 (2 along each axis). */
export function pyrUp(images: Float32Array, count: number, n: number): Float32Array {
  const N = 2 * n;
  const stuffed = new Float32Array(count * N * N * 3);
  for (let img = 0; img < count; img++) {
    for (let y = 0; y < n; y++) {
      for (let x = 0; x < n; x++) {
        const s = ((img * n + y) * n + x) * 3;
        const d = ((img * N + 2 * y) * N + 2 * x) * 3;
        stuffed[d] = images[s];
        stuffed[d + 1] = images[s + 1];
        stuffed[d + 2] = images[s + 2];
      }
    }
  }
  return separable(
    stuffed,
    count,
    N,
    BINOMIAL.map((t) => 2 * t),
    1,
  );
}

/**
 * ProGAN's generate_laplacian_pyramid on count x size x size x 3 images: each level but the
 * last is the image at that scale minus its blurred-and-upsampled next level; the last is the
 * coarse image itself.
 */
export function laplacianPyramid(images: Float32Array, count: number, size: number, levels: number): Float32Array[] {
  const pyramid: Float32Array[] = [images.slice()];
  let n = size;
  for (let l = 1; l < levels; l++) {
    const down = pyrDown(pyramid[l - 1], count, n);
    const up = pyrUp(down, count, n / 2);
    const prev = pyramid[l - 1];
    for (let i = 0; i < prev.length; i++) prev[i] -= up[i];
    pyramid.push(down);
    n /= 2;
  }
  return pyramid;
}

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

/** `count` random unit vectors of `dim` components (normal draws, normalised), one per row. */
export function randomDirections(count: number, dim: number, rng: Rng): Float32Array {
  const dirs = rng.fillNormal(new Float32Array(count * dim));
  for (let d = 0; d < count; d++) {
    let s = 0;
    for (let k = 0; k < dim; k++) s += dirs[d * dim + k] ** 2;
    const inv = 1 / Math.sqrt(s);
    for (let k = 0; k < dim; k++) dirs[d * dim + k] *= inv;
  }
  return dirs;
}

/** One projection, for the rows and directions the tiled loop of sortedProjections leaves over. */
function dot(a: Float32Array, ao: number, b: Float32Array, bo: number, dim: number): number {
  let s = 0;
  for (let k = 0; k < dim; k++) s += a[ao + k] * b[bo + k];
  return s;
}

/**
 * Sorts float32 values ascending in place: a three-pass LSD radix sort on their bits flipped to
 * an unsigned order (twice as fast as the native typed-array sort on these sizes).
 */
export function sortFloat32(values: Float32Array, scratch = new Uint32Array(2 * values.length)): Float32Array {
  const n = values.length;
  const bits = new Uint32Array(values.buffer, values.byteOffset, n);
  const keys = scratch.subarray(0, n);
  const tmp = scratch.subarray(n, 2 * n);
  const c0 = new Uint32Array(2048);
  const c1 = new Uint32Array(2048);
  const c2 = new Uint32Array(1024);
  for (let i = 0; i < n; i++) {
    const x = bits[i];
    // Negative floats: all bits flipped (larger magnitude sorts first); positive: sign bit set.
    const k = x & 0x80000000 ? ~x >>> 0 : (x | 0x80000000) >>> 0;
    keys[i] = k;
    c0[k & 2047]++;
    c1[(k >>> 11) & 2047]++;
    c2[k >>> 22]++;
  }
  for (let i = 0, s0 = 0, s1 = 0; i < 2048; i++) {
    const t0 = c0[i];
    c0[i] = s0;
    s0 += t0;
    const t1 = c1[i];
    c1[i] = s1;
    s1 += t1;
  }
  for (let i = 0, s2 = 0; i < 1024; i++) {
    const t2 = c2[i];
    c2[i] = s2;
    s2 += t2;
  }
  for (let i = 0; i < n; i++) tmp[c0[keys[i] & 2047]++] = keys[i];
  for (let i = 0; i < n; i++) keys[c1[(tmp[i] >>> 11) & 2047]++] = tmp[i];
  for (let i = 0; i < n; i++) tmp[c2[keys[i] >>> 22]++] = keys[i];
  for (let i = 0; i < n; i++) {
    const k = tmp[i];
    bits[i] = k & 0x80000000 ? (k & 0x7fffffff) >>> 0 : ~k >>> 0;
  }
  return values;
}

/**
 * Every descriptor (rows x dim) projected on every direction (count x dim), each direction's
 * projections sorted: direction d's are out[d * rows .. (d + 1) * rows).
 */
export function sortedProjections(desc: Float32Array, dim: number, dirs: Float32Array): Float32Array {
  const rows = desc.length / dim;
  const count = dirs.length / dim;
  const out = new Float32Array(rows * count);
  // Tiles of two descriptors by four directions: each loaded value feeds several products, and
  // a block of descriptors stays in cache while every direction passes over it. This is the
  // hot loop of an evaluation.
  const BLOCK = 64;
  const pairs = rows - (rows % 2);
  const quads = count - (count % 4);
  for (let r0 = 0; r0 < pairs; r0 += BLOCK) {
    const r1 = Math.min(pairs, r0 + BLOCK);
    for (let d = 0; d < quads; d += 4) {
      const w0 = d * dim,
        w1 = w0 + dim,
        w2 = w1 + dim,
        w3 = w2 + dim;
      const q0 = d * rows,
        q1 = q0 + rows,
        q2 = q1 + rows,
        q3 = q2 + rows;
      for (let r = r0; r < r1; r += 2) {
        const o = r * dim,
          p = o + dim;
        let a0 = 0,
          a1 = 0,
          a2 = 0,
          a3 = 0,
          b0 = 0,
          b1 = 0,
          b2 = 0,
          b3 = 0;
        for (let k = 0; k < dim; k++) {
          const u = desc[o + k],
            v = desc[p + k];
          const x0 = dirs[w0 + k],
            x1 = dirs[w1 + k],
            x2 = dirs[w2 + k],
            x3 = dirs[w3 + k];
          a0 += u * x0;
          a1 += u * x1;
          a2 += u * x2;
          a3 += u * x3;
          b0 += v * x0;
          b1 += v * x1;
          b2 += v * x2;
          b3 += v * x3;
        }
        out[q0 + r] = a0;
        out[q1 + r] = a1;
        out[q2 + r] = a2;
        out[q3 + r] = a3;
        out[q0 + r + 1] = b0;
        out[q1 + r + 1] = b1;
        out[q2 + r + 1] = b2;
        out[q3 + r + 1] = b3;
      }
    }
  }
  for (let d = 0; d < count; d++) {
    for (let r = d < quads ? pairs : 0; r < rows; r++) out[d * rows + r] = dot(desc, r * dim, dirs, d * dim, dim);
  }
  const scratch = new Uint32Array(2 * rows);
  for (let c = 0; c < count; c++) sortFloat32(out.subarray(c * rows, (c + 1) * rows), scratch);
  return out;
}

/** Mean absolute difference of two equally long sorted-projection arrays: the sliced Wasserstein-1 estimate. */
export function sortedDistance(a: Float32Array, b: Float32Array): number {
  if (a.length !== b.length) throw new RangeError(`sorted projections differ in length (${a.length} vs ${b.length})`);
  let s = 0;
  for (let i = 0; i < a.length; i++) s += Math.abs(a[i] - b[i]);
  return s / a.length;
}

/** uint8 RGB [0, 255] as float32. */
export function uint8ToFloat(images: Uint8Array): Float32Array {
  return Float32Array.from(images);
}

/**
 * Generated images in [-1, 1] as the uint8 a saved image would hold, in float32: ProGAN scores
 * G's output after converting it to 8-bit, so both sets are quantised alike.
 */
export function generatedToFloat(images: Float32Array): Float32Array {
  const out = new Float32Array(images.length);
  for (let i = 0; i < images.length; i++) {
    const v = Math.round((images[i] + 1) * 127.5);
    out[i] = v < 0 ? 0 : Math.min(v, 255);
  }
  return out;
}

export interface SwdEvaluatorOptions extends SwdOptions {
  /** The reference set (real images): at least `count` uint8 HWC RGB images of size x size; the first `count` are used. */
  realImages: Uint8Array;
  count: number;
  size: number;
  /** Seeds patch positions and directions; the same seed gives the same numbers. */
  seed: number;
}

export interface SwdEvaluator {
  readonly count: number;
  readonly size: number;
  readonly resolutions: number[];
  /** SWD between the reference set and `count` generated images, HWC in [-1, 1]. */
  swd(generated: Float32Array): SwdResult;
  /** SWD between the reference set and `count` other uint8 images (the real-vs-real floor). */
  swdUint8(images: Uint8Array): SwdResult;
  /**
   * swd() in slices of a fraction of a second with the event loop let through between them: a
   * coordinator scoring during training keeps answering heartbeats.
   */
  swdAsync(generated: Float32Array): Promise<SwdResult>;
}

function checkInteger(name: string, v: number, min: number): void {
  if (!Number.isInteger(v) || v < min) throw new RangeError(`options.${name} must be an integer >= ${min}`);
}

/**
 * Precomputes the reference set's descriptors (and, within cacheBytes, their sorted
 * projections) once; each call then costs one set's pyramid, patches and projections.
 */
export function createSwdEvaluator(opts: SwdEvaluatorOptions): SwdEvaluator {
  const o = { ...SWD_DEFAULTS, ...opts };
  const { count, size, seed } = o;
  checkInteger('count', count, 1);
  checkInteger('size', size, 1);
  checkInteger('seed', seed, 0);
  checkInteger('patchSize', o.patchSize, 1);
  checkInteger('patchesPerImage', o.patchesPerImage, 1);
  checkInteger('directions', o.directions, 1);
  checkInteger('repeats', o.repeats, 1);
  if (o.patchSize % 2 !== 1) throw new RangeError('options.patchSize must be odd');
  const per = size * size * 3;
  if (opts.realImages.length < count * per) {
    throw new RangeError(
      `options.realImages holds ${Math.floor(opts.realImages.length / per)} images of ${size}x${size}x3; count is ${count}`,
    );
  }
  const resolutions = pyramidResolutions(size, o.minResolution);
  for (const r of resolutions)
    if (r < o.patchSize) throw new RangeError(`a ${o.patchSize}x${o.patchSize} patch does not fit the ${r}x${r} level`);
  const dim = 3 * o.patchSize * o.patchSize;
  const dirRng = new Rng(seed, STREAM_DIRECTIONS);
  // One direction set per level and repeat, drawn once: every call projects on the same ones.
  const dirs = resolutions.map(() =>
    Array.from({ length: o.repeats }, () => randomDirections(o.directions, dim, dirRng)),
  );

  const descriptorsOf = (images: Float32Array, stream: number): Float32Array[] => {
    const rng = new Rng(seed, stream);
    return laplacianPyramid(images, count, size, resolutions.length).map((level, l) =>
      normalizeDescriptors(
        patchDescriptors(level, count, resolutions[l], o.patchesPerImage, o.patchSize, rng),
        o.patchSize,
      ),
    );
  };

  const reference = descriptorsOf(uint8ToFloat(opts.realImages.subarray(0, count * per)), STREAM_REFERENCE_PATCHES);
  const rows = count * o.patchesPerImage;
  const cacheNeeds = resolutions.length * o.repeats * o.directions * rows * 4;
  const cached =
    cacheNeeds <= o.cacheBytes
      ? reference.map((desc, l) => dirs[l].map((d) => sortedProjections(desc, dim, d)))
      : undefined;

  // One (level, repeat, block of directions) at a time, so the async form can yield between
  // them. Each direction's sorted projections are compared on their own, so a block's mean
  // distance weighted by its directions sums to the mean over all of them.
  function* work(images: Float32Array): Generator<void, SwdResult> {
    const other = descriptorsOf(images, STREAM_OTHER_PATCHES);
    const levels: number[] = [];
    for (let l = 0; l < resolutions.length; l++) {
      let total = 0;
      for (let r = 0; r < o.repeats; r++) {
        for (let d0 = 0; d0 < o.directions; d0 += SWD_DIRECTION_BLOCK) {
          yield;
          const d1 = Math.min(o.directions, d0 + SWD_DIRECTION_BLOCK);
          const block = dirs[l][r].subarray(d0 * dim, d1 * dim);
          const a = cached ? cached[l][r].subarray(d0 * rows, d1 * rows) : sortedProjections(reference[l], dim, block);
          total += sortedDistance(a, sortedProjections(other[l], dim, block)) * (d1 - d0);
        }
      }
      levels.push((total / (o.repeats * o.directions)) * 1e3);
    }
    return { levels, resolutions, mean: levels.reduce((s, v) => s + v, 0) / levels.length };
  }
  const runSync = (it: Generator<void, SwdResult>): SwdResult => {
    for (;;) {
      const step = it.next();
      if (step.done) return step.value;
    }
  };

  const checkLength = (n: number, what: string) => {
    if (n !== count * per)
      throw new RangeError(`${what} has ${n} values; ${count} images of ${size}x${size}x3 need ${count * per}`);
  };
  return {
    count,
    size,
    resolutions,
    swd(generated) {
      checkLength(generated.length, 'generated');
      return runSync(work(generatedToFloat(generated)));
    },
    swdUint8(images) {
      checkLength(images.length, 'images');
      return runSync(work(uint8ToFloat(images)));
    },
    async swdAsync(generated) {
      checkLength(generated.length, 'generated');
      const it = work(generatedToFloat(generated));
      for (;;) {
        const step = it.next();
        if (step.done) return step.value;
        await new Promise<void>((resolve) => setImmediate(resolve));
      }
    },
  };
}

/** What pickRealImages needs of a dataset (data/'s Dataset is one). */
export interface ImageSource {
  readonly size: number;
  readonly imageSize: number;
  image(i: number): Uint8Array;
}

/**
 * `sets` disjoint samples of `count` images each, drawn without replacement by a seeded
 * shuffle: the reference set, and the other real set of the real-vs-real floor.
 */
export function pickRealImages(source: ImageSource, count: number, seed: number, sets = 1): Uint8Array[] {
  checkInteger('count', count, 1);
  checkInteger('sets', sets, 1);
  const need = count * sets;
  if (source.size < need)
    throw new RangeError(`${sets} disjoint sets of ${count} images need ${need} images; the data has ${source.size}`);
  const order = Uint32Array.from({ length: source.size }, (_, i) => i);
  const rng = new Rng(seed, STREAM_REAL_PICK);
  // A partial Fisher-Yates shuffle: the first `need` places are a uniform draw without replacement.
  for (let i = 0; i < need; i++) {
    const j = i + Math.floor(rng.uniform() * (source.size - i));
    [order[i], order[j]] = [order[j], order[i]];
  }
  const per = source.imageSize * source.imageSize * 3;
  return Array.from({ length: sets }, (_, s) => {
    const out = new Uint8Array(count * per);
    for (let k = 0; k < count; k++) out.set(source.image(order[s * count + k]), k * per);
    return out;
  });
}

/**
 * The latent vectors an evaluation scores G on: N(0, 1) draws from Rng(seed), the very ones
 * `gan-dist generate --seed S --count N` uses, so the images scored can be looked at.
 */
export function evalLatents(count: number, latent: number, seed: number): Float32Array {
  return new Rng(seed).fillNormal(new Float32Array(count * latent));
}

export interface RealSets {
  evaluator: SwdEvaluator;
  /** A second real set, disjoint from the evaluator's: SWD against it is the floor. */
  holdout: Uint8Array;
}

/** 2 x count real images of `source` drawn by `seed`: the evaluator's reference set (precomputed) and the floor's set. */
export function realSets(source: ImageSource, count: number, seed: number, swd: SwdOptions = {}): RealSets {
  const [reference, holdout] = pickRealImages(source, count, seed, 2);
  return {
    evaluator: createSwdEvaluator({ ...swd, realImages: reference, count, size: source.imageSize, seed }),
    holdout,
  };
}

export interface RunEvaluation {
  evaluator: SwdEvaluator;
  /** The real-vs-real floor of this sample, computed once. */
  floor: SwdResult;
  /** The fixed latents G is scored on at every evaluation (evalLatents(count, latent, seed)). */
  z: Float32Array;
  count: number;
  seed: number;
}

/**
 * What training-time evaluation needs, prepared once before the run starts (it takes seconds:
 * the reference set's projections and the floor). With the same count and seed, each score
 * equals `gan-dist eval --checkpoint <that iteration> --count N --seed S` on the same data.
 * The count is lowered to half the data when the data has fewer than 2 x count images.
 */
export function prepareRunEvaluation(
  source: ImageSource,
  latent: number,
  count = DEFAULT_EVAL_COUNT,
  seed = DEFAULT_EVAL_SEED,
): RunEvaluation {
  const n = Math.min(count, Math.floor(source.size / 2));
  if (n < 1) throw new RangeError(`SWD evaluation needs at least 2 real images; the data has ${source.size}`);
  const { evaluator, holdout } = realSets(source, n, seed);
  return { evaluator, floor: evaluator.swdUint8(holdout), z: evalLatents(n, latent, seed), count: n, seed };
}

const round3 = (x: number) => Math.round(x * 1000) / 1000;

/** The fields of an `eval` log event: `{ iteration, swd, swdLevels, resolutions, ... }`, rounded for the log. */
export function evalEventFields(
  iteration: number,
  r: SwdResult,
  extra: Record<string, unknown> = {},
): Record<string, unknown> {
  return { iteration, swd: round3(r.mean), swdLevels: r.levels.map(round3), resolutions: r.resolutions, ...extra };
}
