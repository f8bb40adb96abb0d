// Colours for the synthetic flowers: the petal and centre palettes, and the small RGB helpers
// the flower and backdrop painters share. Channels are floats in [0, 1].

import type { Random } from '../../protocol/random.ts';

export type RGB = [number, number, number];

/** White, yellow, orange, red, pink, magenta, purple, lavender, blue, coral. */
export const PETALS: readonly RGB[] = [
  [0.96, 0.95, 0.92],
  [0.98, 0.84, 0.12],
  [0.98, 0.56, 0.1],
  [0.86, 0.1, 0.12],
  [0.97, 0.56, 0.72],
  [0.8, 0.16, 0.55],
  [0.56, 0.3, 0.8],
  [0.76, 0.66, 0.96],
  [0.36, 0.46, 0.92],
  [0.98, 0.5, 0.4],
];

/** Yellow, brown, near-black, green, orange discs. */
export const CENTRES: readonly RGB[] = [
  [0.98, 0.78, 0.1],
  [0.36, 0.2, 0.08],
  [0.2, 0.12, 0.06],
  [0.62, 0.72, 0.2],
  [0.95, 0.55, 0.08],
];

export const mix = (a: RGB, b: RGB, t: number): RGB => [
  a[0] + (b[0] - a[0]) * t,
  a[1] + (b[1] - a[1]) * t,
  a[2] + (b[2] - a[2]) * t,
];

export const shade = (c: RGB, k: number): RGB => [c[0] * k, c[1] * k, c[2] * k];

/** The colour a little lighter or darker and off-hue: no two petals, or flowers, quite alike. */
export function jitter(rng: Random, c: RGB, amount: number): RGB {
  const k = rng.range(0.85, 1.08);
  return c.map((v) => Math.min(1, Math.max(0, v * k + rng.range(-amount, amount)))) as RGB;
}

export const pick = <T>(rng: Random, items: readonly T[]): T => items[rng.int(items.length)];
