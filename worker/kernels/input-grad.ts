// dx composed of XNNPACK's kernels, where our GEMM is not used: the s*s sub-pixel phases of the
// kernel, each a stride-1 conv of dy interleaved into dx; or, for a small dy, W x dy^T and a col2im.

import type { backend_util, TensorInfo } from '@tensorflow/tfjs';
import { keptFilters } from './kept-filters.ts';
import { matMul } from './matmul.ts';
import type { Scratch } from './scratch.ts';

/**
 * One axis of a stride-s transposed conv split into phases: output index i = s*m + r takes the
 * kernel taps k = s*t + q, q = (r + pad) mod s, reading dy[m + c - t], c = floor((r + pad) / s).
 */
interface Phase {
  q: number;
  taps: number;
  c: number;
}

function phases(stride: number, kernel: number, pad: number): Phase[] {
  return Array.from({ length: stride }, (_, r) => {
    const q = (r + pad) % stride;
    return { q, taps: q < kernel ? Math.ceil((kernel - q) / stride) : 0, c: Math.floor((r + pad) / stride) };
  });
}

/** The dy window of a set of phases sharing a conv: offsets d = c - t in [lo, lo + span). */
function window(ps: Phase[]): { lo: number; span: number } {
  const lo = Math.min(...ps.map((p) => p.c - p.taps + 1));
  return { lo, span: Math.max(...ps.map((p) => p.c)) - lo + 1 };
}

/** Padding for `rows` outputs of a window at dy offset lo over `len` rows, and leading rows to drop when lo > 0. */
function convPad(lo: number, span: number, rows: number, len: number): { before: number; after: number; skip: number } {
  const before = Math.max(0, -lo);
  const skip = Math.max(0, lo);
  return { before, after: Math.max(0, skip + rows + span - 1 - before - len), skip };
}

/** One conv of the decomposition: output row phase rh and column phases rw, side by side in its channels. */
interface PhaseConv {
  rh: number;
  rw: number[];
  rows: { lo: number; span: number };
  cols: { lo: number; span: number };
}

function phaseConvs(info: backend_util.Conv2DInfo, byRow: boolean): PhaseConv[] {
  const ph = phases(info.strideHeight, info.filterHeight, info.padInfo.top);
  const pw = phases(info.strideWidth, info.filterWidth, info.padInfo.left);
  const colSets = byRow ? [pw.map((_, r) => r)] : pw.map((_, r) => [r]);
  return ph.flatMap((p, rh) =>
    colSets.map((rw) => ({ rh, rw, rows: window([p]), cols: window(rw.map((r) => pw[r])) })),
  );
}

/** Each conv's filter [Th, Tw, Cdy, |rw|*Cx]: its phases' taps, flipped, in and out channels swapped. */
function phaseFilters(s: Scratch, filter: TensorInfo, info: backend_util.Conv2DInfo, convs: PhaseConv[]): TensorInfo[] {
  const [, kw, cx, cdy] = filter.shape;
  const wt = s.transpose(filter, [0, 1, 3, 2]); // [KH, KW, Cdy, Cx]
  const ph = phases(info.strideHeight, info.filterHeight, info.padInfo.top);
  const pw = phases(info.strideWidth, info.filterWidth, info.padInfo.left);
  const out = convs.map((g) => s.alloc([g.rows.span, g.cols.span, cdy, g.rw.length * cx]));
  const w = s.view(wt);
  convs.forEach((g, gi) => {
    const f = s.view(out[gi]);
    const np = g.rw.length;
    const p = ph[g.rh];
    for (let u = 0; u < g.rows.span; u++) {
      const tr = p.c - (g.rows.lo + u);
      if (tr < 0 || tr >= p.taps) continue;
      for (let v = 0; v < g.cols.span; v++) {
        g.rw.forEach((r, j) => {
          const tc = pw[r].c - (g.cols.lo + v);
          if (tc < 0 || tc >= pw[r].taps) return; // zero: this phase has no tap here
          const src = ((info.strideHeight * tr + p.q) * kw + info.strideWidth * tc + pw[r].q) * cdy * cx;
          const dst = (u * g.cols.span + v) * cdy * np * cx + j * cx;
          if (np === 1) f.set(w.subarray(src, src + cdy * cx), dst);
          else
            for (let co = 0; co < cdy; co++) f.set(w.subarray(src + co * cx, src + (co + 1) * cx), dst + co * np * cx);
        });
      }
    }
  });
  return out;
}

export function inputGradPhases(
  s: Scratch,
  dy: TensorInfo,
  filter: TensorInfo,
  info: backend_util.Conv2DInfo,
  byRow: boolean,
): TensorInfo {
  const { batchSize: b, inHeight: h, inWidth: w, inChannels: cx, strideHeight: sh, strideWidth: sw } = info;
  const convs = phaseConvs(info, byRow);
  const key = `phases ${filter.shape} ${byRow} ${sh} ${sw} ${info.padInfo.top} ${info.padInfo.left}`;
  const filters = keptFilters(s, filter, key, (make) => phaseFilters(make, filter, info, convs));
  const mh = Math.ceil(h / sh);
  const mw = Math.ceil(w / sw);
  const outs = convs.map((g, i) => {
    const ph = convPad(g.rows.lo, g.rows.span, mh, info.outHeight);
    const pw = convPad(g.cols.lo, g.cols.span, mw, info.outWidth);
    const out = s.conv(dy, filters[i], [
      [0, 0],
      [ph.before, ph.after],
      [pw.before, pw.after],
      [0, 0],
    ]);
    const exact = ph.skip === 0 && pw.skip === 0 && out.shape[1] === mh && out.shape[2] === mw;
    return exact ? out : s.slice(out, [0, ph.skip, pw.skip, 0], [b, mh, mw, out.shape[3]]);
  });
  const dx = s.alloc([b, h, w, cx], false);
  const out = s.view(dx);
  convs.forEach(({ rh, rw }, gi) => {
    // dx pixel (s*m + rh, s*n + rw[j]) is the conv's pixel (m, n), channels j*Cx .. (j+1)*Cx.
    const src = s.view(outs[gi]);
    const run = rw.length * cx;
    const wholeRows = rw.length === sw && mw * sw === w;
    for (let n = 0; n < b; n++) {
      for (let m = 0; m * sh + rh < h; m++) {
        const from = (n * mh + m) * mw * run;
        const row = (n * h + m * sh + rh) * w * cx;
        if (wholeRows) {
          out.set(src.subarray(from, from + mw * run), row);
          continue;
        }
        for (let q = 0; q < mw; q++) {
          rw.forEach((r, j) => {
            const col = q * sw + r;
            if (col >= w) return;
            const at = from + q * run + j * cx;
            if (cx >= 16) out.set(src.subarray(at, at + cx), row + col * cx);
            else for (let c = 0; c < cx; c++) out[row + col * cx + c] = src[at + c];
          });
        }
      }
    }
  });
  return dx;
}

export function inputGradCol2im(
  s: Scratch,
  dy: TensorInfo,
  filter: TensorInfo,
  info: backend_util.Conv2DInfo,
): TensorInfo {
  const { batchSize: b, inHeight: h, inWidth: w, inChannels: cx, outHeight: oh, outWidth: ow, outChannels: cdy } = info;
  const { filterHeight: kh, filterWidth: kw, strideHeight: sh, strideWidth: sw, padInfo } = info;
  const m = b * oh * ow;
  // colsT [(kh, kw, ci), (b, o, ow)]: dy is the packed operand, so W is used as it is.
  const colsT = matMul(s, s.reshape(filter, [kh * kw * cx, cdy]), s.transpose(s.reshape(dy, [m, cdy]), [1, 0]));
  const dx = s.alloc([b, h, w, cx]);
  const out = s.view(dx);
  const src = s.view(colsT);
  for (let i = 0; i < kh; i++) {
    for (let j = 0; j < kw; j++) {
      const p0 = Math.max(0, Math.ceil((padInfo.left - j) / sw));
      const p1 = Math.min(ow, Math.floor((w - 1 + padInfo.left - j) / sw) + 1);
      for (let n = 0; n < b; n++) {
        for (let o = 0; o < oh; o++) {
          const row = o * sh + i - padInfo.top;
          if (row < 0 || row >= h) continue;
          for (let c = 0; c < cx; c++) {
            const from = ((i * kw + j) * cx + c) * m + (n * oh + o) * ow;
            const to = ((n * h + row) * w + j - padInfo.left) * cx + c;
            for (let p = p0; p < p1; p++) out[to + p * sw * cx] += src[from + p];
          }
        }
      }
    }
  }
  return dx;
}
