// The data pipeline's own seeded PRNG: xoshiro128** seeded through splitmix32, with a state
// that is four plain numbers, so an iterator's position can be written into a checkpoint.

/** The generator's whole state: four unsigned 32-bit integers, JSON-serialisable. */
export type RandomState = [number, number, number, number];

/** One splitmix32 step: a good 32-bit mixer, used to seed and to derive independent streams. */
function splitmix32(x: number): number {
  let z = (x + 0x9e3779b9) | 0;
  z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
  z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
  return (z ^ (z >>> 16)) >>> 0;
}

/**
 * Hashes a list of non-negative integers (each below 2^53) into a 32-bit value. Used to key
 * a stream by (seed, purpose, epoch, ...) so that one stream never depends on how many numbers
 * another one consumed.
 */
export function hashInts(parts: readonly number[]): number {
  let h = 0x243f6a88;
  for (const part of parts) {
    if (!Number.isSafeInteger(part) || part < 0) {
      throw new RangeError(`random: seed parts must be non-negative safe integers, got ${part}`);
    }
    // Both 32-bit halves take part, so seeds above 2^32 stay distinct.
    h = splitmix32(h ^ (part >>> 0));
    h = splitmix32(h ^ Math.floor(part / 0x1_0000_0000));
  }
  return h;
}

export class Random {
  // A typed array keeps the four words unboxed: plain number fields above 2^31 would be heap doubles.
  private readonly s: Uint32Array;

  private constructor(state: RandomState) {
    this.s = Uint32Array.from(state);
  }

  /** A generator keyed by any list of non-negative integers, e.g. `Random.seeded(seed, epoch)`. */
  static seeded(...parts: number[]): Random {
    let x = hashInts(parts);
    const state: number[] = [];
    for (let i = 0; i < 4; i++) {
      x = splitmix32(x + i);
      state.push(x);
    }
    // xoshiro's one forbidden state is all zeros; splitmix32 of distinct inputs never gives it
    // four times over, but guard anyway since the cost is nil.
    if (!state.some((v) => v !== 0)) state[0] = 1;
    return new Random(state as RandomState);
  }

  /** Restores a generator from `state()`; rejects anything that is not four uint32 values. */
  static fromState(state: unknown): Random {
    if (
      !Array.isArray(state) ||
      state.length !== 4 ||
      !state.every((v) => Number.isInteger(v) && v >= 0 && v <= 0xffffffff) ||
      state.every((v) => v === 0)
    ) {
      throw new RangeError('random: state must be four unsigned 32-bit integers, not all zero');
    }
    return new Random(state as RandomState);
  }

  state(): RandomState {
    return [this.s[0], this.s[1], this.s[2], this.s[3]];
  }

  /** Next unsigned 32-bit integer (xoshiro128**). */
  nextUint32(): number {
    const s = this.s;
    const result = Math.imul(rotl(Math.imul(s[1], 5), 7), 9) >>> 0;
    const t = s[1] << 9;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 11);
    return result;
  }

  /** Uniform in [0, 1) with 32 bits of resolution. */
  next(): number {
    return this.nextUint32() / 0x1_0000_0000;
  }

  /** Uniform in [lo, hi). */
  range(lo: number, hi: number): number {
    return lo + (hi - lo) * this.next();
  }

  /** Uniform integer in [0, n), without modulo bias (n at most 2^32). */
  int(n: number): number {
    if (!Number.isInteger(n) || n <= 0 || n > 0x1_0000_0000) {
      throw new RangeError(`random: int(n) needs an integer n in [1, 2^32], got ${n}`);
    }
    // Rejection sampling: discard the top sliver that would make some values more likely.
    const limit = 0x1_0000_0000 - (0x1_0000_0000 % n);
    let x = this.nextUint32();
    while (x >= limit) x = this.nextUint32();
    return x % n;
  }

  /** Fisher-Yates shuffle of [0, n) into a new array. */
  permutation(n: number): Uint32Array {
    const order = new Uint32Array(n);
    for (let i = 0; i < n; i++) order[i] = i;
    for (let i = n - 1; i > 0; i--) {
      const j = this.int(i + 1);
      const t = order[i];
      order[i] = order[j];
      order[j] = t;
    }
    return order;
  }
}

function rotl(x: number, k: number): number {
  return (x << k) | (x >>> (32 - k));
}
