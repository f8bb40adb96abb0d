import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Command } from 'commander';
import sharp from 'sharp';
import { afterEach, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import { saveCheckpoint } from '../../protocol/run/checkpoint.ts';
import { modelConfigOf, resolveConfig, type TrainConfig } from '../../protocol/config.ts';
import { Rng } from '../../protocol/rng.ts';
import { createRunDir, writeRunConfig } from '../../protocol/run/run-dir.ts';
import { registerEvalCommand } from '../../cmd/eval.ts';
import { openDataset, silentLog } from '../../data/index.ts';
import { initialParams, parameterTable, sizeOf } from '../../protocol/model/architecture.ts';
import { loadBackend, type TF } from '../../worker/backend.ts';
import { evalEventFields, prepareRunEvaluation, realSets } from '../../metrics/swd.ts';
import { evaluateCheckpoint, formatEval, scoreGenerator } from '../../worker/eval.ts';
import { generateImages } from '../../worker/export.ts';
import { tinyModel } from '../support/fixtures.ts';

// Plain-JS cpu by default: forward passes only; TEST_BACKEND=wasm checks the embedded one.
const backend = (process.env.TEST_BACKEND ?? 'cpu') as 'wasm' | 'cpu';
import { repoRoot as root } from '../support/paths.ts';
const flowers = path.resolve(root, '../shared/data/flowers');
const hasFlowers = existsSync(flowers);

let tf: TF;
beforeAll(async () => {
  ({ tf } = await loadBackend(backend));
});

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(path.join(tmpdir(), 'gan-dist-eval-'));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

/** Small SWD settings: the API and the command, not the numbers, are under test here. */
const fast = { directions: 16, repeats: 2, patchesPerImage: 32 };

/** `n` 32x32 PNGs of a few coloured squares each, in `folder`. */
async function writeImages(folder: string, n: number): Promise<void> {
  mkdirSync(folder, { recursive: true });
  const rng = new Rng(8);
  for (let i = 0; i < n; i++) {
    const px = new Uint8Array(32 * 32 * 3).fill(40 + (i % 5) * 30);
    for (let b = 0; b < 3; b++) {
      const [x0, y0, w, c] = [rng.uniform() * 24, rng.uniform() * 24, 4 + rng.uniform() * 8, rng.nextU32()];
      for (let y = Math.floor(y0); y < Math.min(32, y0 + w); y++) {
        for (let x = Math.floor(x0); x < Math.min(32, x0 + w); x++)
          px.set([c & 255, (c >>> 8) & 255, (c >>> 16) & 255], (y * 32 + x) * 3);
      }
    }
    await sharp(Buffer.from(px), { raw: { width: 32, height: 32, channels: 3 } })
      .png()
      .toFile(path.join(folder, `img-${i}.png`));
  }
}

/** A run directory with one checkpoint of the tiny G at its initial weights, trained on `data`. */
async function makeRun(data: string): Promise<{ runPath: string; config: TrainConfig }> {
  const config = resolveConfig({ preset: 'tiny', flags: { seed: 3 } });
  const run = createRunDir({ cwd: dir, runDir: 'run' });
  writeRunConfig(run, { ...config, data });
  const specs = parameterTable(modelConfigOf(config));
  const zeros = Object.fromEntries(
    specs.filter((s) => s.role === 'learnable').map((s) => [s.name, new Float32Array(sizeOf(s.shape))]),
  );
  await saveCheckpoint(run.path, {
    iteration: 40,
    epoch: 1,
    runId: 'run-eval',
    config,
    params: initialParams(specs, config.seed),
    adamM: zeros,
    adamV: zeros,
    zValidation: new Float32Array(25 * 100),
    rng: {},
    data: {},
    specs: specs.map(({ name, shape, role }) => ({ name, shape, role })),
  });
  return { runPath: run.path, config };
}

describe('SWD on real photos', () => {
  // The shared flower photos when present, else the synthetic flowers: real pictures either way.
  const data = hasFlowers ? flowers : 'synthetic';

  it(`puts real vs real far below real vs the untrained G, with a blurred or hue-rotated copy in between (${hasFlowers ? 'flower photos' : 'synthetic: ../shared/data/flowers is absent'})`, async () => {
    const size = tinyModel.imageSize;
    const count = 128;
    const cfg = tinyModel;
    const dataset = await openDataset({ data, imageSize: size, seed: 0, log: silentLog });
    const { evaluator, holdout } = (() => {
      try {
        return realSets(dataset, count, 0);
      } finally {
        dataset.close();
      }
    })();
    const floor = evaluator.swdUint8(holdout).mean;
    const untrained = (await scoreGenerator(tf, cfg, initialParams(parameterTable(cfg), 1), evaluator, 0)).mean;
    // A 3x3 box blur of the other real set.
    const blurred = new Uint8Array(holdout.length);
    for (let i = 0; i < count; i++) {
      for (let y = 0; y < size; y++) {
        for (let x = 0; x < size; x++) {
          for (let c = 0; c < 3; c++) {
            let s = 0;
            let n = 0;
            for (let dy = -1; dy <= 1; dy++) {
              for (let dx = -1; dx <= 1; dx++) {
                const yy = y + dy;
                const xx = x + dx;
                if (yy < 0 || xx < 0 || yy >= size || xx >= size) continue;
                s += holdout[((i * size + yy) * size + xx) * 3 + c];
                n++;
              }
            }
            blurred[((i * size + y) * size + x) * 3 + c] = Math.round(s / n);
          }
        }
      }
    }
    // Hue rotated by 120 degrees (R, G, B) -> (B, R, G). A per-channel gain or offset would not
    // do: each set is normalised per channel (ProGAN's recipe), which takes those out.
    const rotated = new Uint8Array(holdout.length);
    for (let p = 0; p < holdout.length; p += 3) rotated.set([holdout[p + 2], holdout[p], holdout[p + 1]], p);
    const blur = evaluator.swdUint8(blurred).mean;
    const hue = evaluator.swdUint8(rotated).mean;
    console.log(
      `SWD x1e3 (${count} vs ${count}, ${size}x${size}, ${hasFlowers ? 'flowers' : 'synthetic'}): real vs real ${floor.toFixed(2)}, ` +
        `blurred ${blur.toFixed(2)}, hue-rotated ${hue.toFixed(2)}, untrained G ${untrained.toFixed(2)}`,
    );
    expect(untrained).toBeGreaterThan(3 * floor);
    for (const between of [blur, hue]) {
      expect(between).toBeGreaterThan(floor * 1.15);
      expect(between).toBeLessThan(untrained);
    }
  });
});

describe('gan-dist eval', () => {
  it("scores a checkpoint's G against the real images, with the real-vs-real floor, reproducibly", async () => {
    const images = path.join(dir, 'images');
    await writeImages(images, 40);
    const { runPath } = await makeRun(images);
    const opts = {
      checkpoint: runPath,
      count: 16,
      seed: 2,
      backend,
      swd: fast,
      cacheDir: path.join(dir, 'cache'),
    } as const;
    const r = await evaluateCheckpoint(opts);
    expect(r).toMatchObject({ iteration: 40, runId: 'run-eval', data: images, imageSize: 32, count: 16, seed: 2 });
    expect(r.swd.resolutions).toEqual([32, 16]);
    expect(r.swd.levels).toHaveLength(2);
    expect(r.floor.levels).toHaveLength(2);
    // Untrained G makes no squares: well above two sets of real ones.
    expect(r.swd.mean).toBeGreaterThan(2 * r.floor.mean);
    const again = await evaluateCheckpoint(opts);
    expect([again.swd, again.floor]).toEqual([r.swd, r.floor]);
    const other = await evaluateCheckpoint({ ...opts, seed: 3 });
    expect(other.swd.mean).not.toBe(r.swd.mean);
    expect(formatEval(r)).toMatch(/G vs real\s+[\d.]+\s+[\d.]+\s+[\d.]+\nreal vs real \(floor\)/);
  });

  it('says how many images --count needs when the data has too few', async () => {
    const images = path.join(dir, 'few');
    await writeImages(images, 6);
    const { runPath } = await makeRun(images);
    await expect(
      evaluateCheckpoint({ checkpoint: runPath, count: 4, backend, swd: fast, cacheDir: path.join(dir, 'cache') }),
    ).rejects.toMatchObject({
      code: 'GAN_DIST_E_USAGE',
      message: expect.stringMatching(/--count 4 needs 8 real images .* has 6/),
      hint: 'use --count 3 or less',
    });
  });

  it('agrees with training-time evaluation: prepareRunEvaluation on the same data, count and seed gives the same numbers', async () => {
    const images = path.join(dir, 'images');
    await writeImages(images, 20);
    const { runPath, config } = await makeRun(images);
    const r = await evaluateCheckpoint({
      checkpoint: runPath,
      count: 8,
      seed: 1,
      backend,
      cacheDir: path.join(dir, 'cache'),
    });
    const dataset = await openDataset({
      data: images,
      imageSize: 32,
      seed: 0,
      cacheDir: path.join(dir, 'cache'),
      log: silentLog,
    });
    const prepared = prepareRunEvaluation(dataset, config.latent, 8, 1);
    dataset.close();
    const cfg = modelConfigOf(config);
    const during = await prepared.evaluator.swdAsync(
      await generateImages(tf, cfg, initialParams(parameterTable(cfg), config.seed), prepared.z, prepared.count),
    );
    expect(during).toEqual(r.swd);
    expect(prepared.floor).toEqual(r.floor);
    expect(evalEventFields(40, during)).toEqual({
      iteration: 40,
      swd: Math.round(r.swd.mean * 1000) / 1000,
      swdLevels: r.swd.levels.map((v) => Math.round(v * 1000) / 1000),
      resolutions: [32, 16],
    });
  });

  it('runs as `gan-dist eval`, reading the real images the run trained on from its config.json', async () => {
    const images = path.join(dir, 'images');
    await writeImages(images, 20);
    const { runPath } = await makeRun(images);
    const program = new Command().exitOverride();
    registerEvalCommand(program);
    const written: string[] = [];
    const out = vi.spyOn(process.stdout, 'write').mockImplementation((chunk) => {
      written.push(String(chunk));
      return true;
    });
    const err = vi.spyOn(process.stderr, 'write').mockImplementation(() => true);
    vi.stubEnv('GAN_DIST_CACHE', path.join(dir, 'cache'));
    try {
      await program.parseAsync(
        [
          'eval',
          '--checkpoint',
          path.join(runPath, 'checkpoints', 'iter-000040'),
          '--count',
          '8',
          '--backend',
          backend,
          '--json',
        ],
        { from: 'user' },
      );
    } finally {
      out.mockRestore();
      err.mockRestore();
      vi.unstubAllEnvs();
    }
    const r = JSON.parse(written.join(''));
    expect(r).toMatchObject({ iteration: 40, data: images, count: 8, seed: 0 });
    expect(r.swd.resolutions).toEqual([32, 16]);
    expect(typeof r.swd.mean).toBe('number');
    expect(typeof r.floor.mean).toBe('number');
  });
});
