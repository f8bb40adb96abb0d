// Random numbers for the run: a seeded, serialisable stream (xoshiro128**) that the coordinator
// draws Z, flip bits and initial weights from, and a counter-based generator for dropout masks so
// that a mask depends only on (seed, iteration, global row, pass), never on which worker ran it.

import { Random, type RandomState } from './random.ts';

export type RngState = RandomState;

/**
 * The coordinator's streams: xoshiro128** (protocol/random.ts, shared with the data pipeline),
 * plus the draws training needs (normals for Z, uniforms for initial weights, flip bits).
 */
export class Rng {
  private readonly r: Random;

  /** A stream for `seed`; `stream` separates independent streams of one run (Z, flips, init). */
  constructor(seed: number, stream = 0, from?: Random) {
    this.r = from ?? Random.seeded(seed >>> 0, stream);
  }

  static fromState(state: RngState): Rng {
    return new Rng(0, 0, Random.fromState(state));
  }

  state(): RngState {
    return this.r.state();
  }

  /** Next 32 random bits. */
  nextU32(): number {
    return this.r.nextUint32();
  }

  /** Uniform in [0, 1) with 32 bits of resolution. */
  uniform(): number {
    return this.nextU32() / 4294967296;
  }

  /** Standard normal draws by Box-Muller; both outputs are used, so fills are pairs. */
  fillNormal(out: Float32Array): Float32Array {
    for (let i = 0; i < out.length; i += 2) {
      const u1 = (this.nextU32() + 1) / 4294967297; // (0, 1]: log never sees 0
      const u2 = this.uniform();
      const r = Math.sqrt(-2 * Math.log(u1));
      out[i] = r * Math.cos(2 * Math.PI * u2);
      if (i + 1 < out.length) out[i + 1] = r * Math.sin(2 * Math.PI * u2);
    }
    return out;
  }

  fillUniform(out: Float32Array, lo: number, hi: number): Float32Array {
    const w = hi - lo;
    for (let i = 0; i < out.length; i++) out[i] = lo + w * this.uniform();
    return out;
  }

  /** n booleans, each true with probability p. */
  bernoulli(n: number, p: number): Uint8Array {
    const out = new Uint8Array(n);
    for (let i = 0; i < n; i++) out[i] = this.uniform() < p ? 1 : 0;
    return out;
  }
}

/** murmur3's finaliser: a bijective 32-bit mix. */
function fmix32(h: number): number {
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b);
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35);
  return (h ^ (h >>> 16)) >>> 0;
}

/**
 * Inverted-dropout multipliers for `count` consecutive rows starting at `rowStart`, each row of
 * `rowSize` elements: 0 with probability `rate`, else 1/(1-rate). Counter-based: element e of
 * global row r in pass p of iteration t gets the same value on any worker.
 */
export function dropoutMask(
  seed: number,
  iteration: number,
  pass: number,
  rowStart: number,
  count: number,
  rowSize: number,
  rate: number,
  out = new Float32Array(count * rowSize),
): Float32Array {
  const keep = 1 / (1 - rate);
  const threshold = Math.floor(rate * 4294967296);
  const base = fmix32(fmix32(seed ^ 0x5bd1e995) ^ Math.imul(iteration, 0x9e3779b1) ^ Math.imul(pass + 1, 0x85ebca77));
  for (let r = 0; r < count; r++) {
    const rowKey = fmix32(base ^ Math.imul(rowStart + r + 1, 0xc2b2ae3d));
    const o = r * rowSize;
    for (let e = 0; e < rowSize; e++) {
      const u = fmix32((rowKey + Math.imul(e, 0x9e3779b9)) >>> 0);
      out[o + e] = u < threshold ? 0 : keep;
    }
  }
  return out;
}
