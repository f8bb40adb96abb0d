// The embedded `synthetic` dataset: flower-like pictures drawn in plain JS from a seed, so a run
// can train offline. One to four flowers (data/synthetic/flower.ts) over a backdrop (data/synthetic/backdrop.ts),
// anti-aliased by supersampling the pixels where a flower's edge passes.

import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import sharp from 'sharp';
import { paintBackdrop, paintStem } from './backdrop.ts';
import { makeFlower, sampleFlower, type Flower } from './flower.ts';
import { Random } from '../../protocol/random.ts';

export interface SyntheticOptions {
  imageSize: number;
  seed: number;
  /**
   * Where an edge crosses a pixel it is sampled on a lattice of (n+1) x (n+1) points, corners
   * included (shared with its neighbours); n = 2 by default (9 points, 5 of them new).
   */
  supersample?: number;
}

/** Bump when a change to the drawing changes the pictures: cached synthetic sets are keyed by it. */
export const SYNTHETIC_VERSION = 1;

/** How many pictures `--data synthetic` draws unless told: 16 mini-batches of the default 128. */
export const DEFAULT_SYNTHETIC_COUNT = 2048;

/** Keys the synthetic set's generators, apart from every other stream drawn from the same seed. */
const SYNTHETIC_STREAM = 0x5f1e;

/** The id of the topmost part at (px, py) and its colour in out[at..], or -1 where only backdrop shows. */
function sampleScene(flowers: Flower[], px: number, py: number, out: Float32Array, at: number): number {
  for (let k = flowers.length - 1; k >= 0; k--) {
    const id = sampleFlower(flowers[k], px, py, out, at);
    if (id >= 0) return k * 65536 + id;
  }
  return -1;
}

/**
 * Draws image `index` of the synthetic set into `out` (imageSize^2 * 3 bytes, HWC RGB). Image i
 * depends only on (seed, i, imageSize): any subset can be drawn, in any order, by any process.
 */
export function drawSyntheticFlower(index: number, options: SyntheticOptions, out: Uint8Array): void {
  const size = options.imageSize;
  const n = options.supersample ?? 2;
  const rng = Random.seeded(options.seed, SYNTHETIC_STREAM, index);
  const backdrop = paintBackdrop(rng, size);

  // Smaller flowers behind, some of the main one's colour (a bunch), some cut by the frame.
  const main = makeFlower(
    rng,
    size * rng.range(0.38, 0.62),
    size * rng.range(0.38, 0.62),
    size * rng.range(0.26, 0.46),
  );
  const flowers: Flower[] = [];
  const extras = rng.next() < 0.55 ? 1 + rng.int(3) : 0;
  const bunchColor = rng.next() < 0.6 ? main.layers[0].petals[0].color : undefined;
  for (let k = 0; k < extras; k++) {
    flowers.push(
      makeFlower(
        rng,
        rng.range(-0.1, 1.1) * size,
        rng.range(-0.1, 1.1) * size,
        size * rng.range(0.12, 0.28),
        bunchColor,
      ),
    );
  }
  flowers.push(main);
  if (rng.next() < 0.5) paintStem(backdrop, size, main.x, main.y, rng);

  // The scene at pixel corners: where all four corners hit the same part, no edge crosses the
  // pixel and their mean is its colour; elsewhere the pixel is supersampled.
  const g = size + 1;
  const cornerId = new Int32Array(g * g);
  const cornerRgb = new Float32Array(g * g * 3);
  for (let y = 0; y < g; y++) {
    for (let x = 0; x < g; x++) cornerId[y * g + x] = sampleScene(flowers, x, y, cornerRgb, (y * g + x) * 3);
  }
  // Rounds and clamps to [0, 255] on assignment.
  const pixels = new Uint8ClampedArray(out.buffer, out.byteOffset, out.length);
  const sample = new Float32Array(3);
  const acc = new Float32Array(3);
  const tint = [rng.range(0.94, 1.06), rng.range(0.96, 1.04), rng.range(0.94, 1.06)];
  const vignette = rng.range(0, 0.35);
  for (let y = 0; y < size; y++) {
    for (let x = 0; x < size; x++) {
      const o = (y * size + x) * 3;
      const c00 = y * g + x;
      const id = cornerId[c00];
      if (cornerId[c00 + 1] === id && cornerId[c00 + g] === id && cornerId[c00 + g + 1] === id) {
        for (let c = 0; c < 3; c++) {
          acc[c] =
            id < 0
              ? backdrop[o + c]
              : (cornerRgb[c00 * 3 + c] +
                  cornerRgb[(c00 + 1) * 3 + c] +
                  cornerRgb[(c00 + g) * 3 + c] +
                  cornerRgb[(c00 + g + 1) * 3 + c]) /
                4;
        }
      } else {
        // An (n+1) x (n+1) lattice over the pixel, its four corners already known.
        acc.fill(0);
        for (let sy = 0; sy <= n; sy++) {
          for (let sx = 0; sx <= n; sx++) {
            const corner = (sx === 0 || sx === n) && (sy === 0 || sy === n);
            const at = corner ? c00 + (sy === n ? g : 0) + (sx === n ? 1 : 0) : -1;
            const hit = corner ? cornerId[at] : sampleScene(flowers, x + sx / n, y + sy / n, sample, 0);
            for (let c = 0; c < 3; c++)
              acc[c] += hit < 0 ? backdrop[o + c] : corner ? cornerRgb[at * 3 + c] : sample[c];
          }
        }
        for (let c = 0; c < 3; c++) acc[c] /= (n + 1) * (n + 1);
      }
      // Camera: white balance, vignetting, sensor grain.
      const dx = (x + 0.5) / size - 0.5;
      const dy = (y + 0.5) / size - 0.5;
      const light = (1 - vignette * (dx * dx + dy * dy) * 2) * 255;
      for (let c = 0; c < 3; c++) {
        const grain = (rng.next() - 0.5) * 6;
        pixels[o + c] = acc[c] * tint[c] * light + grain;
      }
    }
  }
}

/** Images [from, from + count) of the synthetic set, back to back in one buffer. */
export function drawSyntheticSet(count: number, options: SyntheticOptions, from = 0): Uint8Array {
  const bytesPerImage = options.imageSize * options.imageSize * 3;
  const pixels = new Uint8Array(count * bytesPerImage);
  for (let i = 0; i < count; i++) {
    drawSyntheticFlower(from + i, options, pixels.subarray(i * bytesPerImage, (i + 1) * bytesPerImage));
  }
  return pixels;
}

/** `gan-dist data synth`: writes flower-000000.png ... into `dir`; returns the paths. */
export async function writeSyntheticPngs(dir: string, count: number, options: SyntheticOptions): Promise<string[]> {
  if (!Number.isInteger(count) || count < 1) throw new RangeError('count must be a positive integer');
  await mkdir(dir, { recursive: true });
  const size = options.imageSize;
  const image = new Uint8Array(size * size * 3);
  const files: string[] = [];
  for (let i = 0; i < count; i++) {
    drawSyntheticFlower(i, options, image);
    const file = path.join(dir, `flower-${String(i).padStart(6, '0')}.png`);
    await writeFile(
      file,
      await sharp(image, { raw: { width: size, height: size, channels: 3 } })
        .png()
        .toBuffer(),
    );
    files.push(file);
  }
  return files;
}
