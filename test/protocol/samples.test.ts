import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { sampleFileName, tileImages, writeSampleGrid } from '../../protocol/run/samples.ts';

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'gan-dist-samples-'));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

/** Four 2x2 RGB images: constants -1, 0 and 0.5, and a fourth of 0.5 with one pixel [1, 0.5, -1]. */
function handMade(): Float32Array {
  const per = 2 * 2 * 3;
  const a = new Float32Array(4 * per);
  a.fill(-1, 0, per);
  a.fill(0, per, 2 * per);
  a.fill(0.5, 2 * per, 4 * per);
  // image 3, row 1, column 0
  a.set([1, 0.5, -1], 3 * per + (1 * 2 + 0) * 3);
  return a;
}

const pixel = (t: { width: number; rgb: Uint8Array }, x: number, y: number) => [
  ...t.rgb.subarray((y * t.width + x) * 3, (y * t.width + x) * 3 + 3),
];

describe('sample grids', () => {
  it('tiles a 2x2 set row by row and rescales over the whole grid', () => {
    const t = tileImages(handMade(), 4, 2);
    expect([t.width, t.height, t.columns, t.rows]).toEqual([4, 4, 2, 2]);
    // min -1 -> 0, max 1 -> 255: 0 -> 127.5 (rounds to 128), 0.5 -> 191.25 (191)
    expect(pixel(t, 0, 0)).toEqual([0, 0, 0]); // image 0, top left
    expect(pixel(t, 1, 1)).toEqual([0, 0, 0]);
    expect(pixel(t, 2, 0)).toEqual([128, 128, 128]); // image 1, top right
    expect(pixel(t, 3, 1)).toEqual([128, 128, 128]);
    expect(pixel(t, 0, 2)).toEqual([191, 191, 191]); // image 2, bottom left
    expect(pixel(t, 2, 3)).toEqual([255, 191, 0]); // image 3, its row 1 column 0
    expect(pixel(t, 3, 3)).toEqual([191, 191, 191]);
  });

  it('lays 25 images out 5x5, and 3 images 2x2 with a black cell outside the rescale', () => {
    const t25 = tileImages(
      new Float32Array(25 * 4 * 4 * 3).map((_, i) => i),
      25,
      4,
    );
    expect([t25.columns, t25.rows, t25.width, t25.height]).toEqual([5, 5, 20, 20]);
    expect(pixel(t25, 19, 19)).toEqual([255, 255, 255]);

    const three = new Float32Array(3 * 12).fill(0.25);
    three.fill(0.75, 12, 24);
    const t3 = tileImages(three, 3, 2);
    expect([t3.columns, t3.rows]).toEqual([2, 2]);
    expect(pixel(t3, 0, 0)).toEqual([0, 0, 0]);
    expect(pixel(t3, 2, 0)).toEqual([255, 255, 255]);
    expect(pixel(t3, 0, 2)).toEqual([0, 0, 0]);
    expect(pixel(t3, 3, 3)).toEqual([0, 0, 0]); // the empty fourth cell
  });

  it('maps a constant grid to zeros, as MATLAB rescale does', () => {
    expect(tileImages(new Float32Array(12).fill(0.3), 1, 2).rgb.every((v) => v === 0)).toBe(true);
  });

  it('rejects images of the wrong length', () => {
    expect(() => tileImages(new Float32Array(10), 1, 2)).toThrow('images has 10 values; 1 images of 2x2x3 need 12');
  });

  it('writes the grid as a PNG holding exactly the tiled pixels', async () => {
    const path = join(dir, 'samples', sampleFileName(100));
    expect(path.endsWith('samples/iter-000100.png')).toBe(true);
    const tiled = await writeSampleGrid(path, handMade(), 4, 2);
    const { data, info } = await sharp(path).raw().toBuffer({ resolveWithObject: true });
    expect([info.width, info.height, info.channels, info.format]).toEqual([4, 4, 3, 'raw']);
    expect(Buffer.from(tiled.rgb).equals(data)).toBe(true);
    expect((await sharp(path).metadata()).format).toBe('png');
    expect(readdirSync(join(dir, 'samples'))).toEqual(['iter-000100.png']); // no temporary left
  });
});
