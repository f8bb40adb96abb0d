import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { initialParams, parameterTable, paramSpecs, type NamedArrays } from '../../protocol/model/architecture.ts';
import { loadBackend, type TF } from '../../worker/backend.ts';
import { PASS_GEN, PASS_REAL, Trainer } from '../../worker/trainer.ts';
import { Rng } from '../../protocol/rng.ts';
import { randomShard, tinyModel } from '../support/fixtures.ts';
import { tapeGradients } from '../support/tape-step.ts';
import { gateEachTestOnWebgpu } from '../support/webgpu.ts';

// The embedded backend is what users and CI run; TEST_BACKEND=cpu checks against plain tfjs,
// TEST_BACKEND=webgpu the GPU backend.
const backend = (process.env.TEST_BACKEND ?? 'wasm') as 'wasm' | 'cpu' | 'webgpu';

let tf: TF;
let trainer: Trainer;
const weights: NamedArrays = initialParams(parameterTable(tinyModel), 11);
// webgpu needs an adapter: without one each test skips, or fails where one is required.
const loadable = backend !== 'webgpu' || (await gateEachTestOnWebgpu());

beforeAll(async () => {
  if (!loadable) return;
  ({ tf } = await loadBackend(backend));
  trainer = new Trainer(tf, tinyModel, 5);
  trainer.setWeights(weights);
});
afterAll(() => trainer?.dispose());

const dot = (a: Float32Array, b: Float32Array) => {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i] * b[i];
  return s;
};

describe(`Trainer on ${backend}`, () => {
  it('returns a gradient for every learnable, BN sums for every BN layer, and finite losses', async () => {
    const shard = randomShard(tinyModel, 4);
    const r = await trainer.step(shard);
    for (const s of parameterTable(tinyModel)) {
      if (s.role === 'learnable') {
        expect(r.grads[s.name]?.length, s.name).toBe(weights[s.name].length);
        expect(r.grads[s.name].every(Number.isFinite), s.name).toBe(true);
      } else {
        expect(r.grads[s.name], s.name).toBeUndefined();
      }
    }
    expect(Object.keys(r.bn).sort()).toEqual(['D/bn2', 'D/bn3', 'G/bn1', 'G/bn2']);
    expect(r.bn['G/bn1'].count).toBe(4 * 8 * 8);
    expect(r.n).toBe(4);
    for (const v of [r.lossD, r.lossG, r.scoreD, r.scoreG]) expect(Number.isFinite(v)).toBe(true);
    expect(r.scoreD).toBeGreaterThan(0);
    expect(r.scoreD).toBeLessThan(1);
  });

  it('leaks no tensor over several steps and a sample', async () => {
    const shard = randomShard(tinyModel, 2);
    await trainer.step(shard);
    const before = tf.memory().numTensors;
    for (let i = 0; i < 3; i++) await trainer.step({ ...shard, iteration: i + 2 });
    await trainer.generate(new Float32Array(2 * 100), 2);
    trainer.setWeights(weights);
    expect(tf.memory().numTensors).toBe(before);
  });

  it("with reuseGradientBuffers gives the same gradients, in arrays it reuses from step to step (a worker's way)", async () => {
    const reusing = new Trainer(tf, tinyModel, 5, { reuseGradientBuffers: true });
    reusing.setWeights(weights);
    const shards = [randomShard(tinyModel, 3, 7), randomShard(tinyModel, 3, 8, 2)];
    const before = tf.memory().numTensors;
    for (const shard of shards) {
      const fresh = (await trainer.step(shard)).grads;
      const reused = (await reusing.step(shard)).grads;
      for (const name of Object.keys(fresh)) expect(reused[name], name).toEqual(fresh[name]);
    }
    expect(tf.memory().numTensors).toBe(before);
    const first = (await reusing.step(shards[0])).grads;
    const second = (await reusing.step(shards[1])).grads;
    // The embedded backend reads its heap into the same arrays; others hand out fresh copies.
    expect(first['G/tconv1/w'] === second['G/tconv1/w']).toBe(backend === 'wasm');
    reusing.dispose();
  });

  it('generates images in [-1, 1] of the configured size in inference mode', async () => {
    const out = await trainer.generate(new Rng(1).fillNormal(new Float32Array(3 * 100)), 3);
    expect(out.length).toBe(3 * 32 * 32 * 3);
    expect(Math.max(...out)).toBeLessThanOrEqual(1);
    expect(Math.min(...out)).toBeGreaterThanOrEqual(-1);
  });

  it("equals tfjs's two tapes (MATLAB's two dlgradient calls) for every learnable", async () => {
    const shard = randomShard(tinyModel, 3, 7);
    const masks = { real: trainer.dropout(shard, PASS_REAL), gen: trainer.dropout(shard, PASS_GEN) };
    const ours = (await trainer.step(shard, masks)).grads;
    const tapes = await tapeGradients(tf, tinyModel, weights, shard, masks);
    tf.dispose([masks.real, masks.gen]);
    // Relative to the largest gradient of the layer: a conv's bias before BatchNorm has an exact
    // gradient of 0, so its own scale is rounding noise.
    const layerOf = (name: string) => name.slice(0, name.lastIndexOf('/'));
    const scales = new Map<string, number>();
    for (const [name, ref] of Object.entries(tapes)) {
      scales.set(
        layerOf(name),
        ref.reduce((m, x) => Math.max(m, Math.abs(x)), scales.get(layerOf(name)) ?? 0),
      );
    }
    const worst: string[] = [];
    for (const [name, ref] of Object.entries(tapes)) {
      let err = 0;
      for (let i = 0; i < ref.length; i++) err = Math.max(err, Math.abs(ours[name][i] - ref[i]));
      const scale = scales.get(layerOf(name))!;
      if (!(err <= 1e-4 * scale))
        worst.push(`${name}: max abs error ${err.toExponential(2)}, the layer's max |g| ${scale.toExponential(2)}`);
    }
    expect(Object.keys(tapes).sort()).toEqual(Object.keys(ours).sort());
    expect(worst).toEqual([]);
  });

  it('has analytic gradients that match central differences for every layer (tiny preset)', async () => {
    const shard = randomShard(tinyModel, 2, 3);
    const masks = { real: trainer.dropout(shard, PASS_REAL), gen: trainer.dropout(shard, PASS_GEN) };
    const r = await trainer.step(shard, masks);
    const rng = new Rng(21);
    const failures: string[] = [];
    const report: string[] = [];
    for (const net of ['G', 'D'] as const) {
      const specs = paramSpecs(net, tinyModel).filter((s) => s.role === 'learnable');
      const layers = [...new Set(specs.map((s) => s.layer))];
      for (const layer of layers) {
        const group = specs.filter((s) => s.layer === layer);
        // A random direction over all of the layer's learnables (weights and bias, or scale and
        // offset), tilted toward the gradient: unit-rms noise plus g / rms(g). In float32 a
        // direction nearly orthogonal to g has a derivative lost in rounding noise; the tilt keeps
        // the check sensitive to a wrong gradient in every component.
        const dir: NamedArrays = {};
        let analytic = 0;
        let g2 = 0;
        let w2 = 0;
        let count = 0;
        for (const s of group) {
          for (const x of r.grads[s.name]) g2 += x * x;
          for (const x of weights[s.name]) w2 += x * x;
          count += weights[s.name].length;
        }
        const gRms = Math.sqrt(g2 / count) || 1;
        for (const s of group) {
          dir[s.name] = rng
            .fillNormal(new Float32Array(weights[s.name].length))
            .map((x, i) => x + r.grads[s.name][i] / gRms);
          analytic += dot(r.grads[s.name], dir[s.name]);
        }
        // A step of 3e-4 of the layer's weight scale: above float32 noise, small enough that few
        // ReLU kinks fall inside it. The 4-point stencil removes the cubic term of the error.
        const h = 3e-4 * Math.sqrt(w2 / count);
        const at = async (sign: number) => {
          const w = { ...weights };
          for (const s of group) w[s.name] = weights[s.name].map((x, i) => x + sign * h * dir[s.name][i]);
          trainer.setWeights(w);
          const l = await trainer.lossesFor(shard, masks);
          return net === 'G' ? l.lossG : l.lossD;
        };
        const numeric = (-(await at(2)) + 8 * (await at(1)) - 8 * (await at(-1)) + (await at(-2))) / (12 * h);
        const rel = Math.abs(numeric - analytic) / Math.max(Math.abs(analytic), 1e-12);
        report.push(
          `${net}/${layer}: analytic ${analytic.toExponential(4)} numeric ${numeric.toExponential(4)} rel ${rel.toExponential(2)}`,
        );
        if (!(rel < 2e-2)) failures.push(report.at(-1)!);
      }
    }
    trainer.setWeights(weights);
    tf.dispose([masks.real, masks.gen]);
    console.log(report.join('\n'));
    expect(failures).toEqual([]);
    // G: proj, tconv1-3, bn1-2; D: conv1-4, bn2-3.
    expect(report.length).toBe(12);
  });
});

describe('Trainer on a GPU device', () => {
  it("refuses a shard whose largest activation exceeds the device's storage binding limit, naming it", async () => {
    // The tiny preset's largest activation is G's 16 x 16 x 32 floats (32 KiB) an image: 4 rows need 128 KiB.
    const small = new Trainer(tf, tinyModel, 5, {
      device: { maxStorageBufferBindingSize: 64 * 1024, health: () => undefined },
    });
    small.setWeights(weights);
    await expect(small.step(randomShard(tinyModel, 4))).rejects.toThrow(
      /a shard of 4 rows needs a 128 KiB buffer \(G\/\w+\), above this GPU's maxStorageBufferBindingSize of 64 KiB/,
    );
    small.dispose();
  });

  it('fails the step when the device reports an error', async () => {
    const failing = new Trainer(tf, tinyModel, 5, {
      device: { maxStorageBufferBindingSize: 2 ** 31, health: () => 'device lost (destroyed): test' },
    });
    failing.setWeights(weights);
    await expect(failing.step(randomShard(tinyModel, 2))).rejects.toThrow(/the GPU device failed: device lost/);
    failing.dispose();
  });
});
