// One synthetic flower: a random model (kind, petals in layers, centre disc, tilt) and the
// function that samples its colour at a point. The hot path of the synthetic set: no allocation.

import { CENTRES, jitter, PETALS, pick, shade, type RGB } from './palette.ts';
import type { Random } from '../../protocol/random.ts';

interface Petal {
  cos: number;
  sin: number;
  length: number;
  /** Half-width at the widest point. */
  width: number;
  /** Stacking order among overlapping petals of a layer. */
  z: number;
  color: RGB;
  /** Lighting of this petal by the flower's light direction. */
  lit: number;
}

/** Steps of a layer's petal-outline table. */
const PROFILE_STEPS = 64;

interface Layer {
  petals: Petal[];
  phase: number;
  /** Length of its longest petal: nothing of the layer lies further out. */
  reach: number;
  /** Half-width along the petal as a fraction of `width`, for s = a / length in [0, 1]. */
  profile: Float32Array;
  /** Depth of a notch at the tip, as a fraction of the length (0 for none). */
  notch: number;
  /** Colour the petals darken to at their base. */
  base: RGB;
}

export interface Flower {
  x: number;
  y: number;
  /** The flower is seen tilted: its frame is rotated, and squashed along one axis. */
  tiltCos: number;
  tiltSin: number;
  squash: number;
  /** Radius beyond which nothing of it is drawn, in pixels (before the squash). */
  reach: number;
  layers: Layer[];
  centre: number;
  centreColor: RGB;
  centreRim: RGB;
  dots: number;
}

const TAU = Math.PI * 2;

/** The kinds: [petal count, layers, profile gamma, profile beta, width factor, notch chance, centre radius]. */
function kindSpec(rng: Random, kind: number): [number, number, number, number, number, number, number] {
  switch (kind) {
    case 0:
      return [rng.int(10) + 13, 1, 1.3, 0.6, 0.55, 0.2, rng.range(0.22, 0.34)]; // daisy
    case 1:
      return [rng.int(8) + 14, 2, 0.75, 0.9, 0.7, 0, rng.range(0.34, 0.46)]; // sunflower
    case 2:
      return [rng.int(4) + 5, 1, 1.4, 0.5, 1.05, 0.5, rng.range(0.1, 0.18)]; // cosmos
    case 3:
      return [rng.int(2) + 5, 3, 1.6, 0.4, 1.25, 0, rng.range(0.05, 0.12)]; // rose or tulip seen from above
    case 4:
      return [rng.int(2) + 5, 2, 0.8, 0.8, 0.75, 0, rng.range(0.1, 0.16)]; // lily, star-shaped
    default:
      return [rng.int(12) + 28, 3, 1.0, 0.7, 0.5, 0, rng.range(0.08, 0.14)]; // dandelion pompom
  }
}

/** A flower of one of six kinds at (x, y) with radius r; `colorHint` makes a bunch of one colour. */
export function makeFlower(rng: Random, x: number, y: number, r: number, colorHint?: RGB): Flower {
  const kind = rng.int(6);
  const [count, layerCount, gamma, beta, widthFactor, notchChance, centre] = kindSpec(rng, kind);
  // Sunflowers and dandelions keep their yellows and oranges.
  const petalColor =
    kind === 1 || kind === 5
      ? jitter(rng, pick(rng, [PETALS[1], PETALS[2]]), 0.04)
      : jitter(rng, colorHint ?? pick(rng, PETALS), 0.05);
  const light = rng.range(0, TAU);
  const profile = new Float32Array(PROFILE_STEPS + 1);
  for (let i = 0; i <= PROFILE_STEPS; i++) {
    profile[i] = Math.sin(Math.PI * (i / PROFILE_STEPS) ** gamma) ** beta;
  }
  const layers: Layer[] = [];
  for (let l = 0; l < layerCount; l++) {
    const scale = 1 - l * rng.range(0.22, 0.32);
    const color = l === 0 ? petalColor : jitter(rng, shade(petalColor, 1 - 0.08 * l), 0.03);
    const phase = rng.range(0, TAU);
    const petals: Petal[] = [];
    for (let j = 0; j < count; j++) {
      const angle = phase + ((j + rng.range(-0.12, 0.12)) * TAU) / count;
      const length = r * scale * rng.range(0.88, 1.08);
      petals.push({
        cos: Math.cos(angle),
        sin: Math.sin(angle),
        length,
        width: ((Math.PI * length) / count) * widthFactor * rng.range(0.9, 1.12),
        z: rng.next(),
        color: jitter(rng, color, 0.025),
        lit: 0.9 + 0.12 * Math.cos(angle - light),
      });
    }
    const base = kind === 0 && rng.next() < 0.5 ? CENTRES[0] : shade(color, rng.range(0.45, 0.75));
    layers.push({
      petals,
      phase,
      reach: Math.max(...petals.map((p) => p.length)),
      profile,
      notch: rng.next() < notchChance ? rng.range(0.08, 0.16) : 0,
      base,
    });
  }
  const centreColor =
    kind === 1 ? pick(rng, [CENTRES[1], CENTRES[2]]) : kind === 5 ? shade(petalColor, 0.8) : pick(rng, CENTRES);
  const tilt = rng.range(0, Math.PI);
  return {
    x,
    y,
    tiltCos: Math.cos(tilt),
    tiltSin: Math.sin(tilt),
    squash: rng.next() < 0.4 ? rng.range(0.6, 0.9) : 1,
    reach: r * 1.1,
    layers,
    centre: r * centre,
    centreColor: jitter(rng, centreColor, 0.04),
    centreRim: shade(centreColor, 0.55),
    dots: rng.range(1.9, 3.4),
  };
}

/** Part ids returned by `sampleFlower`: the centre, or 1 + layer * 1024 + petal. */
const CENTRE_ID = 0;

/**
 * Writes the flower's colour at (px, py) into out[at..at+2] and returns the id of the part hit
 * (equal ids on both sides of a pixel mean no edge inside it), or -1 where the flower is absent.
 */
export function sampleFlower(f: Flower, px: number, py: number, out: Float32Array, at: number): number {
  const dx0 = px - f.x;
  const dy0 = py - f.y;
  const dx = dx0 * f.tiltCos + dy0 * f.tiltSin;
  const dy = (-dx0 * f.tiltSin + dy0 * f.tiltCos) / f.squash;
  const rr = dx * dx + dy * dy;
  if (rr > f.reach * f.reach) return -1;
  const r = Math.sqrt(rr);
  const theta = fastAtan2(dy, dx);
  if (r < f.centre * 1.04 && r < f.centre * (1 + 0.04 * Math.sin(17 * theta))) {
    const t = r / f.centre;
    // Florets: a fine dot lattice, darker towards the rim.
    const k = (0.82 + 0.18 * Math.sin(dx * f.dots) * Math.sin(dy * f.dots)) * (1.05 - 0.15 * t);
    const w = t * t;
    for (let c = 0; c < 3; c++) out[at + c] = (f.centreColor[c] + (f.centreRim[c] - f.centreColor[c]) * w) * k;
    return CENTRE_ID;
  }
  // Innermost layer first: it lies on top.
  for (let l = f.layers.length - 1; l >= 0; l--) {
    if (r > f.layers[l].reach) continue;
    const hit = sampleLayer(f.layers[l], dx, dy, theta, r / f.reach, out, at);
    if (hit >= 0) return 1 + l * 1024 + hit;
  }
  return -1;
}

/** atan2 within 1e-5 rad (a minimax polynomial on [0, 1]): a third of Math.atan2's cost here. */
function fastAtan2(y: number, x: number): number {
  const ax = Math.abs(x);
  const ay = Math.abs(y);
  if (ax === 0 && ay === 0) return 0;
  const swap = ay > ax;
  const t = swap ? ax / ay : ay / ax;
  const t2 = t * t;
  let a =
    t *
    (0.99997726 + t2 * (-0.33262347 + t2 * (0.19354346 + t2 * (-0.11643287 + t2 * (0.05265332 + t2 * -0.0117212)))));
  if (swap) a = Math.PI / 2 - a;
  if (x < 0) a = Math.PI - a;
  return y < 0 ? -a : a;
}

function sampleLayer(
  layer: Layer,
  dx: number,
  dy: number,
  theta: number,
  radial: number,
  out: Float32Array,
  at: number,
): number {
  const petals = layer.petals;
  const n = petals.length;
  let angle = theta - layer.phase;
  angle -= Math.floor(angle / TAU) * TAU;
  const nearest = Math.round((angle * n) / TAU);
  let best = -1;
  let bestS = 0;
  let bestB = 0;
  for (let d = -1; d <= 1; d++) {
    let j = nearest + d;
    if (j < 0) j += n;
    else if (j >= n) j -= n;
    const p = petals[j];
    const a = dx * p.cos + dy * p.sin;
    if (a <= 0 || a > p.length) continue;
    const bw = Math.abs(-dx * p.sin + dy * p.cos) / p.width;
    if (bw >= 1) continue;
    const length = layer.notch > 0 ? p.length * (1 - layer.notch * Math.max(0, 1 - 9 * bw * bw)) : p.length;
    const s = a / length;
    if (s >= 1) continue;
    const pos = s * PROFILE_STEPS;
    const i = Math.floor(pos);
    const half = layer.profile[i] + (layer.profile[i + 1] - layer.profile[i]) * (pos - i);
    if (bw < half && (best < 0 || p.z > petals[best].z)) {
      best = j;
      bestS = s;
      bestB = bw / half;
    }
  }
  if (best < 0) return -1;
  const p = petals[best];
  // Darker towards the base, a faint midrib, edges in shadow, one side lit.
  const toBase = Math.max(0, 1 - bestS * 2.2);
  const w = toBase * toBase;
  const rib = 1 - 0.1 * Math.max(0, 1 - bestB * 8);
  const k = rib * p.lit * (1 - 0.18 * bestB * bestB) * (0.92 + 0.08 * radial);
  for (let c = 0; c < 3; c++) out[at + c] = (p.color[c] + (layer.base[c] - p.color[c]) * w) * k;
  return best;
}
