// The coordinator's SIMD kernels (protocol/arena/simd.wat via simd.ts): the checked-in binary is
// the source's, the add computes bitwise the floats of the JavaScript loop, the check finds every
// NaN and infinity, and the arena's blocks and views stay sound as it grows and reuses memory.

import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { compileSimdWat, wasmModuleSource, WASM_MODULE_FILE } from '../../scripts/build-wasm.ts';
import { firstNonFinite } from '../../protocol/wire/framing.ts';
import { meanAdamStep } from '../../coordinator/optimizer/adam.ts';
import { addScaled, addScaledMany } from '../../coordinator/optimizer/reduce.ts';
import { simdArena } from '../../protocol/arena/simd.ts';
import { arenaMemory } from '../../protocol/wire/receive-memory.ts';
import { ShmFile } from '../../protocol/wire/shm-file.ts';
import { f32Bits, HAND_GRADS, HAND_W0, matlabAdamByHand, SEED_ADAM } from '../support/matlab-adam.ts';

/** The JavaScript loop the kernel must match, element by element (reduce.ts before the arena). */
function addScaledJs(sum: Float32Array, g: Float32Array, n: number, first: boolean, from: number, to: number): void {
  for (let i = from; i < to; i++) sum[i] = first ? 0 + n * g[i] : sum[i] + n * g[i];
}

/** Values that stress rounding: wide exponents, subnormals, signed zeros, the largest floats. */
function awkward(length: number, seed: number): Float32Array {
  const out = new Float32Array(length);
  let s = seed >>> 0;
  const rnd = () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
  const special = [0, -0, 1e-45, -1e-45, 1.1754942e-38, 3.4028235e38, -3.4028235e38, 1, -1];
  for (let i = 0; i < length; i++) {
    out[i] = rnd() < 0.05 ? special[Math.floor(rnd() * special.length)] : (rnd() - 0.5) * 10 ** (rnd() * 12 - 8);
  }
  return out;
}

function arenaCopy(a: Float32Array): Float32Array {
  const arena = simdArena();
  const block = arena.alloc(a.byteLength)!;
  const out = arena.f32(block, a.length);
  out.set(a);
  return out;
}

const bits = (a: Float32Array) => Array.from(new Int32Array(a.buffer, a.byteOffset, a.length));

describe('simd.wasm', () => {
  it('is the compiled simd.wat (run `npm run build:wasm` after editing the source)', async () => {
    const binary = await compileSimdWat();
    expect(readFileSync(WASM_MODULE_FILE, 'utf8')).toBe(wasmModuleSource(binary));
  });
});

describe('addScaled in the arena', () => {
  it('gives bitwise the floats of the JavaScript loop, first or not, at any offset and length', () => {
    const arena = simdArena();
    for (const [length, from, to] of [
      [1037, 0, 1037],
      [1037, 3, 1030],
      [8, 1, 2],
      [5, 0, 5],
      [4096, 17, 4095],
    ]) {
      const g = awkward(length, length + from);
      const start = awkward(length, 7 * length);
      for (const [n, first] of [
        [1, true],
        [32, false],
        [127, false],
        [64, true],
      ] as const) {
        const want = start.slice();
        addScaledJs(want, g, n, first, from, to);
        const sum = arenaCopy(start);
        const ga = arenaCopy(g);
        expect(arena.address(sum)).toBeGreaterThan(0);
        addScaled(sum, ga, n, first, from, to);
        expect(bits(sum)).toEqual(bits(want));
      }
    }
  });

  it('fuses several shards into one pass with the floats of one call per shard, for 1 to 7 shards', () => {
    for (const shards of [1, 2, 3, 4, 5, 7]) {
      const length = 1031;
      const gs = Array.from({ length: shards }, (_, k) => awkward(length, 100 + k));
      const ns = gs.map((_, k) => [32, 31, 1, 127, 64, 5, 9][k]);
      for (const first of [true, false]) {
        const want = awkward(length, 9);
        for (const [k, g] of gs.entries()) addScaledJs(want, g, ns[k], first && k === 0, 2, 1029);
        const sum = arenaCopy(awkward(length, 9));
        addScaledMany(sum, gs.map(arenaCopy), ns, first, 2, 1029);
        expect(bits(sum), `${shards} shards, first ${first}`).toEqual(bits(want));
      }
    }
  });

  it('falls back to the JavaScript loop when either array is outside the arena, with the same floats', () => {
    const g = awkward(333, 1);
    const start = awkward(333, 2);
    const want = start.slice();
    addScaledJs(want, g, 3, false, 0, 333);
    const inArena = arenaCopy(start);
    addScaled(inArena, g, 3, false);
    expect(bits(inArena)).toEqual(bits(want));
    expect(simdArena().address(g)).toBe(-1);
  });
});

describe('meanAdamStep in the arena', () => {
  it("gives bitwise MATLAB adamupdate's floats, written out by hand, over three steps", () => {
    const want = matlabAdamByHand();
    const [w, m, v, g] = [
      Float32Array.from(HAND_W0),
      new Float32Array(8),
      new Float32Array(8),
      new Float32Array(8),
    ].map(arenaCopy);
    for (const a of [w, m, v, g]) expect(simdArena().address(a)).toBeGreaterThan(0);
    // 8 floats, two vectors: the kernel does every element, no JavaScript tail.
    HAND_GRADS.forEach((grad, k) => {
      g.set(grad);
      meanAdamStep(w, g, 1, m, v, k + 1, SEED_ADAM);
    });
    expect(f32Bits(w)).toEqual(f32Bits(want.w));
    expect(f32Bits(m)).toEqual(f32Bits(want.m));
    expect(f32Bits(v)).toEqual(f32Bits(want.v));
    expect(w[0]).not.toBe(HAND_W0[0]);
  });

  it('gives bitwise the floats of the JavaScript float32 loop, at any offset and length', () => {
    const hyper = { lr: 2e-4, beta1: 0.5, beta2: 0.999, epsilon: 1e-8 };
    for (const [length, from, to] of [
      [1037, 0, 1037],
      [1037, 5, 1031],
      [7, 1, 6],
      [4096, 0, 4096],
    ]) {
      const w = awkward(length, 1).map((x) => x * 1e-3);
      const sum = awkward(length, 2);
      const m = awkward(length, 3).map((x) => x * 1e-4);
      const v = awkward(length, 4).map((x) => Math.abs(x) * 1e-6);
      const js = [w, sum, m, v].map((a) => a.slice());
      const wasm = [w, sum, m, v].map(arenaCopy);
      for (const t of [1, 2, 30]) {
        meanAdamStep(js[0], js[1], 1 / 96, js[2], js[3], t, hyper, from, to);
        meanAdamStep(wasm[0], wasm[1], 1 / 96, wasm[2], wasm[3], t, hyper, from, to);
      }
      expect(simdArena().address(wasm[0])).toBeGreaterThan(0);
      for (const k of [0, 2, 3]) expect(bits(wasm[k])).toEqual(bits(js[k]));
      // It stepped: the weights moved inside the range and nowhere else.
      expect(wasm[0][from + 1]).not.toBe(w[from + 1]);
      if (from > 0) expect(wasm[0][0]).toBe(w[0]);
    }
  });
});

describe('firstNonFinite in the arena', () => {
  it('finds a NaN or an infinity at every position, and nothing in finite extremes', () => {
    for (const length of [1, 15, 16, 17, 40, 1000]) {
      const clean = arenaCopy(awkward(length, length));
      expect(firstNonFinite(clean)).toBe(-1);
      for (const bad of [NaN, Infinity, -Infinity]) {
        for (const at of new Set([0, length >> 1, length - 1, Math.min(length - 1, 16)])) {
          const a = arenaCopy(clean);
          a[at] = bad;
          expect(firstNonFinite(a), `${bad} at ${at} of ${length}`).toBe(at);
        }
      }
    }
  });
});

describe('firstNonFinite outside the arena, through the scratch block', () => {
  it('finds a NaN or an infinity in any chunk of a large array, and nothing in a finite one', () => {
    simdArena();
    const length = 16384 * 3 + 5;
    const clean = awkward(length, 77);
    expect(simdArena().address(clean)).toBe(-1);
    expect(firstNonFinite(clean)).toBe(-1);
    for (const at of [0, 16383, 16384, 40000, length - 1]) {
      const a = clean.slice();
      a[at] = at % 2 ? NaN : -Infinity;
      expect(firstNonFinite(a), `at ${at}`).toBe(at);
    }
  });
});

describe('SimdArena', () => {
  it('reuses freed blocks of a size, and grows without moving what it holds', () => {
    const arena = simdArena();
    const a = arena.alloc(1000)!;
    const view = arena.f32(a, 250).fill(3.5);
    arena.free(a);
    expect(arena.alloc(1000)!.ptr).toBe(a.ptr);
    const before = arena.size;
    const big = arena.alloc(before + (1 << 20))!;
    expect(arena.size).toBeGreaterThan(before);
    expect(view[249]).toBe(3.5);
    // Views made before and after the grow see the same memory.
    arena.f32(a, 250)[0] = -2;
    expect(view[0]).toBe(-2);
    arena.free(big);
  });

  it('is where the coordinator reads shared-memory gradients, and gets the buffers back', () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'gan-dist-simd-'));
    try {
      const file = path.join(dir, 'grads');
      const writer = new ShmFile(file, 'create');
      const reader = new ShmFile(file, 'open', arenaMemory());
      const frame = Buffer.from(new Float32Array([1, 2, 3, 4, 5, 6, 7, 8]).buffer);
      writer.write(frame, 1);
      const got = reader.read(1, frame.byteLength);
      expect(simdArena().address(got)).toBeGreaterThan(0);
      expect(got.equals(frame)).toBe(true);
      const ptr = simdArena().address(got);
      reader.dispose();
      // The freed block is what the next reader of such a frame gets.
      const again = new ShmFile(file, 'open', arenaMemory());
      expect(simdArena().address(again.read(1, frame.byteLength))).toBe(ptr);
      again.dispose();
      writer.close();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
