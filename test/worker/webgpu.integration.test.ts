// The webgpu backend (Dawn; Mesa's lavapipe in CI) against the reference backends: every
// convolution of the seed's model and the presets, forward and both gradients, against cpu; a
// whole tiny-preset Trainer step against wasm; the seed's model at batch 8; no tensor growth.
//
// Relative error, throughout: max |webgpu - reference| / max |reference| over one tensor.

import type { Tensor, Tensor4D } from '@tensorflow/tfjs';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { modelConfigOf, resolveConfig, type ModelConfig } from '../../protocol/config.ts';
import {
  activationShapes,
  initialParams,
  layersOf,
  parameterTable,
  paramSpecs,
  sizeOf,
  type Layer,
  type NamedArrays,
} from '../../protocol/model/architecture.ts';
import { loadBackend, type LoadedBackend, type TF } from '../../worker/backend.ts';
import { Trainer, type ShardResult } from '../../worker/trainer.ts';
import { randomShard } from '../support/fixtures.ts';
import { random, relErr } from '../support/numbers.ts';
import { describeWebgpu } from '../support/webgpu.ts';

const CONV_TOLERANCE = 1e-5;
const STEP_TOLERANCE = 1e-4;
/**
 * Absolute, for the gradients that are 0 in exact arithmetic: on the tiny preset both backends
 * show about 3e-7 there, where the same layers' weight gradients reach 0.3; a real gradient would
 * be of that order.
 */
const NOISE_BOUND = 1e-5;
/** Rows per convolution: enough to sum over a batch, few enough for a software adapter. */
const CONV_BATCH = 2;

const models: Record<string, ModelConfig> = {
  seed: modelConfigOf(resolveConfig({})),
  tiny: modelConfigOf(resolveConfig({ preset: 'tiny' })),
  quick: modelConfigOf(resolveConfig({ preset: 'quick' })),
};

type ConvLayer = Extract<Layer, { kind: 'conv' | 'tconv' }>;

interface ConvCase {
  /** "tconv 4x4x512 -> 8x8x256 k5 s1 valid": the shape, which several models may share. */
  key: string;
  layer: ConvLayer;
  input: number[];
  output: number[];
  filter: number[];
  /** Where it occurs: "seed G/tconv1", ... */
  uses: string[];
}

/** Every conv and transposed conv of the three models, one case per distinct shape. */
function convCases(): ConvCase[] {
  const cases = new Map<string, ConvCase>();
  for (const [model, cfg] of Object.entries(models)) {
    for (const net of ['G', 'D'] as const) {
      const layers = layersOf(net, cfg);
      const shapes = activationShapes(layers);
      const specs = paramSpecs(net, cfg);
      layers.forEach((l, i) => {
        if (l.kind !== 'conv' && l.kind !== 'tconv') return;
        const [input, output] = [shapes[i - 1], shapes[i]];
        const key = `${l.kind} ${input.join('x')} -> ${output.join('x')} k${l.k} s${l.stride} ${l.pad}`;
        const filter = specs.find((s) => s.name === `${net}/${l.name}/w`)!.shape;
        const c = cases.get(key) ?? { key, layer: l, input, output, filter, uses: [] };
        c.uses.push(`${model} ${net}/${l.name}`);
        cases.set(key, c);
      });
    }
  }
  return [...cases.values()];
}

/** The biases of convs whose output goes straight into a BatchNorm: their exact gradient is 0. */
function biasesBeforeBatchNorm(cfg: ModelConfig): Set<string> {
  const names = new Set<string>();
  for (const net of ['G', 'D'] as const) {
    const layers = layersOf(net, cfg);
    layers.forEach((l, i) => {
      if ((l.kind === 'conv' || l.kind === 'tconv') && layers[i + 1]?.kind === 'bn') names.add(`${net}/${l.name}/b`);
    });
  }
  return names;
}

let tf: TF;
let webgpu: LoadedBackend;
const report: string[] = [];

/** Runs `fn` with `backend` as tfjs's current one: tensors live on the backend they were made on. */
async function on<T>(backend: string, fn: () => Promise<T>): Promise<T> {
  if (!(await tf.setBackend(backend))) throw new Error(`tf.setBackend('${backend}') failed`);
  return fn();
}

/** The filter gradient of a conv from its input `x` and output gradient `dy`. */
type FilterGrad = (x: Tensor4D, dy: Tensor4D, l: ConvLayer, filter: number[]) => Tensor;

/** tfjs's Conv2DBackpropFilter kernel, as backprop.ts runs it. */
const kernelFilterGrad: FilterGrad = (x, dy, l, filter) =>
  tf.engine().runKernel('Conv2DBackpropFilter', { x, dy }, {
    strides: [l.stride, l.stride],
    pad: l.pad,
    dataFormat: 'NHWC',
    filterShape: filter,
  } as never) as Tensor;

/**
 * The same sum, dw[i, j, ci, co] = sum over n, y, x of in[n, y*s + i - top, x*s + j - left, ci] *
 * dy[n, y, x, co], as a conv2d dilated by the stride over the transposed tensors. cpu's own kernel
 * reads element by element (25 s for one of the seed's layers at batch 2); this takes under one.
 */
const dilatedFilterGrad: FilterGrad = (x, dy, l) =>
  tf.tidy(() => {
    const padding = (input: number, output: number) => {
      const total = l.pad === 'same' ? Math.max((output - 1) * l.stride + l.k - input, 0) : 0;
      return [Math.floor(total / 2), total - Math.floor(total / 2)] as [number, number];
    };
    const [, h, w] = x.shape;
    const [, oh, ow] = dy.shape;
    const pad = [[0, 0], padding(h, oh), padding(w, ow), [0, 0]] as [
      [0, 0],
      [number, number],
      [number, number],
      [0, 0],
    ];
    // [ci, h, w, n] (*) [oh, ow, n, co] -> [ci, >= k, >= k, co]; 'valid' can leave rows past k.
    const sums = tf.conv2d(tf.transpose(x, [3, 1, 2, 0]), tf.transpose(dy, [1, 2, 0, 3]), 1, pad, 'NHWC', l.stride);
    return tf.transpose(tf.slice(sums, [0, 0, 0, 0], [-1, l.k, l.k, -1]), [1, 2, 0, 3]);
  });

/** y = conv(x, w) and the gradients of sum(y * dy) w.r.t. x and w, with backprop.ts's ops, on the current backend. */
async function convAndGrads(c: ConvCase, n: number, data: ConvData, filterGrad: FilterGrad) {
  const { layer: l } = c;
  const outs = tf.tidy(() => {
    const x = tf.tensor4d(data.x, [n, ...c.input] as Shape4);
    const w = tf.tensor4d(data.w, c.filter as Shape4);
    const dy = tf.tensor4d(data.dy, [n, ...c.output] as Shape4);
    if (l.kind === 'conv')
      return [
        tf.conv2d(x, w, l.stride, l.pad),
        tf.conv2dTranspose(dy, w, x.shape, l.stride, l.pad),
        filterGrad(x, dy, l, c.filter),
      ];
    // A transposed conv is the transpose of a conv from its output to its input.
    return [
      tf.conv2dTranspose(x, w, dy.shape, l.stride, l.pad),
      tf.conv2d(dy, w, l.stride, l.pad),
      filterGrad(dy, x, l, c.filter),
    ];
  });
  try {
    const [y, dx, dw] = (await Promise.all(outs.map((t) => t.data()))) as Float32Array[];
    return { y, dx, dw };
  } finally {
    tf.dispose(outs);
  }
}

/** Multiply-adds of a filter gradient: one per filter element and position of the smaller side. */
function filterGradMacs(c: ConvCase, n: number): number {
  const [h, w] = c.layer.kind === 'conv' ? c.output : c.input;
  return n * h * w * sizeOf(c.filter);
}

type Shape4 = [number, number, number, number];

interface ConvData {
  x: Float32Array;
  w: Float32Array;
  dy: Float32Array;
}

const convData = (c: ConvCase, n: number): ConvData => ({
  x: random(n * sizeOf(c.input), 1),
  w: random(sizeOf(c.filter), 2),
  dy: random(n * sizeOf(c.output), 3),
});

/** A Trainer's step for `cfg` on `backend`, with the weights made there and disposed after. */
async function stepOn(backend: string, cfg: ModelConfig, weights: NamedArrays, n: number): Promise<ShardResult> {
  return on(backend, async () => {
    // On webgpu with the device's limit and health, as a worker runs it.
    const trainer = new Trainer(tf, cfg, 5, backend === 'webgpu' ? { device: webgpu.device } : {});
    try {
      trainer.setWeights(weights);
      return await trainer.step(randomShard(cfg, n, 7));
    } finally {
      trainer.dispose();
    }
  });
}

await describeWebgpu('the webgpu backend', () => {
  beforeAll(async () => {
    // Three backends in one process; webgpu's reads must be async (no readSync under Node), so
    // no webgpu tensor is ever handed to another backend.
    await loadBackend('wasm');
    await loadBackend('cpu');
    webgpu = await loadBackend('webgpu');
    tf = webgpu.tf;
    console.log(`webgpu on ${webgpu.info.device}`);
  });
  afterAll(async () => {
    if (report.length > 0) console.log(report.join('\n'));
    if (!webgpu) return;
    await tf.setBackend('cpu');
    webgpu.close();
  });

  it('names the adapter it runs on, a software one as software', () => {
    const a = webgpu.adapter!;
    expect(webgpu.info.device).toContain(a.description || a.device || a.architecture);
    expect(webgpu.info.device).toMatch(a.isFallbackAdapter ? /^software .*software fallback/ : /^GPU /);
  });

  it("has a filter-gradient reference equal to cpu's own Conv2DBackpropFilter (on the shapes it computes quickly)", async () => {
    // A few seconds of cpu's kernel each, and conv and tconv, 'same' and 'valid', among them.
    const cheap = convCases().filter((c) => filterGradMacs(c, CONV_BATCH) < 7e6);
    expect(new Set(cheap.map((c) => `${c.layer.kind} ${c.layer.pad}`)).size).toBe(4);
    let worst = 0;
    await on('cpu', async () => {
      for (const c of cheap) {
        const data = convData(c, CONV_BATCH);
        const ref = await convAndGrads(c, CONV_BATCH, data, kernelFilterGrad);
        const got = await convAndGrads(c, CONV_BATCH, data, dilatedFilterGrad);
        const err = relErr(got.dw, ref.dw);
        worst = Math.max(worst, err);
        // Half the tolerance: the reference must not spend the error the comparison allows.
        expect(err, c.key).toBeLessThanOrEqual(CONV_TOLERANCE / 2);
      }
    });
    report.push(`reference dw vs cpu's Conv2DBackpropFilter, ${cheap.length} shapes: ${worst.toExponential(1)}`);
  });

  for (const c of convCases()) {
    it(`matches cpu in the forward pass and both gradients of ${c.key} (${c.uses.join(', ')})`, async () => {
      const data = convData(c, CONV_BATCH);
      const ref = await on('cpu', () => convAndGrads(c, CONV_BATCH, data, dilatedFilterGrad));
      const got = await on('webgpu', () => convAndGrads(c, CONV_BATCH, data, kernelFilterGrad));
      const errs = { y: relErr(got.y, ref.y), dx: relErr(got.dx, ref.dx), dw: relErr(got.dw, ref.dw) };
      report.push(
        `parity ${c.key}: forward ${errs.y.toExponential(1)} dx ${errs.dx.toExponential(1)} dw ${errs.dw.toExponential(1)}`,
      );
      expect(errs.y).toBeLessThanOrEqual(CONV_TOLERANCE);
      expect(errs.dx).toBeLessThanOrEqual(CONV_TOLERANCE);
      expect(errs.dw).toBeLessThanOrEqual(CONV_TOLERANCE);
    });
  }

  it("matches wasm in a whole tiny-preset step's gradients, losses and BN statistics", async () => {
    const cfg = models.tiny;
    const weights = initialParams(parameterTable(cfg), 11);
    const ref = await stepOn('wasm', cfg, weights, 4);
    const got = await stepOn('webgpu', cfg, weights, 4);
    // A bias that feeds a BatchNorm has an exact gradient of 0, so both backends show rounding
    // noise there, and relative to its own scale that noise is anything: absolute error instead.
    const noise = biasesBeforeBatchNorm(cfg);
    expect(Object.keys(got.grads).sort()).toEqual(Object.keys(ref.grads).sort());
    const failures: string[] = [];
    let worst = { name: '', err: 0 };
    let worstBias = { name: '', err: 0 };
    for (const [name, r] of Object.entries(ref.grads)) {
      const g = got.grads[name];
      if (noise.has(name)) {
        const err = r.reduce((m, v, i) => Math.max(m, Math.abs(g[i] - v)), 0);
        if (err > worstBias.err) worstBias = { name, err };
        if (!(err <= NOISE_BOUND))
          failures.push(`${name}: max abs error ${err.toExponential(2)} (bound ${NOISE_BOUND})`);
        continue;
      }
      const err = relErr(g, r);
      if (err >= worst.err) worst = { name, err };
      if (!(err <= STEP_TOLERANCE)) failures.push(`${name}: relative error ${err.toExponential(2)}`);
    }
    for (const [key, r] of Object.entries(ref.bn)) {
      for (const part of ['sum', 'sumSq'] as const) {
        const err = relErr(got.bn[key][part], r[part]);
        if (!(err <= STEP_TOLERANCE)) failures.push(`${key} ${part}: relative error ${err.toExponential(2)}`);
      }
    }
    for (const k of ['lossG', 'lossD', 'scoreG', 'scoreD'] as const) {
      const err = Math.abs(got[k] - ref[k]) / Math.abs(ref[k]);
      if (!(err <= STEP_TOLERANCE)) failures.push(`${k}: relative error ${err.toExponential(2)}`);
    }
    report.push(
      `parity tiny step (batch 4) vs wasm: worst ${worst.name} ${worst.err.toExponential(1)}; ` +
        `biases before BN: worst ${worstBias.name} abs ${worstBias.err.toExponential(1)}`,
    );
    expect(failures).toEqual([]);
  });

  it("runs the seed's model at batch 8 to finite losses and gradients", async () => {
    const cfg = models.seed;
    const t0 = performance.now();
    const r = await stepOn('webgpu', cfg, initialParams(parameterTable(cfg), 3), 8);
    report.push(`seed model step (batch 8) on webgpu: ${((performance.now() - t0) / 1000).toFixed(1)} s, first step`);
    for (const v of [r.lossG, r.lossD, r.scoreG, r.scoreD]) expect(Number.isFinite(v)).toBe(true);
    const bad = Object.entries(r.grads).filter(([, g]) => !g.every(Number.isFinite));
    expect(bad.map(([name]) => name)).toEqual([]);
  });

  it('leaks no tensor over 20 steps and a sample', async () => {
    const cfg = models.tiny;
    await on('webgpu', async () => {
      const trainer = new Trainer(tf, cfg, 5, { device: webgpu.device });
      trainer.setWeights(initialParams(parameterTable(cfg), 11));
      const shard = randomShard(cfg, 2);
      await trainer.step(shard);
      const before = tf.memory();
      for (let i = 0; i < 20; i++) await trainer.step({ ...shard, iteration: i + 2 });
      await trainer.generate(random(2 * cfg.latent, 4), 2);
      const after = tf.memory();
      trainer.dispose();
      expect(after.numTensors).toBe(before.numTensors);
      expect(after.numBytes).toBe(before.numBytes);
    });
  });
});
