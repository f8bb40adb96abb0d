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
// work once, for evaluation during training. Steps 1 to 4 are pyramid.ts, descriptors.ts and
// projections.ts; this file composes them, and draws the real sets an evaluation compares.

import { Rng } from '../protocol/rng.ts';
import { normalizeDescriptors, patchDescriptors } from './descriptors.ts';
import { randomDirections, sortedDistance, sortedProjections } from './projections.ts';
import { laplacianPyramid } from './pyramid.ts';

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
