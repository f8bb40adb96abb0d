import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import sharp from 'sharp';
import { describe, expect, it } from 'vitest';
import { drawSyntheticFlower, drawSyntheticSet, writeSyntheticPngs } from '../../data/synthetic/synthetic.ts';

const SIZE = 32;
const BYTES = SIZE * SIZE * 3;
const image = (set: Uint8Array, i: number): Uint8Array => set.subarray(i * BYTES, (i + 1) * BYTES);

/** Mean RGB over the pixels of `img` whose (x, y) pass `where`. */
function meanColour(img: Uint8Array, size: number, where: (x: number, y: number) => boolean): number[] {
  const sum = [0, 0, 0];
  let n = 0;
  for (let y = 0; y < size; y++) {
    for (let x = 0; x < size; x++) {
      if (!where(x, y)) continue;
      for (let c = 0; c < 3; c++) sum[c] += img[(y * size + x) * 3 + c];
      n++;
    }
  }
  return sum.map((s) => s / n);
}

describe('synthetic flowers', () => {
  it('draws the same pictures from the same seed, whatever range is asked for', () => {
    const set = drawSyntheticSet(8, { imageSize: SIZE, seed: 11 });
    expect(drawSyntheticSet(8, { imageSize: SIZE, seed: 11 })).toEqual(set);
    expect(drawSyntheticSet(3, { imageSize: SIZE, seed: 11 }, 5)).toEqual(set.subarray(5 * BYTES));
    const alone = new Uint8Array(BYTES);
    drawSyntheticFlower(6, { imageSize: SIZE, seed: 11 }, alone);
    expect(alone).toEqual(image(set, 6));
  });

  it('draws different pictures for different seeds and indices', () => {
    const a = drawSyntheticSet(4, { imageSize: SIZE, seed: 1 });
    const b = drawSyntheticSet(4, { imageSize: SIZE, seed: 2 });
    expect(a).not.toEqual(b);
    expect(image(a, 0)).not.toEqual(image(a, 1));
  });

  it('varies colour from picture to picture', () => {
    const set = drawSyntheticSet(60, { imageSize: SIZE, seed: 3 });
    const means = Array.from({ length: 60 }, (_, i) => meanColour(image(set, i), SIZE, () => true));
    for (let c = 0; c < 3; c++) {
      const values = means.map((m) => m[c]);
      const avg = values.reduce((s, v) => s + v, 0) / values.length;
      const sd = Math.sqrt(values.reduce((s, v) => s + (v - avg) ** 2, 0) / values.length);
      expect(sd, `channel ${c}`).toBeGreaterThan(12);
    }
  });

  it('puts something unlike the backdrop in the middle of most pictures', () => {
    const set = drawSyntheticSet(60, { imageSize: SIZE, seed: 4 });
    let distinct = 0;
    for (let i = 0; i < 60; i++) {
      const centre = meanColour(image(set, i), SIZE, (x, y) => Math.hypot(x - 15.5, y - 15.5) < 5);
      const border = meanColour(image(set, i), SIZE, (x, y) => x < 2 || y < 2 || x >= SIZE - 2 || y >= SIZE - 2);
      if (Math.hypot(...centre.map((v, c) => v - border[c])) > 40) distinct++;
    }
    expect(distinct).toBeGreaterThan(48);
  });

  it('draws 200 pictures of 64x64 in well under the time of decoding them', () => {
    const started = performance.now();
    drawSyntheticSet(200, { imageSize: 64, seed: 5 });
    // About 2 ms a picture on one core; the bound leaves room for a loaded CI machine.
    expect(performance.now() - started).toBeLessThan(4000);
  });

  it('writes PNG files that decode back to the same pixels', async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'gan-dist-synth-'));
    try {
      const files = await writeSyntheticPngs(dir, 3, { imageSize: SIZE, seed: 8 });
      expect((await readdir(dir)).sort()).toEqual(['flower-000000.png', 'flower-000001.png', 'flower-000002.png']);
      const { data, info } = await sharp(files[2]).raw().toBuffer({ resolveWithObject: true });
      expect([info.width, info.height, info.channels]).toEqual([SIZE, SIZE, 3]);
      expect(new Uint8Array(data)).toEqual(image(drawSyntheticSet(3, { imageSize: SIZE, seed: 8 }), 2));
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
