import { describe, expect, it } from 'vitest';
import { GanDistError } from '../../protocol/errors.ts';
import { BatchIterator, mirrorRows, type Batch } from '../../data/batches.ts';
import { MemoryStore } from '../../data/store.ts';

const SIZE = 4;
const BYTES = SIZE * SIZE * 3;

/** n images whose first byte is their index and whose every byte differs from its mirror. */
function store(n: number): MemoryStore {
  const pixels = new Uint8Array(n * BYTES);
  for (let i = 0; i < n; i++) {
    for (let b = 0; b < BYTES; b++) pixels[i * BYTES + b] = (i + b * 7) & 255;
    pixels[i * BYTES] = i;
  }
  return new MemoryStore(pixels, BYTES);
}

const draw = (it: BatchIterator, k: number): Batch[] => Array.from({ length: k }, () => it.next());
const summary = (b: Batch): string =>
  `${b.epoch}:${b.iteration}:${[...b.indices].join(',')}:${[...b.flipped].join('')}`;

describe('BatchIterator', () => {
  it('draws the same batches, images and flips for the same seed', () => {
    const images = store(50);
    const a = draw(new BatchIterator(images, SIZE, { batchSize: 8, seed: 5 }), 12);
    const b = draw(new BatchIterator(images, SIZE, { batchSize: 8, seed: 5 }), 12);
    expect(a.map(summary)).toEqual(b.map(summary));
    expect(a.map((x) => [...x.images])).toEqual(b.map((x) => [...x.images]));
    const c = draw(new BatchIterator(images, SIZE, { batchSize: 8, seed: 6 }), 12);
    expect(c.map(summary)).not.toEqual(a.map(summary));
  });

  it('shuffles each epoch into a different order of every image', () => {
    const it = new BatchIterator(store(40), SIZE, { batchSize: 10, seed: 1 });
    const epochs = [0, 1, 2].map(() => draw(it, 4).flatMap((b) => [...b.indices]));
    for (const order of epochs)
      expect([...order].sort((x, y) => x - y)).toEqual(Array.from({ length: 40 }, (_, i) => i));
    expect(epochs[1]).not.toEqual(epochs[0]);
    expect(epochs[2]).not.toEqual(epochs[1]);
  });

  it('drops the partial last batch and counts epochs and iterations from 1', () => {
    const it = new BatchIterator(store(10), SIZE, { batchSize: 4, seed: 2 });
    expect(it.iterationsPerEpoch).toBe(2);
    const batches = draw(it, 5);
    expect(batches.map((b) => [b.epoch, b.iteration])).toEqual([
      [1, 1],
      [1, 2],
      [2, 1],
      [2, 2],
      [3, 1],
    ]);
    const firstEpoch = batches.slice(0, 2).flatMap((b) => [...b.indices]);
    expect(new Set(firstEpoch).size).toBe(8);
  });

  it('flips about half of the images, each a true left-right mirror of the stored one', () => {
    const images = store(200);
    const it = new BatchIterator(images, SIZE, { batchSize: 100, seed: 3 });
    let flipped = 0;
    for (const batch of draw(it, 20)) {
      for (let k = 0; k < batch.batchSize; k++) {
        const expected = images.image(batch.indices[k]).slice();
        if (batch.flipped[k]) mirrorRows(expected, SIZE);
        expect(batch.images.subarray(k * BYTES, (k + 1) * BYTES)).toEqual(expected);
        flipped += batch.flipped[k];
      }
    }
    expect(flipped / 2000).toBeGreaterThan(0.46);
    expect(flipped / 2000).toBeLessThan(0.54);
  });

  it('never changes the stored images when it flips', () => {
    const images = store(16);
    const before = [...images.image(3)];
    draw(new BatchIterator(images, SIZE, { batchSize: 16, seed: 4 }), 10);
    expect([...images.image(3)]).toEqual(before);
  });

  it('continues from a saved state with exactly the batches the original would draw', () => {
    const images = store(30);
    const original = new BatchIterator(images, SIZE, { batchSize: 7, seed: 9 });
    draw(original, 6); // into the second epoch
    const saved = JSON.parse(JSON.stringify(original.state()));
    const restored = new BatchIterator(images, SIZE, { batchSize: 7, seed: 9, state: saved });
    expect(draw(restored, 9).map(summary)).toEqual(draw(original, 9).map(summary));
  });

  it('refuses a saved state made with another batch size or dataset', () => {
    const saved = new BatchIterator(store(30), SIZE, { batchSize: 7, seed: 9 }).state();
    expect(() => new BatchIterator(store(30), SIZE, { batchSize: 8, seed: 9, state: saved })).toThrow(
      /batchSize 7 but this run has 8/,
    );
    expect(() => new BatchIterator(store(31), SIZE, { batchSize: 7, seed: 9, state: saved })).toThrow(
      /datasetSize 30 but this run has 31/,
    );
  });

  it('stops with a data error when the dataset is smaller than one batch', () => {
    let error: unknown;
    try {
      new BatchIterator(store(5), SIZE, { batchSize: 8, seed: 0 });
    } catch (err) {
      error = err;
    }
    expect(error).toBeInstanceOf(GanDistError);
    expect((error as GanDistError).code).toBe('GAN_DIST_E_DATA');
    expect((error as GanDistError).message).toBe('the dataset has 5 images, fewer than one mini-batch of 8');
  });
});

describe('mirrorRows', () => {
  it('reverses the pixel order of each row and keeps channel order', () => {
    const image = Uint8Array.from([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]); // 2x2
    mirrorRows(image, 2);
    expect([...image]).toEqual([4, 5, 6, 1, 2, 3, 10, 11, 12, 7, 8, 9]);
  });
});
