import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Command } from 'commander';
import sharp from 'sharp';
import { afterEach, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import type { Tensor } from '@tensorflow/tfjs';
import { registerGenerateCommand } from '../../cmd/generate.ts';
import { saveCheckpoint } from '../../protocol/run/checkpoint.ts';
import { resolveConfig } from '../../protocol/config.ts';
import { Rng } from '../../protocol/rng.ts';
import { createRunDir } from '../../protocol/run/run-dir.ts';
import { tileImages } from '../../protocol/run/samples.ts';
import { parameterTable, sizeOf, type NamedArrays } from '../../protocol/model/architecture.ts';
import { loadBackend, type TF } from '../../worker/backend.ts';
import { chooseLatents, exportGenerator, generateFromCheckpoint, loadExportedGenerator } from '../../worker/export.ts';
import { Trainer } from '../../worker/trainer.ts';
import { tinyModel } from '../support/fixtures.ts';

// Plain-JS cpu by default: forward passes only, so no gradient kernels are needed; TEST_BACKEND=wasm checks the embedded one.
const backend = (process.env.TEST_BACKEND ?? 'cpu') as 'wasm' | 'cpu';
let tf: TF;
beforeAll(async () => {
  ({ tf } = await loadBackend(backend));
});

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'gan-dist-generate-'));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

const specs = parameterTable(tinyModel);

/**
 * Every parameter random, BN running variances in [0.5, 1.5]: a swapped gamma/beta or
 * mean/variance, or a misread kernel layout, changes the output.
 */
function randomWeights(seed: number): NamedArrays {
  const rng = new Rng(seed);
  const out: NamedArrays = {};
  for (const s of specs) {
    const a = new Float32Array(sizeOf(s.shape));
    if (s.name.endsWith('/var')) rng.fillUniform(a, 0.5, 1.5);
    else if (s.name.endsWith('/scale')) rng.fillUniform(a, 0.5, 1.5);
    else rng.fillUniform(a, -0.1, 0.1);
    out[s.name] = a;
  }
  return out;
}

async function generateWithTrainer(
  weights: NamedArrays,
  z: Float32Array,
  count: number,
  seed = 0,
): Promise<Float32Array> {
  const trainer = new Trainer(tf, tinyModel, seed);
  try {
    trainer.setWeights(weights);
    return await trainer.generate(z, count);
  } finally {
    trainer.dispose();
  }
}

const maxAbsDiff = (a: Float32Array, b: Float32Array) => a.reduce((m, v, i) => Math.max(m, Math.abs(v - b[i])), 0);

async function makeRun(): Promise<{ runPath: string; weights: NamedArrays; zValidation: Float32Array }> {
  const config = resolveConfig({ preset: 'tiny', flags: { seed: 9 } });
  const run = createRunDir({ cwd: dir, runDir: 'run' });
  const weights = randomWeights(4);
  const learn = specs.filter((s) => s.role === 'learnable');
  const zeros = Object.fromEntries(learn.map((s) => [s.name, new Float32Array(sizeOf(s.shape))]));
  const zValidation = new Rng(9, 3).fillNormal(new Float32Array(25 * 100));
  await saveCheckpoint(run.path, {
    iteration: 100,
    epoch: 2,
    runId: 'run-test',
    config,
    params: weights,
    adamM: zeros,
    adamV: zeros,
    zValidation,
    rng: {},
    data: {},
    specs: specs.map(({ name, shape, role }) => ({ name, shape, role })),
  });
  return { runPath: run.path, weights, zValidation };
}

describe('exporting the generator', () => {
  it('round-trips through model.json: the loaded model gives what Trainer.generate gives', async () => {
    const weights = randomWeights(1);
    const out = join(dir, 'tfjs');
    const before = tf.memory().numTensors;
    const r = await exportGenerator(tf, tinyModel, weights, out, { iteration: 7 });
    expect(tf.memory().numTensors).toBe(before);
    expect(readdirSync(out).sort()).toEqual(['group1-shard1of1.bin', 'model.json']);
    const json = JSON.parse(readFileSync(join(out, 'model.json'), 'utf8'));
    expect(json.weightsManifest[0].paths).toEqual(['group1-shard1of1.bin']);
    expect(json.userDefinedMetadata.ganDist).toMatchObject({ latent: 100, imageSize: 32, iteration: 7 });
    expect(r.files).toHaveLength(2);

    const model = await loadExportedGenerator(tf, out);
    expect(model.outputs[0].shape).toEqual([null, 32, 32, 3]);
    const z = new Rng(2).fillNormal(new Float32Array(3 * 100));
    const y = model.predict(tf.tensor2d(z, [3, 100])) as Tensor;
    const exported = y.dataSync() as Float32Array;
    const expected = await generateWithTrainer(weights, z, 3);
    expect(exported.length).toBe(expected.length);
    expect(maxAbsDiff(exported, expected)).toBeLessThan(1e-4);
    // The check can fail: a different G is far off.
    expect(maxAbsDiff(exported, await generateWithTrainer(randomWeights(2), z, 3))).toBeGreaterThan(1e-2);
    y.dispose();
    model.dispose();
  });
});

/** `gan-dist generate ARGS --backend <test backend>`; returns what it printed. */
async function runGenerate(args: string[]): Promise<string> {
  const program = new Command().exitOverride();
  registerGenerateCommand(program);
  const written: string[] = [];
  const spy = vi.spyOn(process.stdout, 'write').mockImplementation((chunk) => {
    written.push(String(chunk));
    return true;
  });
  try {
    await program.parseAsync(['generate', ...args, '--backend', backend], { from: 'user' });
  } finally {
    spy.mockRestore();
  }
  return written.join('');
}

describe('generate', () => {
  it("draws latents from a seed, or takes the run's validation latents when asked, as many as it has", () => {
    const zv = new Float32Array(25 * 4).map((_, i) => i);
    expect(chooseLatents(3, 4, zv, 'validation')).toEqual({ z: zv.slice(0, 12), source: 'validation' });
    expect(chooseLatents(3, 4, zv, 11)).toEqual({
      z: new Rng(11).fillNormal(new Float32Array(12)),
      source: 'seed',
      seed: 11,
    });
    expect(chooseLatents(26, 4, zv, 5)).toMatchObject({ source: 'seed', seed: 5 });
    expect(() => chooseLatents(26, 4, zv, 'validation')).toThrow(
      expect.objectContaining({
        code: 'GAN_DIST_E_USAGE',
        message: '--validation-latents: the run has 25 validation latents, --count asks for 26',
      }),
    );
  });

  it("writes a 5x5 grid of the checkpoint's G on its validation latents with validationLatents", async () => {
    const { runPath, weights, zValidation } = await makeRun();
    const out = join(dir, 'grid.png');
    const r = await generateFromCheckpoint({ checkpoint: runPath, out, backend, validationLatents: true });
    expect(r).toMatchObject({
      iteration: 100,
      runId: 'run-test',
      count: 25,
      latents: 'validation',
      width: 160,
      height: 160,
    });
    expect(r.seed).toBeUndefined();
    const { data, info } = await sharp(out).raw().toBuffer({ resolveWithObject: true });
    expect([info.width, info.height, info.channels]).toEqual([160, 160, 3]);
    const expected = tileImages(await generateWithTrainer(weights, zValidation, 25, 9), 25, 32);
    expect(Buffer.from(expected.rgb).equals(data)).toBe(true);
  });

  it('draws fresh latents by default and reports their seed, which makes the same grid again', async () => {
    const { runPath, weights, zValidation } = await makeRun();
    const first = await generateFromCheckpoint({ checkpoint: runPath, out: join(dir, 'a.png'), backend, count: 4 });
    const second = await generateFromCheckpoint({ checkpoint: runPath, out: join(dir, 'b.png'), backend, count: 4 });
    expect(first).toMatchObject({ latents: 'seed', count: 4 });
    expect(Number.isInteger(first.seed)).toBe(true);
    // Two runs draw two seeds (they collide once in 2^32).
    expect(second.seed).not.toBe(first.seed);
    const pixels = async (file: string) => (await sharp(file).raw().toBuffer()).toString('base64');
    const a = await pixels(join(dir, 'a.png'));
    // The grid is G on Rng(seed)'s draws, not on the validation latents.
    const z = new Rng(first.seed!).fillNormal(new Float32Array(4 * 100));
    expect(Buffer.from(tileImages(await generateWithTrainer(weights, z, 4, 9), 4, 32).rgb).toString('base64')).toBe(a);
    const onValidation = tileImages(await generateWithTrainer(weights, zValidation.slice(0, 400), 4, 9), 4, 32);
    expect(Buffer.from(onValidation.rgb).toString('base64')).not.toBe(a);
    // --seed with the reported seed makes it again, bit for bit.
    const again = await generateFromCheckpoint({
      checkpoint: runPath,
      out: join(dir, 'c.png'),
      backend,
      count: 4,
      seed: first.seed,
    });
    expect(again.seed).toBe(first.seed);
    expect(await pixels(join(dir, 'c.png'))).toBe(a);
  });

  it('refuses --seed with --validation-latents, and more validation latents than the run has', async () => {
    const { runPath } = await makeRun();
    const out = join(dir, 'x.png');
    await expect(
      generateFromCheckpoint({ checkpoint: runPath, out, backend, seed: 1, validationLatents: true }),
    ).rejects.toMatchObject({
      code: 'GAN_DIST_E_USAGE',
      message: expect.stringContaining('--seed and --validation-latents'),
    });
    await expect(
      generateFromCheckpoint({ checkpoint: runPath, out, backend, count: 30, validationLatents: true }),
    ).rejects.toMatchObject({ code: 'GAN_DIST_E_USAGE', message: expect.stringContaining('--count asks for 30') });
  });

  it('prints the seed it drew and how to draw it again', async () => {
    const { runPath } = await makeRun();
    const written = await runGenerate(['--checkpoint', runPath, '--count', '2', '--out', join(dir, 'two.png')]);
    expect(written).toMatch(
      /^wrote 2 images \(64x32 grid, fresh latents of seed (\d+): --seed \1 draws them again\) from iteration 100/,
    );
    const program = new Command().exitOverride();
    registerGenerateCommand(program);
    program.commands[0].exitOverride().configureOutput({ writeErr: () => {} });
    await expect(
      program.parseAsync(['generate', '--checkpoint', runPath, '--seed', '1', '--validation-latents'], {
        from: 'user',
      }),
    ).rejects.toMatchObject({ code: 'commander.conflictingOption' });
  });

  it('runs as `gan-dist generate` with --count, --seed and --json', async () => {
    const { runPath } = await makeRun();
    const out = join(dir, 'three.png');
    const written = await runGenerate([
      '--checkpoint',
      join(runPath, 'checkpoints', 'iter-000100'),
      '--count',
      '3',
      '--seed',
      '1',
      '--out',
      out,
      '--json',
    ]);
    const result = JSON.parse(written);
    expect(result).toMatchObject({ count: 3, latents: 'seed', seed: 1, width: 64, height: 64, out });
    const meta = await sharp(out).metadata();
    expect([meta.format, meta.width, meta.height]).toEqual(['png', 64, 64]);
  });

  it("exports the checkpoint's generator with --format tfjs", async () => {
    const { runPath, weights } = await makeRun();
    const out = join(dir, 'model');
    const r = await generateFromCheckpoint({ checkpoint: runPath, out, format: 'tfjs', backend });
    expect(r.files).toEqual([join(out, 'model.json'), join(out, 'group1-shard1of1.bin')]);
    const model = await loadExportedGenerator(tf, out);
    const z = new Rng(3).fillNormal(new Float32Array(100));
    const y = model.predict(tf.tensor2d(z, [1, 100])) as Tensor;
    expect(maxAbsDiff(y.dataSync() as Float32Array, await generateWithTrainer(weights, z, 1))).toBeLessThan(1e-4);
    y.dispose();
    model.dispose();
  });
});
