// The GEMM behind the wasm convolutions (scripts/gemm-wat.ts via worker/kernels/gemm.ts), on a memory of
// its own: the checked-in binaries are the generator's, and both builds agree with a float64
// reference on every edge the driver has (rows past a micro-kernel, columns past a panel, k past a
// k-block, row blocks, transposed A, accumulation, strides), as do packB, im2col and col2im.

import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { compileGemm, gemmModuleSource, GEMM_MODULE_FILE } from '../../scripts/build-wasm.ts';
import { KC, L2_FLOATS, MR } from '../../scripts/gemm-wat.ts';
import { bestGemmBuild, GEMM_TILE_FLOATS, gemmKernels, gemmOn, type GemmBuild } from '../../worker/kernels/gemm.ts';
import { random, relErr } from '../support/numbers.ts';

/** A bump allocator on a fresh memory, 64-byte aligned unless told `misalign` bytes off. */
function heap(pages = 256) {
  const memory = new WebAssembly.Memory({ initial: pages });
  let top = 1024;
  return {
    memory,
    alloc(floats: number, misalign = 0): number {
      const at = ((top + 63) & ~63) + misalign;
      top = at + floats * 4 + 64;
      return at;
    },
    f32: (at: number, n: number) => new Float32Array(memory.buffer, at, n),
  };
}

const builds: GemmBuild[] = bestGemmBuild() === 'fma' ? ['fma', 'plain'] : ['plain'];

describe('gemm.wasm', () => {
  it('is what scripts/gemm-wat.ts generates (run `npm run build:wasm` after editing it)', async () => {
    const [fma, plain] = [await compileGemm(true), await compileGemm(false)];
    expect(readFileSync(GEMM_MODULE_FILE, 'utf8')).toBe(gemmModuleSource(fma, plain));
  });

  it("declines a heap it cannot import (a shared one, as tfjs's threaded build has) rather than throw", () => {
    const shared = new WebAssembly.Memory({ initial: 1, maximum: 16, shared: true });
    expect(() => gemmOn(shared)).toThrow();
    expect(gemmKernels({ wasm: { asm: { memory: shared } } } as never)).toBeUndefined();
    expect(gemmKernels({ wasm: {} } as never)).toBeUndefined();
    expect(gemmKernels({ wasm: { asm: { memory: heap(1).memory } } } as never)).toBeDefined();
  });

  it('has the tile size worker/kernels/gemm.ts allots', () => {
    expect(GEMM_TILE_FLOATS).toBe(MR * 8);
  });
});

for (const build of builds) {
  describe(`the ${build} GEMM`, () => {
    /** C = A B (+ C0 when acc) through packB and gemm, against float64; sentinels around C must survive. */
    function check(
      m: number,
      n: number,
      k: number,
      o: { trans?: boolean; acc?: boolean; lda?: number; ldc?: number; misalign?: number } = {},
    ) {
      const h = heap(
        Math.ceil((((m + 8) * (k + 16) + (k + 1) * (n + 32) * 2 + (m + 1) * (n + 32)) * 4 + 2 ** 16) / 65536) + 1,
      );
      const g = gemmOn(h.memory, build);
      const trans = o.trans ?? false;
      const lda = o.lda ?? (trans ? m : k);
      const ldc = o.ldc ?? n;
      const aRows = trans ? k : m;
      const a = h.alloc(aRows * lda, o.misalign ?? 0);
      const b = h.alloc(k * n, o.misalign ?? 0);
      const bp = h.alloc(Math.ceil(n / 8) * 8 * k);
      const c = h.alloc(m * ldc + 16, o.misalign ?? 0);
      const tmp = h.alloc(GEMM_TILE_FLOATS);
      h.f32(a, aRows * lda).set(random(aRows * lda, m * 7 + k));
      h.f32(b, k * n).set(random(k * n, n * 11 + k));
      const c0 = random(m * ldc + 16, 5).map((v, i) => (i % ldc < n && i < m * ldc ? v : 1234.5));
      h.f32(c, m * ldc + 16).set(c0);
      g.packB(b, n * 4, 4, k, n, bp);
      g.gemm(a, lda * 4, trans ? 1 : 0, bp, c, ldc * 4, m, n, k, o.acc ? 1 : 0, tmp);
      const A = h.f32(a, aRows * lda);
      const B = h.f32(b, k * n);
      const C = h.f32(c, m * ldc + 16);
      const want: number[] = [];
      const got: number[] = [];
      for (let i = 0; i < m; i++) {
        for (let j = 0; j < n; j++) {
          let sum = o.acc ? c0[i * ldc + j] : 0;
          for (let kk = 0; kk < k; kk++) sum += (trans ? A[kk * lda + i] : A[i * lda + kk]) * B[kk * n + j];
          want.push(sum);
          got.push(C[i * ldc + j]);
        }
        for (let j = n; j < ldc; j++) expect(C[i * ldc + j], `column ${j} past n = ${n}`).toBe(1234.5);
      }
      for (let i = m * ldc; i < m * ldc + 16; i++) expect(C[i], 'past the end of C').toBe(1234.5);
      return relErr(got, want);
    }

    it('multiplies shapes that fill no tile, panel or k-block exactly', () => {
      for (const [m, n, k] of [
        [1, 1, 1],
        [MR, 8, 3],
        [MR + 1, 9, 7],
        [7, 13, 9],
        [23, 16, KC + 5],
        [33, 21, 2 * KC + 1],
        [3, 40, 600],
      ]) {
        for (const trans of [false, true])
          expect(check(m, n, k, { trans }), `${m}x${n}x${k} trans ${trans}`).toBeLessThan(1e-5);
      }
    });

    it('splits rows into blocks that fit in L2, each with its own last tile', () => {
      // k = KC: a block is L2_FLOATS / KC rows, rounded down to MR.
      const rows = Math.floor(L2_FLOATS / KC / MR) * MR;
      expect(check(2 * rows + 3, 24, KC)).toBeLessThan(1e-5);
      expect(check(2 * rows + 3, 24, KC, { trans: true })).toBeLessThan(1e-5);
    });

    it('accumulates into C, with strided rows of A and C and misaligned buffers', () => {
      for (const trans of [false, true]) {
        expect(
          check(11, 19, 37, { trans, acc: true, lda: trans ? 14 : 41, ldc: 27, misalign: 4 }),
          `trans ${trans}`,
        ).toBeLessThan(1e-5);
      }
    });

    it('packs B from any row and column stride, zeros past n', () => {
      const h = heap(4);
      const kernels = gemmOn(h.memory, build);
      const [k, n, rs, cs] = [5, 11, 3, 17]; // element (kk, j) at kk*rs + j*cs floats
      const src = h.alloc(k * rs + n * cs);
      h.f32(src, k * rs + n * cs).set(random(k * rs + n * cs, 9));
      const dst = h.alloc(16 * k);
      kernels.packB(src, rs * 4, cs * 4, k, n, dst);
      const S = h.f32(src, k * rs + n * cs);
      const D = h.f32(dst, 16 * k);
      for (let p = 0; p < 2; p++) {
        for (let kk = 0; kk < k; kk++) {
          for (let t = 0; t < 8; t++) {
            const j = p * 8 + t;
            expect(D[(p * k + kk) * 8 + t], `panel ${p} row ${kk} lane ${t}`).toBe(j < n ? S[kk * rs + j * cs] : 0);
          }
        }
      }
    });

    it('gathers im2col and scatters col2im as their definitions say', () => {
      const h = heap(8);
      const kernels = gemmOn(h.memory, build);
      const [b, H, W, c, kh, kw, sh, sw, pt, pl] = [2, 7, 6, 3, 3, 4, 2, 1, 1, 2];
      const oh = Math.floor((H + pt + 1 - kh) / sh) + 1; // one row of bottom padding
      const ow = Math.floor((W + pl + 1 - kw) / sw) + 1;
      const x = h.alloc(b * H * W * c);
      const X = random(b * H * W * c, 3);
      h.f32(x, X.length).set(X);
      const cols = h.alloc(b * oh * ow * kh * kw * c);
      kernels.im2col(x, b, H, W, c, kh, kw, sh, sw, pt, pl, oh, ow, cols);
      const C = h.f32(cols, b * oh * ow * kh * kw * c);
      const dx = new Float64Array(b * H * W * c);
      let at = 0;
      for (let n = 0; n < b; n++) {
        for (let y = 0; y < oh; y++) {
          for (let z = 0; z < ow; z++) {
            for (let i = 0; i < kh; i++) {
              for (let j = 0; j < kw; j++) {
                for (let ch = 0; ch < c; ch++, at++) {
                  const [r, q] = [y * sh + i - pt, z * sw + j - pl];
                  const inside = r >= 0 && r < H && q >= 0 && q < W;
                  const src = ((n * H + r) * W + q) * c + ch;
                  expect(C[at]).toBe(inside ? X[src] : 0);
                  if (inside) dx[src] += C[at];
                }
              }
            }
          }
        }
      }
      const back = h.alloc(b * H * W * c);
      h.f32(back, b * H * W * c).fill(0);
      kernels.col2im(cols, b, H, W, c, kh, kw, sh, sw, pt, pl, oh, ow, back);
      expect(relErr(h.f32(back, b * H * W * c), dx)).toBeLessThan(1e-6);
    });
  });
}
