import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  checkpointName,
  listCheckpoints,
  loadCheckpoint,
  loadLatestCheckpoint,
  saveCheckpoint,
  type CheckpointState,
} from '../../protocol/run/checkpoint.ts';
import { resolveConfig } from '../../protocol/config.ts';
import { sealManifest } from '../../protocol/run/checkpoint-manifest.ts';
import { GanDistError } from '../../protocol/errors.ts';
import { Rng } from '../../protocol/rng.ts';
import { initialParams, parameterTable, sizeOf, type NamedArrays } from '../../protocol/model/architecture.ts';
import { tinyModel } from '../support/fixtures.ts';
import { asTextbookCheckpoint } from '../support/matlab-adam.ts';

let runDir: string;
beforeEach(() => {
  runDir = mkdtempSync(join(tmpdir(), 'gan-dist-ckpt-'));
});
afterEach(() => rmSync(runDir, { recursive: true, force: true }));

const specs = parameterTable(tinyModel);
const learnables = specs.filter((s) => s.role === 'learnable');

function randomNamed(which: typeof specs, seed: number): NamedArrays {
  const rng = new Rng(seed);
  return Object.fromEntries(which.map((s) => [s.name, rng.fillNormal(new Float32Array(sizeOf(s.shape)))]));
}

function makeState(iteration: number): CheckpointState {
  return {
    iteration,
    epoch: Math.floor(iteration / 10),
    runId: 'run-abc',
    config: resolveConfig({ preset: 'tiny' }),
    params: initialParams(specs, iteration),
    adamM: randomNamed(learnables, iteration + 1),
    adamV: randomNamed(learnables, iteration + 2),
    zValidation: new Rng(iteration).fillNormal(new Float32Array(25 * 100)),
    rng: { z: new Rng(1).state(), flip: new Rng(2).state() },
    data: { epoch: 3, position: 17, order: [4, 1, 3, 0, 2] },
    specs: specs.map(({ name, shape, role }) => ({ name, shape, role })),
  };
}

const bytes = (a: Float32Array) => Buffer.from(a.buffer, a.byteOffset, a.byteLength);

function flipByte(path: string, at: number): void {
  const buf = readFileSync(path);
  buf[at] ^= 0x40;
  writeFileSync(path, buf);
}

async function rejection(p: Promise<unknown>): Promise<GanDistError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(GanDistError);
  return err as GanDistError;
}

describe('checkpoints', () => {
  it('round-trips every array bitwise and every field exactly', async () => {
    const state = makeState(500);
    const saved = await saveCheckpoint(runDir, state);
    expect(saved.path).toBe(join(runDir, 'checkpoints', 'iter-000500'));
    expect(readdirSync(saved.path).sort()).toEqual([
      'adam-m.f32',
      'adam-v.f32',
      'manifest.json',
      'weights.f32',
      'zvalidation.f32',
    ]);

    const loaded = await loadCheckpoint(saved.path, { expectSpecs: specs });
    for (const s of specs) expect(bytes(loaded.params[s.name]).equals(bytes(state.params[s.name])), s.name).toBe(true);
    for (const s of learnables) {
      expect(bytes(loaded.adamM[s.name]).equals(bytes(state.adamM[s.name])), s.name).toBe(true);
      expect(bytes(loaded.adamV[s.name]).equals(bytes(state.adamV[s.name])), s.name).toBe(true);
    }
    expect(Object.keys(loaded.adamM)).toEqual(learnables.map((s) => s.name));
    expect(bytes(loaded.zValidation).equals(bytes(state.zValidation))).toBe(true);
    expect({ ...loaded, params: 0, adamM: 0, adamV: 0, zValidation: 0, path: 0, createdAt: 0 }).toEqual({
      ...state,
      params: 0,
      adamM: 0,
      adamV: 0,
      zValidation: 0,
      path: 0,
      createdAt: 0,
      adamForm: 'matlab',
    });
    // RNG states restored from the checkpoint continue the same streams.
    const z = loaded.rng as { z: [number, number, number, number] };
    const fresh = new Rng(1);
    expect(Rng.fromState(z.z).nextU32()).toBe(fresh.nextU32());
  });

  it('documents sizes and checksums in the manifest', async () => {
    const saved = await saveCheckpoint(runDir, makeState(7));
    const m = JSON.parse(readFileSync(join(saved.path, 'manifest.json'), 'utf8'));
    expect(m.format).toBe('gan-dist-checkpoint');
    expect(m.version).toBe(1);
    expect(m.files['weights.f32'].bytes).toBe(4 * specs.reduce((n, s) => n + sizeOf(s.shape), 0));
    expect(m.files['adam-m.f32'].sha256).toMatch(/^[0-9a-f]{64}$/);
    expect(m.parameters[0]).toEqual({ name: 'G/proj/w', shape: [100, 2048], role: 'learnable' });
  });

  it("records MATLAB's Adam form, and reads a checkpoint from before the record as the textbook form", async () => {
    const saved = await saveCheckpoint(runDir, makeState(9));
    const m = JSON.parse(readFileSync(join(saved.path, 'manifest.json'), 'utf8'));
    expect(m.adam).toBe('matlab');
    expect((await loadCheckpoint(saved.path)).adamForm).toBe('matlab');
    asTextbookCheckpoint(saved.path);
    expect(JSON.parse(readFileSync(join(saved.path, 'manifest.json'), 'utf8'))).not.toHaveProperty('adam');
    const old = await loadCheckpoint(saved.path);
    expect(old.adamForm).toBe('textbook');
    // The moments are the same quantities in both forms: they load as they were.
    expect(bytes(old.adamV['G/proj/w']).equals(bytes(makeState(9).adamV['G/proj/w']))).toBe(true);
  });

  it('refuses a checkpoint whose Adam form it does not know', async () => {
    const saved = await saveCheckpoint(runDir, makeState(11));
    const path = join(saved.path, 'manifest.json');
    const { manifestSha256: _, ...rest } = JSON.parse(readFileSync(path, 'utf8'));
    writeFileSync(path, sealManifest({ ...rest, adam: 'adamw' }));
    const err = await rejection(loadCheckpoint(saved.path));
    expect(err.code).toBe('GAN_DIST_E_CHECKPOINT');
    expect(err.message).toContain('Adam form "adamw" is not one this gan-dist knows ("matlab")');
  });

  it('detects a flipped byte with a message naming the file, and falls back to the previous checkpoint', async () => {
    await saveCheckpoint(runDir, makeState(100));
    const newest = await saveCheckpoint(runDir, makeState(200));
    flipByte(join(newest.path, 'weights.f32'), 12345);

    const err = await rejection(loadCheckpoint(newest.path));
    expect(err.code).toBe('GAN_DIST_E_CHECKPOINT');
    expect(err.message).toContain(newest.path);
    expect(err.message).toMatch(/weights\.f32 is corrupt \(sha256 [0-9a-f]{64}, the manifest says [0-9a-f]{64}\)/);

    const warnings: string[] = [];
    const loaded = await loadLatestCheckpoint(runDir, { onWarning: (m) => warnings.push(m) });
    expect(loaded.iteration).toBe(100);
    expect(bytes(loaded.params['G/proj/w']).equals(bytes(makeState(100).params['G/proj/w']))).toBe(true);
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toContain('weights.f32 is corrupt');
    expect(warnings[0]).toContain('falling back to the previous checkpoint');
  });

  it('detects a truncated file by its size', async () => {
    const saved = await saveCheckpoint(runDir, makeState(3));
    truncateSync(join(saved.path, 'adam-v.f32'), 100);
    const err = await rejection(loadCheckpoint(saved.path));
    expect(err.message).toContain('adam-v.f32 has 100 bytes, the manifest says');
  });

  it('detects an edited manifest', async () => {
    const saved = await saveCheckpoint(runDir, makeState(300));
    const path = join(saved.path, 'manifest.json');
    writeFileSync(path, readFileSync(path, 'utf8').replace('"iteration": 300', '"iteration": 900'));
    const err = await rejection(loadCheckpoint(saved.path));
    expect(err.message).toContain('manifest.json is corrupt');
  });

  it('refuses when every checkpoint is damaged, listing each', async () => {
    const a = await saveCheckpoint(runDir, makeState(1));
    const b = await saveCheckpoint(runDir, makeState(2));
    rmSync(join(a.path, 'zvalidation.f32'));
    flipByte(join(b.path, 'adam-m.f32'), 0);
    const warnings: string[] = [];
    const err = await rejection(loadLatestCheckpoint(runDir, { onWarning: (m) => warnings.push(m) }));
    expect(err.code).toBe('GAN_DIST_E_CHECKPOINT');
    expect(err.message).toContain('no intact checkpoint');
    expect(err.message).toContain('adam-m.f32 is corrupt');
    expect(err.message).toContain('cannot read zvalidation.f32');
    expect(warnings).toHaveLength(2);
  });

  it('says so when a run directory has no checkpoint', async () => {
    const err = await rejection(loadLatestCheckpoint(runDir));
    expect(err.message).toContain(`no checkpoint in ${runDir}`);
  });

  it('refuses a checkpoint of another model, naming the first different parameter', async () => {
    const saved = await saveCheckpoint(runDir, makeState(5));
    const other = parameterTable({ ...tinyModel, filters: 8 });
    const err = await rejection(loadCheckpoint(saved.path, { expectSpecs: other }));
    expect(err.message).toContain(
      'is of another model: parameter 0 is G/proj/w [100,2048] learnable, this model has G/proj/w [100,1024] learnable',
    );
  });

  it('removes leftover temporary directories of a crashed save at the next save', async () => {
    const leftover = join(runDir, 'checkpoints', '.tmp-iter-000300-99999');
    mkdirSync(leftover, { recursive: true });
    writeFileSync(join(leftover, 'weights.f32'), 'half-written');
    await saveCheckpoint(runDir, makeState(400));
    expect(readdirSync(join(runDir, 'checkpoints'))).toEqual(['iter-000400']);
  });

  it('keeps only the newest K checkpoints', async () => {
    const removed: string[] = [];
    for (const it of [10, 20, 30, 40, 50])
      removed.push(...(await saveCheckpoint(runDir, makeState(it), { keep: 2 })).removed);
    expect(listCheckpoints(runDir).map((c) => c.iteration)).toEqual([40, 50]);
    expect(removed.map((p) => p.slice(-11))).toEqual(['iter-000010', 'iter-000020', 'iter-000030']);
    await saveCheckpoint(runDir, makeState(60));
    expect(listCheckpoints(runDir).map((c) => c.iteration)).toEqual([40, 50, 60]); // default K = 3
  });

  it('replaces a checkpoint saved again at the same iteration', async () => {
    await saveCheckpoint(runDir, makeState(70));
    const again = { ...makeState(70), epoch: 99 };
    await saveCheckpoint(runDir, again);
    expect(readdirSync(join(runDir, 'checkpoints'))).toEqual(['iter-000070']);
    expect((await loadLatestCheckpoint(runDir)).epoch).toBe(99);
  });

  it('names checkpoints with the iteration zero-padded to six digits', () => {
    expect(checkpointName(500)).toBe('iter-000500');
    expect(checkpointName(1234567)).toBe('iter-1234567');
  });

  it('refuses to save params that do not match the table', async () => {
    const state = makeState(8);
    state.params['G/bn1/mean'] = new Float32Array(3);
    const err = await rejection(saveCheckpoint(runDir, state));
    expect(err.message).toContain('params "G/bn1/mean" has 3 values, its shape [64] needs 64');
  });
});
