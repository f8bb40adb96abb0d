// The backdrop of a synthetic flower picture, painted at pixel rate because it is smooth, as a
// photo's out-of-focus background: foliage with leaves, sky with clouds over grass, soil, or
// bokeh; and a stem drawn onto it.

import { jitter, mix, PETALS, pick, type RGB } from './palette.ts';
import type { Random } from '../../protocol/random.ts';

/** Smooth value noise on a grid of `cells` x `cells`, sampled at (u, v) in [0, 1]. */
function valueNoise(rng: Random, cells: number): (u: number, v: number) => number {
  const n = cells + 1;
  const grid = Float32Array.from({ length: n * n }, () => rng.next());
  return (u, v) => {
    const x = Math.min(u * cells, cells - 1e-6);
    const y = Math.min(v * cells, cells - 1e-6);
    const i = Math.floor(x);
    const j = Math.floor(y);
    const sx = (x - i) * (x - i) * (3 - 2 * (x - i));
    const sy = (y - j) * (y - j) * (3 - 2 * (y - j));
    const top = grid[j * n + i] * (1 - sx) + grid[j * n + i + 1] * sx;
    const bottom = grid[(j + 1) * n + i] * (1 - sx) + grid[(j + 1) * n + i + 1] * sx;
    return top * (1 - sy) + bottom * sy;
  };
}

/** A soft-edged ellipse: a leaf, or an out-of-focus light. */
interface Blob {
  x: number;
  y: number;
  cos: number;
  sin: number;
  a: number;
  b: number;
  color: RGB;
}

function blobCoverage(blob: Blob, px: number, py: number, softness: number): number {
  const dx = px - blob.x;
  const dy = py - blob.y;
  const u = (dx * blob.cos + dy * blob.sin) / blob.a;
  const v = (-dx * blob.sin + dy * blob.cos) / blob.b;
  return Math.min(1, Math.max(0, ((1 - Math.sqrt(u * u + v * v)) * blob.b) / softness + 0.5));
}

const KINDS = ['foliage', 'foliage', 'sky', 'soil', 'bokeh'] as const;

/** size x size x 3 floats in [0, 1]. */
export function paintBackdrop(rng: Random, size: number): Float32Array {
  const kind = pick(rng, KINDS);
  const coarse = valueNoise(rng, 3 + rng.int(3));
  const fine = valueNoise(rng, 8 + rng.int(6));
  const green = (): RGB => jitter(rng, [rng.range(0.1, 0.3), rng.range(0.3, 0.55), rng.range(0.05, 0.2)], 0.04);
  const dark = green();
  const light = mix(green(), [0.75, 0.85, 0.3], rng.range(0.2, 0.6));
  const skyTop = jitter(rng, [0.25, 0.5, 0.9], 0.05);
  const skyLow = jitter(rng, [0.78, 0.86, 0.95], 0.03);
  const soil = jitter(rng, [0.36, 0.25, 0.15], 0.05);
  const horizon = rng.range(0.6, 0.95);
  const blobs: Blob[] = [];
  const blobCount = kind === 'sky' ? 0 : kind === 'bokeh' ? 4 + rng.int(6) : 2 + rng.int(6);
  for (let k = 0; k < blobCount; k++) {
    const angle = rng.range(0, Math.PI);
    const a = size * rng.range(0.08, 0.3);
    blobs.push({
      x: rng.range(0, size),
      y: rng.range(0, size),
      cos: Math.cos(angle),
      sin: Math.sin(angle),
      a,
      b: kind === 'bokeh' ? a : a * rng.range(0.25, 0.5),
      color:
        kind === 'bokeh'
          ? mix(light, pick(rng, [...PETALS, [1, 1, 0.85]]), rng.range(0.2, 0.6))
          : mix(dark, light, rng.next()),
    });
  }
  const softness = kind === 'bokeh' ? size * 0.04 : 1;
  const blobAlpha = kind === 'bokeh' ? 0.7 : 1;
  const out = new Float32Array(size * size * 3);
  const bokehBase = mix(dark, [0.05, 0.06, 0.04], 0.5);
  const put = (o: number, a: RGB, b: RGB, t: number, k: number): void => {
    for (let c = 0; c < 3; c++) out[o + c] = (a[c] + (b[c] - a[c]) * t) * k;
  };
  for (let y = 0; y < size; y++) {
    const v = (y + 0.5) / size;
    for (let x = 0; x < size; x++) {
      const u = (x + 0.5) / size;
      const n = 0.65 * coarse(u, v) + 0.35 * fine(u, v);
      const o = (y * size + x) * 3;
      if (kind === 'sky' && v <= horizon) {
        const cloud = Math.max(0, Math.min(1, (n - 0.5) * 3));
        for (let c = 0; c < 3; c++) {
          const sky = skyTop[c] + (skyLow[c] - skyTop[c]) * v;
          out[o + c] = sky + (0.97 - sky) * cloud;
        }
      } else if (kind === 'soil') {
        put(o, soil, soil, 0, 0.65 + 0.6 * n);
      } else if (kind === 'bokeh') {
        put(o, bokehBase, bokehBase, 0, 0.6 + 0.8 * n);
      } else {
        put(o, dark, light, n, 1); // foliage, or the grass below the horizon
      }
    }
  }
  // Each blob over its bounding box only.
  for (const blob of blobs) {
    const extent = blob.a + softness;
    const y1 = Math.min(size - 1, Math.ceil(blob.y + extent));
    const x1 = Math.min(size - 1, Math.ceil(blob.x + extent));
    for (let y = Math.max(0, Math.floor(blob.y - extent)); y <= y1; y++) {
      for (let x = Math.max(0, Math.floor(blob.x - extent)); x <= x1; x++) {
        const cover = blobCoverage(blob, x + 0.5, y + 0.5, softness) * blobAlpha;
        if (cover <= 0) continue;
        const o = (y * size + x) * 3;
        for (let c = 0; c < 3; c++) out[o + c] += (blob.color[c] - out[o + c]) * cover;
      }
    }
  }
  return out;
}

/** A stem from (x, y) down out of the frame, bending a little, anti-aliased by its distance. */
export function paintStem(backdrop: Float32Array, size: number, x0: number, y0: number, rng: Random): void {
  const width = size * rng.range(0.02, 0.035);
  const bend = rng.range(-0.4, 0.4);
  const color = jitter(rng, [0.22, 0.45, 0.12], 0.04);
  for (let y = Math.max(0, Math.floor(y0)); y < size; y++) {
    const t = (y + 0.5 - y0) / size;
    const cx = x0 + bend * t * t * size;
    const from = Math.max(0, Math.floor(cx - width - 1));
    const to = Math.min(size - 1, Math.ceil(cx + width + 1));
    for (let x = from; x <= to; x++) {
      const d = Math.abs(x + 0.5 - cx);
      const cover = Math.min(1, Math.max(0, width - d + 0.5));
      if (cover <= 0) continue;
      const o = (y * size + x) * 3;
      const k = 0.8 + 0.4 * Math.max(0, 1 - d / width);
      for (let c = 0; c < 3; c++) backdrop[o + c] += (color[c] * k - backdrop[o + c]) * cover;
    }
  }
}
