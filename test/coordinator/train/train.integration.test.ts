import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadLatestCheckpoint } from '../../../protocol/run/checkpoint.ts';
import { resolveConfig, type TrainConfig } from '../../../protocol/config.ts';
import { planWorkers, launchWorker, workerEnv } from '../../../coordinator/train/launcher.ts';
import { train } from '../../../coordinator/train/train.ts';
import sharp from 'sharp';
import { loadBackend } from '../../../worker/backend.ts';
import { loadExportedGenerator } from '../../../worker/export.ts';
import { evaluateCheckpoint } from '../../../worker/eval.ts';

import { cliPath as cli, repoRoot as root } from '../../support/paths.ts';
const flowers = path.resolve(root, '../shared/data/flowers');
const hasFlowers = existsSync(flowers);
const tmp = () => mkdtempSync(path.join(os.tmpdir(), 'gan-dist-train-'));
const tiny = (over: Partial<TrainConfig> = {}) =>
  resolveConfig({ preset: 'tiny', flags: { seed: 5, validationFrequency: 2, ...over } });

function logLines(runDir: string): Record<string, unknown>[] {
  return readFileSync(path.join(runDir, 'train.log'), 'utf8')
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l));
}

function runCli(
  args: string[],
  opts: { cwd: string; onStdout?: (s: string, child: ReturnType<typeof spawn>) => void },
) {
  return new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
    const child = spawn(process.execPath, [cli, ...args], { cwd: opts.cwd, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => {
      stdout += d;
      opts.onStdout?.(stdout, child);
    });
    child.stderr.on('data', (d) => (stderr += d));
    child.on('exit', (code) => resolve({ code, stdout, stderr }));
  });
}

describe('gan-dist train', () => {
  it('resumed for N more iterations equals 2N in one go: weights and Adam state', async () => {
    const cwd = tmp();
    const common = {
      data: 'synthetic',
      listen: '127.0.0.1:0',
      workers: 2,
      backend: 'wasm',
      checkpointEvery: 0,
      keepCheckpoints: 2,
      cwd,
    };
    // Over the socket in one go, through shared memory split in two: transports must not change a bit.
    const straight = await train({
      ...common,
      config: tiny({ iterations: 4 }),
      runDir: 'straight',
      transport: 'socket',
    });
    const first = await train({ ...common, config: tiny({ iterations: 2 }), runDir: 'split', transport: 'shm' });
    const resumed = await train({
      ...common,
      config: tiny({ iterations: 4 }),
      overrides: { iterations: 4 },
      resume: first.runDir,
      transport: 'shm',
    });
    for (const [dir, local] of [
      [straight.runDir, 'socket'],
      [first.runDir, 'shm'],
      [resumed.runDir, 'shm'],
    ]) {
      expect(logLines(dir).find((l) => l.event === 'transport')?.local, dir).toBe(local);
    }
    expect([straight.iteration, first.iteration, resumed.iteration]).toEqual([4, 2, 4]);
    expect(resumed.runId).toBe(first.runId);
    const a = await loadLatestCheckpoint(straight.runDir);
    const b = await loadLatestCheckpoint(resumed.runDir);
    expect(b.iteration).toBe(4);
    for (const name of Object.keys(a.params)) expect(b.params[name], name).toEqual(a.params[name]);
    for (const name of Object.keys(a.adamM)) {
      expect(b.adamM[name], name).toEqual(a.adamM[name]);
      expect(b.adamV[name], name).toEqual(a.adamV[name]);
    }
    expect(b.rng).toEqual(a.rng);
    expect(b.data).toEqual(a.data);
    // Iteration lines are contiguous across the resume, each written once.
    const its = logLines(resumed.runDir)
      .filter((l) => l.msg === 'iteration')
      .map((l) => l.iteration);
    expect(its).toEqual([1, 2, 3, 4]);
  });

  it('--eval-every logs the floor, then an SWD every K iterations, at 0 and at the end, equal to `gan-dist eval` of the final weights', async () => {
    const cwd = tmp();
    const printed: string[] = [];
    const r = await train({
      config: tiny({ iterations: 5 }),
      data: 'synthetic',
      listen: '127.0.0.1:0',
      workers: 2,
      backend: 'wasm',
      checkpointEvery: 0,
      keepCheckpoints: 1,
      evalEvery: 2,
      evalCount: 8,
      cwd,
      runDir: 'run',
      print: (l) => printed.push(l),
    });
    expect(r).toMatchObject({ state: 'finished', iteration: 5 });
    const lines = logLines(r.runDir);
    const floor = lines.filter((l) => l.event === 'eval-floor');
    expect(floor).toHaveLength(1);
    expect(Object.keys(floor[0])).toEqual(
      expect.arrayContaining(['iteration', 'swd', 'swdLevels', 'resolutions', 'count', 'seed']),
    );
    expect(floor[0]).toMatchObject({ iteration: 0, count: 8, seed: 0, resolutions: [32, 16] });
    const evals = lines.filter((l) => l.event === 'eval');
    // Every 2nd iteration, the untrained G at 0, and the last iteration.
    expect(evals.map((l) => l.iteration)).toEqual([0, 2, 4, 5]);
    for (const e of evals) {
      expect(e).toMatchObject({ floor: floor[0].swd, count: 8, resolutions: [32, 16] });
      expect(e.swdLevels).toHaveLength(2);
      const levels = e.swdLevels as number[];
      expect(e.swd).toBeCloseTo((levels[0] + levels[1]) / 2, 2);
      expect(e.swd as number).toBeGreaterThan(floor[0].swd as number);
      expect(typeof e.ms).toBe('number');
    }
    // Logged before the run's end, though scored while training went on.
    const finished = lines.findIndex((l) => l.event === 'run-finished');
    expect(lines.findIndex((l) => l.event === 'eval' && l.iteration === 5)).toBeLessThan(finished);
    expect(printed.filter((l) => l.startsWith('eval'))).toHaveLength(5);
    // The score of the last weights is the one `gan-dist eval` gives their checkpoint.
    const offline = await evaluateCheckpoint({ checkpoint: r.runDir, count: 8, seed: 0, backend: 'wasm', cwd });
    expect(offline.iteration).toBe(5);
    expect(evals.at(-1)!.swd).toBe(Math.round(offline.swd.mean * 1000) / 1000);
    expect(floor[0].swd).toBe(Math.round(offline.floor.mean * 1000) / 1000);
  });

  it.skipIf(!hasFlowers)(
    'trains on the shared flower photos with 2 workers: logs, samples, checkpoint, resume (skips without ../shared)',
    async () => {
      const cwd = tmp();
      const r1 = await runCli(
        [
          'train',
          '--data',
          flowers,
          '--preset',
          'tiny',
          '--iterations',
          '3',
          '--validation-frequency',
          '2',
          '--run-dir',
          'run',
          '--print-every',
          '1',
        ],
        { cwd },
      );
      expect(r1.code, r1.stderr).toBe(0);
      expect(r1.stdout).toMatch(/iter 3\/3/);
      const r2 = await runCli(['train', '--resume', 'run', '--iterations', '4'], { cwd });
      expect(r2.code, r2.stderr).toBe(0);
      const lines = logLines(path.join(cwd, 'run'));
      const iters = lines.filter((l) => l.msg === 'iteration');
      expect(iters.map((l) => l.iteration)).toEqual([1, 2, 3, 4]);
      for (const l of iters)
        for (const k of ['epoch', 'scoreG', 'scoreD', 'lossG', 'lossD', 'imagesPerSec'])
          expect(typeof l[k], k).toBe('number');
      expect(readdirSync(path.join(cwd, 'run/samples'))).toEqual([
        'iter-000001.png',
        'iter-000002.png',
        'iter-000004.png',
      ]);
      expect(readdirSync(path.join(cwd, 'run/checkpoints'))).toEqual(['iter-000003', 'iter-000004']);
      expect(lines.some((l) => l.event === 'data-ready' && l.images === 300)).toBe(true);

      const grid = await runCli(
        ['generate', '--checkpoint', 'run', '--out', 'grid.png', '--json', '--backend', 'wasm'],
        { cwd },
      );
      expect(grid.code, grid.stderr).toBe(0);
      const meta = await sharp(path.join(cwd, 'grid.png')).metadata();
      expect([meta.width, meta.height]).toEqual([5 * 32, 5 * 32]);
      const exported = await runCli(
        ['generate', '--checkpoint', 'run', '--format', 'tfjs', '--out', 'gen', '--backend', 'wasm'],
        { cwd },
      );
      expect(exported.code, exported.stderr).toBe(0);
      const { tf } = await loadBackend('wasm');
      const model = await loadExportedGenerator(tf, path.join(cwd, 'gen'));
      const out = model.predict(tf.zeros([2, 100])) as import('@tensorflow/tfjs').Tensor;
      expect(out.shape).toEqual([2, 32, 32, 3]);
      out.dispose();
    },
  );

  it('stops cleanly on SIGINT: finishes the iteration, writes a checkpoint, exits 0', async () => {
    const cwd = tmp();
    let sent = false;
    const r = await runCli(
      ['train', '--preset', 'tiny', '--iterations', '10000', '--run-dir', 'run', '--print-every', '1'],
      {
        cwd,
        onStdout: (out, child) => {
          if (!sent && /iter 2\//.test(out)) {
            sent = true;
            child.kill('SIGINT');
          }
        },
      },
    );
    expect(r.code, r.stderr).toBe(0);
    const lines = logLines(path.join(cwd, 'run'));
    expect(lines.some((l) => l.event === 'stop-requested')).toBe(true);
    const last = lines.filter((l) => l.msg === 'iteration').at(-1)!.iteration as number;
    expect(readdirSync(path.join(cwd, 'run/checkpoints'))).toContain(`iter-${String(last).padStart(6, '0')}`);
    expect(lines.some((l) => l.event === 'run-finished')).toBe(true);
  });

  it("ends --gpus on a machine with no GPU backend that loads, with the workers' own error naming both backends", async () => {
    // Here: no tfjs-node-gpu, and WebGPU finds at most a software adapter, which --gpus refuses.
    const r = await runCli(['train', '--gpus', '0,1', '--preset', 'tiny', '--data', 'synthetic'], { cwd: tmp() });
    expect(r.code).toBe(3);
    expect(r.stderr).toMatch(/every local worker exited before joining/);
    expect(r.stderr).toMatch(/@tensorflow\/tfjs-node-gpu/);
    expect(r.stderr).toMatch(/webgpu|WebGPU/);
  }, 120_000);

  it('names a bad flag and its allowed range', async () => {
    const r = await runCli(['train', '--flip-prob', '1.5'], { cwd: tmp() });
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/--flip-prob: 1\.5 is not valid; it must be a number >= 0 and <= 1/);
    const count = await runCli(['train', '--eval-every', '100', '--eval-count', '0'], { cwd: tmp() });
    expect(count.code).toBe(2);
    expect(count.stderr).toMatch(/--eval-count: "0" is not an integer >= 1/);
  });
});

describe('launcher', () => {
  it('gives each GPU worker its own CUDA_VISIBLE_DEVICES, rank and the token', () => {
    const plan = planWorkers({ gpus: ['0', '2', '3'], workers: 0, backend: 'auto' });
    // auto stays auto: each worker, given its GPU, tries tfjs-node-gpu and then WebGPU.
    expect(plan.map((p) => p.backend)).toEqual(['auto', 'auto', 'auto']);
    const envs = plan.map((p) => workerEnv(p, 'tok', {}));
    expect(envs.map((e) => e.CUDA_VISIBLE_DEVICES)).toEqual(['0', '2', '3']);
    expect(envs.map((e) => e.GAN_DIST_RANK)).toEqual(['0', '1', '2']);
    expect(envs.every((e) => e.GAN_DIST_TOKEN === 'tok' && e.TF_FORCE_GPU_ALLOW_GROWTH === 'true')).toBe(true);
  });

  it('splits the cores between CPU workers', () => {
    expect(planWorkers({ workers: 2, backend: 'auto', cores: 2 }).map((p) => p.threads)).toEqual([1, 1]);
    expect(planWorkers({ workers: 2, backend: 'auto', cores: 16 }).map((p) => p.threads)).toEqual([8, 8]);
  });

  it.runIf(process.platform === 'linux')('spawns processes that see their own CUDA_VISIBLE_DEVICES', async () => {
    const plan = planWorkers({ gpus: ['0', '1'], workers: 0, backend: 'wasm' });
    // No coordinator listens on port 9: each worker fails to connect and exits, after we read its environment.
    const seen = await Promise.all(
      plan.map(
        (spec) =>
          new Promise<string>((resolve) => {
            const w = launchWorker(
              spec,
              'ws://127.0.0.1:9',
              'x'.repeat(64),
              undefined,
              () => {},
              () => {},
            );
            const env = readFileSync(`/proc/${w.child.pid}/environ`, 'utf8').split('\0');
            w.child.kill();
            resolve(env.find((e) => e.startsWith('CUDA_VISIBLE_DEVICES=')) ?? 'none');
          }),
      ),
    );
    expect(seen).toEqual(['CUDA_VISIBLE_DEVICES=0', 'CUDA_VISIBLE_DEVICES=1']);
  });
});
