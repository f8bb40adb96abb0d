// The wasm convolution kernels against tfjs's 'cpu' backend: forward, dx and dW of every conv and
// transposed conv of G and D (nf 64 and 16, image 64 and 32), the odd configurations around them,
// every decomposition forced (both GEMM builds, XNNPACK's compositions), BatchMatMul and Tile; and
// that they leave nothing behind.

import type { Tensor, Tensor4D } from '@tensorflow/tfjs';
import { beforeAll, describe, expect, it } from 'vitest';
import { loadBackend, type TF } from '../../worker/backend.ts';
import { forceGemmBuild } from '../../worker/kernels/gemm.ts';
import { random, relErr as relErrOf } from '../support/numbers.ts';
import {
  BN_INPUT_GRAD,
  BN_PARAM_GRADS,
  CHANNEL_SUM,
  LEAKY_RELU,
  LEAKY_RELU_GRAD,
  MOMENTS,
} from '../../worker/kernels/fused-kernels.ts';
import {
  forceConvGradWays,
  registerWasmGradientKernels,
  unregisterWasmGradientKernels,
  type ConvWay,
  type FilterGradWay,
  type InputGradWay,
} from '../../worker/kernels/wasm-kernels.ts';

type Pad = 'same' | 'valid' | number | [[number, number], [number, number], [number, number], [number, number]];

/** conv2d of x [B,H,W,Cin] by [k,k,Cin,out], or conv2dTranspose of x by [k,k,out,Cin] to `size`. */
interface Case {
  name: string;
  x: [number, number, number, number];
  k: number;
  out: number;
  stride: number;
  pad: Pad;
  transpose?: boolean;
  size?: [number, number];
}

const TOL = 1e-5;
let tf: TF;

beforeAll(async () => {
  ({ tf } = await loadBackend('wasm', { threads: 1 }));
});

const prod = (s: number[]) => s.reduce((a, b) => a * b, 1);
const filterShape = (c: Case): Tensor4D['shape'] =>
  c.transpose ? [c.k, c.k, c.out, c.x[3]] : [c.k, c.k, c.x[3], c.out];

function conv(c: Case, a: Tensor, b: Tensor): Tensor {
  return c.transpose
    ? tf.conv2dTranspose(
        a as Tensor4D,
        b as Tensor4D,
        [c.x[0], ...(c.size as [number, number]), c.out],
        c.stride,
        c.pad as 'same',
      )
    : tf.conv2d(a as Tensor4D, b as Tensor4D, c.stride, c.pad as 'same');
}

interface Result {
  y: Float32Array;
  dx: Float32Array;
  dw: Float32Array;
}

/**
 * Runs `f` in a tidy and reads its tensors back outside it: a tidy walks whatever it returns, and
 * walking a typed array of millions of elements costs seconds.
 */
function read(f: () => Tensor[]): Float32Array[] {
  const ts = tf.tidy(f);
  try {
    return ts.map((t) => t.dataSync() as Float32Array);
  } finally {
    tf.dispose(ts);
  }
}

/** y, and dx and dW by tf.grads for upstream gradient dy, on the current backend. */
function run(c: Case, xa: Float32Array, wa: Float32Array, dya: Float32Array): Result {
  const [y, dx, dw] = read(() => {
    const x = tf.tensor4d(xa, c.x);
    const w = tf.tensor4d(wa, filterShape(c));
    const y = conv(c, x, w);
    return [y, ...tf.grads((a: Tensor, b: Tensor) => conv(c, a, b))([x, w], tf.tensor(dya, y.shape))];
  });
  return { y, dx, dw };
}

/** dW of conv(x, .) for upstream gradient g on the cpu backend, as im2col(x)^T g by matMul. */
function im2colFilterGrad(x: Tensor4D, g: Tensor4D, c: Case): Tensor {
  const [b, h, w, cin] = x.shape;
  const info = tf.backend_util.computeConv2DInfo(x.shape, [c.k, c.k, cin, g.shape[3]], c.stride, 1, c.pad as 'same');
  const { outHeight: oh, outWidth: ow, strideHeight: sh, strideWidth: sw, padInfo } = info;
  const xp = tf.pad(x, [
    [0, 0],
    [padInfo.top, Math.max(0, (oh - 1) * sh + c.k - h - padInfo.top)],
    [padInfo.left, Math.max(0, (ow - 1) * sw + c.k - w - padInfo.left)],
    [0, 0],
  ]);
  const cols: Tensor[] = [];
  for (let i = 0; i < c.k; i++) {
    for (let j = 0; j < c.k; j++) {
      cols.push(
        tf.stridedSlice(xp, [0, i, j, 0], [b, i + (oh - 1) * sh + 1, j + (ow - 1) * sw + 1, cin], [1, sh, sw, 1]),
      );
    }
  }
  const m = tf.reshape(tf.concat(cols, 3), [b * oh * ow, c.k * c.k * cin]);
  return tf.matMul(m, tf.reshape(g, [b * oh * ow, g.shape[3]]), true, false);
}

/**
 * The cpu reference of a wide layer: y, dx by tf.grad, and dW by im2col, because the cpu backend's
 * Conv2DBackpropFilter is a naive loop (about 30 s for one nf=64 layer at batch 1).
 */
function runWide(c: Case, xa: Float32Array, wa: Float32Array, dya: Float32Array): Result {
  const [y, dx, dw] = read(() => {
    const x = tf.tensor4d(xa, c.x);
    const w = tf.tensor4d(wa, filterShape(c));
    const y = conv(c, x, w);
    const dy = tf.tensor4d(dya, y.shape as Tensor4D['shape']);
    // A transposed conv's dW is that of the conv it transposes, whose input is the upstream gradient.
    return [
      y,
      tf.grad((a: Tensor) => conv(c, a, w))(x, dy),
      c.transpose ? im2colFilterGrad(dy, x, c) : im2colFilterGrad(x, dy, c),
    ];
  });
  return { y, dx, dw };
}

function expectClose(e: Record<string, number>, what: string): void {
  for (const [k, v] of Object.entries(e)) expect(v, `${what}: ${k}`).toBeLessThanOrEqual(TOL);
}

/** max |a - b| / max |b|, of arrays of one length. */
function relErr(a: Float32Array, b: Float32Array): number {
  expect(a.length).toBe(b.length);
  return relErrOf(a, b);
}

/** Relative errors of wasm against cpu; `wide` takes cpu's dW from im2col rather than its own kernel. */
async function parity(c: Case, wide = false): Promise<{ y: number; dx: number; dw: number }> {
  const xa = random(prod(c.x), 1);
  const wa = random(prod(filterShape(c)), 2);
  await tf.setBackend('wasm');
  const yShape = tf.tidy(() => conv(c, tf.tensor4d(xa, c.x), tf.tensor4d(wa, filterShape(c))).shape);
  const dya = random(prod(yShape), 3);
  const got = run(c, xa, wa, dya);
  await tf.setBackend('cpu');
  const ref = wide ? runWide(c, xa, wa, dya) : run(c, xa, wa, dya);
  await tf.setBackend('wasm');
  return { y: relErr(got.y, ref.y), dx: relErr(got.dx, ref.dx), dw: relErr(got.dw, ref.dw) };
}

/** D's convs and G's transposed convs for nf filters at image size 64 or 32, batch b. */
function modelCases(nf: number, image: 64 | 32, b: number): Case[] {
  const cases: Case[] = [];
  let c = 3;
  for (let h: number = image, out = nf; h > 4; h /= 2, c = out, out *= 2) {
    cases.push({
      name: `D conv ${h}x${h}x${c} -> ${h / 2}x${h / 2}x${out}`,
      x: [b, h, h, c],
      k: 5,
      out,
      stride: 2,
      pad: 'same',
    });
  }
  cases.push({ name: `D conv 4x4x${c} -> 1x1x1 valid`, x: [b, 4, 4, c], k: 4, out: 1, stride: 1, pad: 'valid' });
  cases.push({
    name: `G tconv 4x4x${8 * nf} -> 8x8x${4 * nf} s1 valid`,
    x: [b, 4, 4, 8 * nf],
    k: 5,
    out: 4 * nf,
    stride: 1,
    pad: 'valid',
    transpose: true,
    size: [8, 8],
  });
  c = 4 * nf;
  for (let h = 8; h < image; h *= 2) {
    const out = 2 * h === image ? 3 : c / 2;
    cases.push({
      name: `G tconv ${h}x${h}x${c} -> ${2 * h}x${2 * h}x${out} s2 same`,
      x: [b, h, h, c],
      k: 5,
      out,
      stride: 2,
      pad: 'same',
      transpose: true,
      size: [2 * h, 2 * h],
    });
    c = out;
  }
  return cases;
}

const odd: Case[] = [
  { name: 'odd sizes, stride 2 same', x: [2, 15, 13, 4], k: 5, out: 6, stride: 2, pad: 'same' },
  { name: 'stride 1 same', x: [2, 7, 9, 5], k: 3, out: 4, stride: 1, pad: 'same' },
  { name: 'stride 2 valid, odd sizes', x: [2, 11, 12, 3], k: 5, out: 4, stride: 2, pad: 'valid' },
  { name: 'stride 3 same', x: [1, 13, 14, 3], k: 5, out: 4, stride: 3, pad: 'same' },
  { name: 'a kernel smaller than the stride', x: [1, 8, 7, 3], k: 1, out: 4, stride: 2, pad: 'same' },
  { name: 'a numeric pad', x: [1, 9, 10, 3], k: 3, out: 4, stride: 2, pad: 1 },
  {
    name: 'an explicit asymmetric pad',
    x: [1, 9, 10, 3],
    k: 5,
    out: 4,
    stride: 2,
    pad: [
      [0, 0],
      [3, 0],
      [1, 2],
      [0, 0],
    ],
  },
  {
    name: 'a transposed conv to an odd size',
    x: [2, 8, 8, 8],
    k: 5,
    out: 3,
    stride: 2,
    pad: 'same',
    transpose: true,
    size: [15, 16],
  },
  {
    name: 'a transposed conv, stride 2 valid',
    x: [2, 5, 6, 4],
    k: 4,
    out: 3,
    stride: 2,
    pad: 'valid',
    transpose: true,
    size: [12, 14],
  },
  {
    name: 'a transposed conv, stride 1 same',
    x: [2, 6, 5, 8],
    k: 5,
    out: 6,
    stride: 1,
    pad: 'same',
    transpose: true,
    size: [6, 5],
  },
  // 256 output pixels an image: im2col blocks of two images (BLOCK_PIXELS 512), the last of one.
  { name: 'im2col blocks of two images and a last of one', x: [5, 32, 32, 6], k: 5, out: 10, stride: 2, pad: 'same' },
  {
    name: 'a transposed conv in blocks of two images and one',
    x: [5, 16, 16, 10],
    k: 5,
    out: 6,
    stride: 2,
    pad: 'same',
    transpose: true,
    size: [32, 32],
  },
];

describe('wasm gradient kernels', () => {
  const names = ['Conv2D', 'Conv2DBackpropFilter', 'Conv2DBackpropInput', 'BatchMatMul', 'Tile'];

  it('are registered once however often registration is called', () => {
    const before = names.map((k) => tf.getKernel(k, 'wasm')?.kernelFunc);
    registerWasmGradientKernels();
    expect(before.every((f) => typeof f === 'function')).toBe(true);
    expect(names.map((k) => tf.getKernel(k, 'wasm')?.kernelFunc)).toEqual(before);
  });

  for (const nf of [64, 16]) {
    // The cpu reference is slow on wide layers: batch 1 at nf 64, 2 at the presets' nf 16. Layers
    // that both image sizes share are tested once.
    const cases = new Map<string, Case>();
    for (const image of [64, 32] as const)
      for (const c of modelCases(nf, image, nf === 64 ? 1 : 2)) cases.set(c.name, c);
    for (const c of cases.values()) {
      it(`match cpu for y, dx and dW at nf ${nf}: ${c.name}`, async () => expectClose(await parity(c, true), c.name));
    }
  }

  for (const c of odd) {
    it(`match cpu's own gradient kernels for ${c.name}`, async () => expectClose(await parity(c), c.name));
  }

  it('match cpu with each decomposition forced', async () => {
    const model = modelCases(16, 32, 2).slice(4, 6); // G's s1 'valid' and first s2 'same' tconv
    const cases = [...odd.map((c) => ({ c, wide: false })), ...model.map((c) => ({ c, wide: true }))];
    const ways: [InputGradWay, FilterGradWay, ConvWay][] = [
      ['phases', 'im2col', 'xnnpack'],
      ['rowPhases', 'dilated', 'gemm'],
      ['col2im', 'im2col', 'xnnpack'],
    ];
    try {
      for (const [dx, dW, conv] of ways) {
        forceConvGradWays({ dx, dW, conv });
        for (const { c, wide } of cases) expectClose(await parity(c, wide), `${dx}/${dW}/${conv}: ${c.name}`);
      }
      // The GEMM without fused multiply-adds, as engines without relaxed SIMD run it.
      forceConvGradWays({ dx: 'gemm', dW: 'gemm', conv: 'gemm' });
      forceGemmBuild('plain');
      for (const { c, wide } of cases) expectClose(await parity(c, wide), `plain GEMM: ${c.name}`);
    } finally {
      forceConvGradWays({ dx: 'auto', dW: 'auto', conv: 'auto' });
      forceGemmBuild('auto');
    }
  });

  it('match cpu for NCHW data', async () => {
    const attrs = { strides: [2, 2], pad: 'same', dataFormat: 'NCHW' };
    const both = () =>
      read(() => {
        const x = tf.tensor4d(random(2 * 3 * 9 * 8, 4), [2, 3, 9, 8]);
        const dy = tf.tensor4d(random(2 * 4 * 5 * 4, 5), [2, 4, 5, 4]);
        const w = tf.tensor4d(random(5 * 5 * 3 * 4, 6), [5, 5, 3, 4]);
        return [
          tf.engine().runKernel('Conv2DBackpropFilter', { x, dy }, { ...attrs, filterShape: [5, 5, 3, 4] }) as Tensor,
          tf
            .engine()
            .runKernel('Conv2DBackpropInput', { dy, filter: w }, { ...attrs, inputShape: [2, 3, 9, 8] }) as Tensor,
        ];
      });
    await tf.setBackend('cpu');
    const ref = both();
    await tf.setBackend('wasm');
    const got = both();
    expect(relErr(got[0], ref[0])).toBeLessThanOrEqual(TOL);
    expect(relErr(got[1], ref[1])).toBeLessThanOrEqual(TOL);
  });

  it('match cpu for matMul with transposes, batches and broadcasting', async () => {
    const cases: [number[], number[], boolean, boolean][] = [
      [[16, 100], [100, 64], false, false],
      [[16, 100], [64, 100], false, true],
      [[100, 16], [100, 64], true, false],
      [[100, 16], [64, 100], true, true],
      [[3, 5, 7], [3, 7, 4], false, false],
      [[3, 7, 5], [1, 4, 7], true, true],
      [[2, 2, 5, 7], [7, 4], false, false],
    ];
    for (const [sa, sb, ta, tb] of cases) {
      const mm = () =>
        read(() => [tf.matMul(tf.tensor(random(prod(sa), 7), sa), tf.tensor(random(prod(sb), 8), sb), ta, tb)])[0];
      await tf.setBackend('cpu');
      const ref = mm();
      await tf.setBackend('wasm');
      expect(relErr(mm(), ref), `${sa} x ${sb} ${ta} ${tb}`).toBeLessThanOrEqual(TOL);
    }
  });

  it('match cpu for tile of every rank and dtype', async () => {
    const cases: [number[], number[], 'float32' | 'int32' | 'bool'][] = [
      [[1, 1, 1, 64], [4, 8, 8, 1], 'float32'],
      [[2, 3], [3, 4], 'float32'],
      [[2, 1, 3], [2, 5, 1], 'int32'],
      [[3], [4], 'bool'],
      [[], [], 'float32'],
      [[2, 3, 4, 5, 2], [1, 2, 3, 1, 2], 'float32'],
      [[0, 3], [2, 2], 'float32'],
    ];
    for (const [shape, reps, dtype] of cases) {
      const values = Array.from({ length: prod(shape) }, (_, i) => (dtype === 'bool' ? i % 2 : ((i * 7) % 13) - 5));
      const t = () => read(() => [tf.tile(tf.tensor(values, shape, dtype), reps)]).map((a) => Array.from(a))[0];
      await tf.setBackend('cpu');
      const ref = t();
      await tf.setBackend('wasm');
      expect(t(), `${shape} x ${reps} ${dtype}`).toEqual(ref);
    }
  });

  it('leave no tensor behind, and no wasm buffer once their filters are disposed', async () => {
    await tf.setBackend('wasm');
    const engine = tf.engine();
    // What is kept for a disposed filter goes when a conv kernel next runs: settle's own stays, once at
    // the start and once at the end.
    const settle = () =>
      read(() => [
        tf.conv2dTranspose(
          tf.ones([1, 2, 2, 4]) as Tensor4D,
          tf.ones([3, 3, 2, 4]) as Tensor4D,
          [1, 4, 4, 2],
          2,
          'same',
        ),
      ]);
    settle();
    const start = { tensors: tf.memory().numTensors, buffers: engine.backend.numDataIds() };
    const x = tf.tensor4d(random(2 * 16 * 16 * 8, 9), [2, 16, 16, 8]);
    const w = tf.tensor4d(random(5 * 5 * 8 * 16, 10), [5, 5, 8, 16]);
    const wt = tf.tensor4d(random(5 * 5 * 4 * 8, 11), [5, 5, 4, 8]);
    const a = tf.tensor2d(random(6 * 5, 12), [6, 5]);
    const step = () =>
      tf.tidy(() => {
        const [dx, dw] = tf.grads((xx: Tensor, ww: Tensor) =>
          tf.sum(tf.conv2d(xx as Tensor4D, ww as Tensor4D, 2, 'same')),
        )([x, w]);
        const [dx2, dw2] = tf.grads((xx: Tensor, ww: Tensor) =>
          tf.sum(tf.conv2dTranspose(xx as Tensor4D, ww as Tensor4D, [2, 32, 32, 4], 2, 'same')),
        )([x, wt]);
        const m = tf.matMul(a, a, true, false);
        return tf.addN([dx, dx2].map((t) => tf.sum(t)).concat([dw, dw2, m].map((t) => tf.sum(t)))).dataSync()[0];
      });
    const withInputs = tf.memory().numTensors;
    try {
      for (const dx of ['auto', 'gemm', 'phases', 'rowPhases', 'col2im'] as const) {
        for (const dW of ['auto', 'gemm', 'im2col', 'dilated'] as const) {
          forceConvGradWays({ dx, dW, conv: dx === 'phases' ? 'xnnpack' : 'auto' });
          step();
          expect(tf.memory().numTensors, `${dx}/${dW}`).toBe(withInputs);
        }
      }
    } finally {
      forceConvGradWays({ dx: 'auto', dW: 'auto', conv: 'auto' });
      tf.dispose([x, w, wt, a]);
    }
    settle();
    expect(tf.memory().numTensors).toBe(start.tensors);
    expect(engine.backend.numDataIds()).toBe(start.buffers);
  });

  it("match tfjs's ops for the per-channel kernels of traced passes", async () => {
    await tf.setBackend('wasm');
    for (const shape of [
      [2, 3, 5, 8],
      [1, 4, 4, 3],
      [3, 1, 1, 512],
    ] as [number, number, number, number][]) {
      const c = shape[3];
      const [x, g, mean, rstd, k1, k2, k3] = [shape, shape, [c], [c], [c], [c], [c]].map((s, i) =>
        tf.tensor(random(prod(s), 20 + i), s),
      );
      const run = (name: string, inputs: Record<string, Tensor>, attrs = {}) =>
        tf.engine().runKernel(name, inputs as never, attrs as never) as Tensor | Tensor[];
      const xhat = tf.mul(tf.sub(x, mean), rstd);
      const stats = tf.moments(x, [0, 1, 2]);
      const want = {
        sum: tf.sum(x, [0, 1, 2]),
        sumG: tf.sum(g, [0, 1, 2]),
        sumGX: tf.sum(tf.mul(g, xhat), [0, 1, 2]),
        dx: tf.mul(tf.sub(tf.sub(g, k1), tf.mul(xhat, k2)), k3),
        leaky: tf.where(tf.greater(x, 0), g, tf.mul(g, 0.2)),
        leakyForward: tf.leakyRelu(x, 0.2),
        mean: stats.mean,
        variance: stats.variance,
      };
      const got: Record<string, Tensor> = { sum: run(CHANNEL_SUM, { x }) as Tensor };
      if (c % 4 === 0) {
        [got.sumG, got.sumGX] = run(BN_PARAM_GRADS, { g, x, mean, rstd }) as Tensor[];
        got.dx = run(BN_INPUT_GRAD, { g, x, mean, rstd, k1, k2, k3 }) as Tensor;
        got.leaky = run(LEAKY_RELU_GRAD, { g, x }, { alpha: 0.2 }) as Tensor;
        got.leakyForward = run(LEAKY_RELU, { x }, { alpha: 0.2 }) as Tensor;
        [got.mean, got.variance] = run(MOMENTS, { x }) as Tensor[];
      }
      for (const [k, t] of Object.entries(got)) {
        const key = k as keyof typeof want;
        expect(t.shape, `${shape} ${k}`).toEqual(want[key].shape);
        expect(
          relErr(t.dataSync() as Float32Array, want[key].dataSync() as Float32Array),
          `${shape} ${k}`,
        ).toBeLessThanOrEqual(TOL);
      }
      tf.dispose([x, g, mean, rstd, k1, k2, k3, xhat, ...Object.values(want), ...Object.values(got)]);
    }
  });

  it('give the stock kernels back when unregistered', () => {
    const ours = names.map((k) => tf.getKernel(k, 'wasm')?.kernelFunc);
    unregisterWasmGradientKernels();
    try {
      expect(tf.getKernel('Conv2DBackpropFilter', 'wasm')).toBeUndefined();
      for (const [i, k] of names.slice(1).entries()) expect(tf.getKernel(k, 'wasm')?.kernelFunc).not.toBe(ours[i + 1]);
    } finally {
      registerWasmGradientKernels();
    }
    expect(names.map((k) => tf.getKernel(k, 'wasm')?.kernelFunc)).toEqual(ours);
  });
});
