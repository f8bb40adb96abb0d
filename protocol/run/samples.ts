// Sample grids: the seed's `rescale(imtile(XGeneratedValidation))` as a PNG. k generated images
// are tiled row by row into a grid of ceil(sqrt(k)) columns (5x5 for 25) and rescaled to [0, 1]
// with the min and max of all tiles together, as MATLAB's rescale does over the whole grid.

import { mkdir, rename, rm } from 'node:fs/promises';
import { dirname } from 'node:path';
import sharp from 'sharp';

/** samples/iter-000100.png (DESIGN.md, "Run directory"). */
export const sampleFileName = (iteration: number): string => `iter-${String(iteration).padStart(6, '0')}.png`;

export interface Tiled {
  width: number;
  height: number;
  columns: number;
  rows: number;
  /** width x height x 3, row-major. */
  rgb: Uint8Array;
}

/**
 * Tiles `count` HWC float images of `size` x `size` x 3 (any range) into one RGB grid.
 * Cells past the last image (k not a full rectangle) are black; they take no part in the
 * min/max, so the images look the same whatever k is.
 */
export function tileImages(
  images: Float32Array,
  count: number,
  size: number,
  columns = Math.ceil(Math.sqrt(count)),
): Tiled {
  if (!Number.isInteger(count) || count < 1) throw new RangeError('count must be a positive integer');
  if (!Number.isInteger(size) || size < 1) throw new RangeError('size must be a positive integer');
  const per = size * size * 3;
  if (images.length !== count * per) {
    throw new RangeError(
      `images has ${images.length} values; ${count} images of ${size}x${size}x3 need ${count * per}`,
    );
  }
  const rows = Math.ceil(count / columns);
  const width = columns * size;
  const height = rows * size;
  let lo = Infinity;
  let hi = -Infinity;
  for (let i = 0; i < images.length; i++) {
    const v = images[i];
    if (v < lo) lo = v;
    if (v > hi) hi = v;
  }
  // MATLAB's rescale maps a constant input to the lower bound.
  const scale = hi > lo ? 255 / (hi - lo) : 0;
  const rgb = new Uint8Array(width * height * 3);
  for (let k = 0; k < count; k++) {
    const x0 = (k % columns) * size;
    const y0 = Math.floor(k / columns) * size;
    for (let y = 0; y < size; y++) {
      const src = k * per + y * size * 3;
      const dst = ((y0 + y) * width + x0) * 3;
      for (let e = 0; e < size * 3; e++) rgb[dst + e] = Math.round((images[src + e] - lo) * scale);
    }
  }
  return { width, height, columns, rows, rgb };
}

/** Tiles and writes a grid as PNG; written under a temporary name and renamed, so a viewer never reads half a file. */
export async function writeSampleGrid(path: string, images: Float32Array, count: number, size: number): Promise<Tiled> {
  const tiled = tileImages(images, count, size);
  await mkdir(dirname(path), { recursive: true });
  const tmp = `${path}.tmp-${process.pid}`;
  try {
    await sharp(Buffer.from(tiled.rgb.buffer, tiled.rgb.byteOffset, tiled.rgb.byteLength), {
      raw: { width: tiled.width, height: tiled.height, channels: 3 },
    })
      .png()
      .toFile(tmp);
    await rename(tmp, path);
  } catch (err) {
    await rm(tmp, { force: true });
    throw err;
  }
  return tiled;
}
