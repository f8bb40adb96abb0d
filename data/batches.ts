// Mini-batches for training: a seeded shuffle per epoch, a random left-right flip per image drawn
// with the batch, the partial last batch dropped, and a state that restores the stream exactly.

import { GanDistError } from '../protocol/errors.ts';
import { Random, type RandomState } from '../protocol/random.ts';
import type { ImageStore } from './store.ts';

export interface BatchIteratorOptions {
  /** Images per batch (miniBatchSize). */
  batchSize: number;
  /** Keys both the per-epoch order and the flips. */
  seed: number;
  /** Chance that an image is mirrored left-right; 0.5 by default. */
  flipProbability?: number;
  /** A value from `state()`, e.g. out of a checkpoint: continue exactly where that iterator was. */
  state?: IteratorState;
}

/** JSON-serialisable position of an iterator: store it in a checkpoint. */
export interface IteratorState {
  version: 1;
  seed: number;
  batchSize: number;
  flipProbability: number;
  datasetSize: number;
  /** Epoch of the next batch, from 1. */
  epoch: number;
  /** Batches already drawn in that epoch. */
  position: number;
  /** The flip generator, as it stands before the next batch. */
  flipRng: RandomState;
}

export interface Batch {
  /** batchSize images back to back, each imageSize x imageSize x 3, HWC RGB uint8. */
  images: Uint8Array;
  batchSize: number;
  imageSize: number;
  /** Epoch this batch belongs to, from 1. */
  epoch: number;
  /** Its number within the epoch, from 1 (MATLAB's per-epoch iteration). */
  iteration: number;
  iterationsPerEpoch: number;
  /** Dataset index of each image. */
  indices: Uint32Array;
  /** 1 where the image was mirrored left-right. */
  flipped: Uint8Array;
}

/** Stream ids: the order and the flips draw from independent generators keyed by the seed. */
const ORDER_STREAM = 1;
const FLIP_STREAM = 2;

export class BatchIterator {
  readonly iterationsPerEpoch: number;
  private readonly seed: number;
  private readonly batchSize: number;
  private readonly flipProbability: number;
  private epoch: number;
  private position: number;
  private flipRng: Random;
  private order: { epoch: number; indices: Uint32Array } | undefined;

  constructor(
    private readonly store: ImageStore,
    private readonly imageSize: number,
    options: BatchIteratorOptions,
  ) {
    const { batchSize, seed } = options;
    if (!Number.isInteger(batchSize) || batchSize < 1) {
      throw new RangeError('options.batchSize must be a positive integer');
    }
    if (!Number.isSafeInteger(seed) || seed < 0) throw new RangeError('options.seed must be a non-negative integer');
    const flipProbability = options.flipProbability ?? 0.5;
    if (!(flipProbability >= 0 && flipProbability <= 1))
      throw new RangeError('options.flipProbability must be in [0, 1]');
    if (store.count < batchSize) {
      throw new GanDistError(
        'GAN_DIST_E_DATA',
        `the dataset has ${store.count} images, fewer than one mini-batch of ${batchSize}`,
        'add images, or lower --batch-size',
      );
    }
    this.seed = seed;
    this.batchSize = batchSize;
    this.flipProbability = flipProbability;
    this.iterationsPerEpoch = Math.floor(store.count / batchSize);
    this.epoch = 1;
    this.position = 0;
    this.flipRng = Random.seeded(seed, FLIP_STREAM);
    if (options.state) this.restore(options.state);
  }

  next(): Batch {
    if (this.position >= this.iterationsPerEpoch) {
      this.epoch++;
      this.position = 0;
    }
    const order = this.orderOf(this.epoch);
    const start = this.position * this.batchSize;
    const indices = order.slice(start, start + this.batchSize);
    const bytesPerImage = this.store.bytesPerImage;
    const images = new Uint8Array(this.batchSize * bytesPerImage);
    this.store.gather(indices, images);
    const flipped = new Uint8Array(this.batchSize);
    for (let k = 0; k < this.batchSize; k++) {
      if (this.flipRng.next() < this.flipProbability) {
        flipped[k] = 1;
        mirrorRows(images.subarray(k * bytesPerImage, (k + 1) * bytesPerImage), this.imageSize);
      }
    }
    this.position++;
    const batch: Batch = {
      images,
      batchSize: this.batchSize,
      imageSize: this.imageSize,
      epoch: this.epoch,
      iteration: this.position,
      iterationsPerEpoch: this.iterationsPerEpoch,
      indices,
      flipped,
    };
    this.store.prefetch(this.peekIndices());
    return batch;
  }

  state(): IteratorState {
    return {
      version: 1,
      seed: this.seed,
      batchSize: this.batchSize,
      flipProbability: this.flipProbability,
      datasetSize: this.store.count,
      epoch: this.epoch,
      position: this.position,
      flipRng: this.flipRng.state(),
    };
  }

  /** Continues from `state` (a checkpoint's, or one taken before an iteration that was abandoned). */
  restore(state: IteratorState): void {
    const mismatch = (
      [
        ['version', 1, state.version],
        ['seed', this.seed, state.seed],
        ['batchSize', this.batchSize, state.batchSize],
        ['flipProbability', this.flipProbability, state.flipProbability],
        ['datasetSize', this.store.count, state.datasetSize],
      ] as const
    ).find(([, now, saved]) => now !== saved);
    if (mismatch) {
      const [name, now, saved] = mismatch;
      throw new GanDistError(
        'GAN_DIST_E_DATA',
        `saved data-iterator state has ${name} ${String(saved)} but this run has ${now}`,
        name === 'datasetSize'
          ? 'the data folder changed since the checkpoint; resume with the same images'
          : 'resume with the settings the checkpoint was made with',
      );
    }
    if (
      !Number.isInteger(state.epoch) ||
      state.epoch < 1 ||
      !Number.isInteger(state.position) ||
      state.position < 0 ||
      state.position > this.iterationsPerEpoch
    ) {
      throw new GanDistError(
        'GAN_DIST_E_DATA',
        `saved data-iterator state has an invalid position (epoch ${state.epoch}, batch ${state.position})`,
      );
    }
    this.epoch = state.epoch;
    this.position = state.position;
    this.flipRng = Random.fromState(state.flipRng);
  }

  private orderOf(epoch: number): Uint32Array {
    if (this.order?.epoch !== epoch) {
      this.order = { epoch, indices: Random.seeded(this.seed, ORDER_STREAM, epoch).permutation(this.store.count) };
    }
    return this.order.indices;
  }

  /** Dataset indices of the batch after the one just drawn. */
  private peekIndices(): Uint32Array {
    const [epoch, position] =
      this.position >= this.iterationsPerEpoch ? [this.epoch + 1, 0] : [this.epoch, this.position];
    const start = position * this.batchSize;
    // At an epoch's end this computes the next epoch's order, which next() then finds cached.
    return this.orderOf(epoch).subarray(start, start + this.batchSize);
  }
}

/** Mirrors an HWC RGB image left-right in place. */
export function mirrorRows(image: Uint8Array, size: number): void {
  const row = size * 3;
  for (let y = 0; y < size; y++) {
    let a = y * row;
    let b = a + row - 3;
    while (a < b) {
      for (let c = 0; c < 3; c++) {
        const t = image[a + c];
        image[a + c] = image[b + c];
        image[b + c] = t;
      }
      a += 3;
      b -= 3;
    }
  }
}
