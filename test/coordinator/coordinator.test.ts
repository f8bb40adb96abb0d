import { afterEach, describe, expect, it } from 'vitest';
import { resolveConfig, modelConfigOf, type TrainConfig } from '../../protocol/config.ts';
import type { Coordinator } from '../../coordinator/coordinator.ts';
import { adamStep, ADAM_EPSILON } from '../../coordinator/optimizer/adam.ts';
import { ShmRegion } from '../../protocol/wire/shm.ts';
import { startCoordinator } from '../support/harness.ts';
import { relErr } from '../support/numbers.ts';
import { initialParams, parameterTable, type NamedArrays } from '../../protocol/model/architecture.ts';
import { loadBackend } from '../../worker/backend.ts';
import { runWorker } from '../../worker/client.ts';
import { Trainer } from '../../worker/trainer.ts';
import { Rng } from '../../protocol/rng.ts';
import { waitFor } from '../support/wait.ts';
import type { WireDtype } from '../../protocol/wire/wire-dtype.ts';

const tiny = (over: Partial<TrainConfig> = {}) => resolveConfig({ preset: 'tiny', flags: { seed: 3, ...over } });

const open: Coordinator[] = [];
const closeAfter: ShmRegion[] = [];
afterEach(async () => {
  for (const r of closeAfter.splice(0)) r.close();
  for (const c of open.splice(0)) if (c.state !== 'finished' && c.state !== 'failed') c.requestStop('test over');
});

/** A coordinator with `workers` in-process workers on the wasm backend, over the socket or shared memory. */
async function harness(
  config: TrainConfig,
  workers: number,
  transport: 'socket' | 'shm' = 'socket',
  shardsAt?: (iteration: number) => number,
  wireDtype?: WireDtype,
) {
  // Two workers initialising the wasm backend at once in one process race (setBackend fails): load it first.
  await loadBackend('wasm', { threads: 1 });
  const shm = transport === 'shm' ? ShmRegion.create().region : undefined;
  const h = await startCoordinator(config, { minWorkers: workers, shm, shardsAt, wireDtype });
  open.push(h.coordinator);
  const joined = Array.from({ length: workers }, () =>
    runWorker({
      url: `ws://${h.endpoint}`,
      token: h.token,
      backend: 'wasm',
      threads: 1,
      ganDistVersion: 'test',
      shmRegion: shm?.dir,
    }),
  );
  if (shm) closeAfter.push(shm);
  return {
    ...h,
    run: async () => {
      await h.coordinator.run();
      for (const o of await Promise.all(joined)) expect(o.exitCode, o.reason).toBe(0);
    },
  };
}

describe('Coordinator', () => {
  it('draws the same Z and flip bits for an iteration with 1, 2 and 3 workers', async () => {
    const seen: Map<number, { z: Float32Array; flip: Uint8Array }>[] = [];
    for (const n of [1, 2, 3]) {
      const h = await harness(tiny({ iterations: 2 }), n);
      await h.run();
      expect(h.records.map((r) => r.workers)).toEqual([n, n]);
      seen.push(h.draws);
    }
    for (const t of [1, 2]) {
      expect(seen[1].get(t)).toEqual(seen[0].get(t));
      expect(seen[2].get(t)).toEqual(seen[0].get(t));
    }
    expect(seen[0].get(1)!.z).not.toEqual(seen[0].get(2)!.z);
  });

  it('splits iteration t into shardsAt(t) shards when a benchmark asks (bench scaling interleaved)', async () => {
    const h = await harness(tiny({ iterations: 4 }), 2, 'shm', (t) => (t % 2 === 1 ? 1 : 2));
    await h.run();
    expect(h.records.map((r) => r.workers)).toEqual([1, 2, 1, 2]);
    expect(h.records.map((r) => r.shards.map((s) => s.rows))).toEqual([[16], [8, 8], [16], [8, 8]]);
  });

  it.each(['socket', 'shm'] as const)(
    'gives 2 workers with half the batch each the Adam step of 1 worker computing both halves and averaging (%s)',
    async (transport) => {
      const config = tiny({ iterations: 1 });
      const h = await harness(config, 2, transport);
      await h.run();
      // Both workers really took the transport under test.
      expect(h.events.filter((e) => e.event === 'shm-attached')).toHaveLength(transport === 'shm' ? 2 : 0);
      const { z, flip } = h.draws.get(1)!;
      const batchImages = h.images.get(1)!;

      // Reference: one Trainer computes rows 0-7 and 8-15 as separate shards, averaged by hand.
      const { tf } = await loadBackend('wasm');
      const model = modelConfigOf(config);
      const specs = parameterTable(model);
      const w0 = initialParams(specs, config.seed);
      const trainer = new Trainer(tf, model, config.seed);
      trainer.setWeights(w0);
      const px = 32 * 32 * 3;
      const half = (k: number) =>
        trainer.step({
          iteration: 1,
          rowStart: 8 * k,
          n: 8,
          images: batchImages.subarray(8 * k * px, 8 * (k + 1) * px),
          z: z.subarray(8 * k * 100, 8 * (k + 1) * 100),
          flip: flip.subarray(8 * k, 8 * (k + 1)),
        });
      const a = await half(0);
      const b = await half(1);
      trainer.dispose();
      const expected: NamedArrays = {};
      for (const s of specs.filter((s) => s.role === 'learnable')) {
        const g = a.grads[s.name].map((x, i) => (x + b.grads[s.name][i]) / 2);
        const w = w0[s.name].slice();
        adamStep(w, g, new Float32Array(w.length), new Float32Array(w.length), 1, {
          lr: 2e-4,
          beta1: 0.5,
          beta2: 0.999,
          epsilon: ADAM_EPSILON,
        });
        expected[s.name] = w;
        expect(relErr(h.coordinator.params[s.name], w), s.name).toBeLessThan(1e-5);
        // Adam's first moment after one step is (1 - beta1) g: the averaged gradient itself.
        expect(
          relErr(
            h.coordinator.adamM[s.name],
            g.map((x) => 0.5 * x),
          ),
          s.name,
        ).toBeLessThan(1e-5);
      }
      // The weights moved: the comparison above is not between two untouched copies.
      expect(relErr(h.coordinator.params['G/tconv1/w'], w0['G/tconv1/w'])).toBeGreaterThan(1e-4);
      // BatchNorm running statistics were updated from the pooled batch statistics.
      expect(h.coordinator.params['G/bn1/mean'].some((x) => x !== 0)).toBe(true);
      expect(h.records[0].lossD).toBeCloseTo((a.lossD + b.lossD) / 2, 5);
      expect(h.records[0].scoreG).toBeCloseTo((a.scoreG + b.scoreG) / 2, 5);
    },
  );
});

describe('--wire-dtype over shared memory', () => {
  /** A 3-iteration run of 2 real workers over shm, with the length and dtype of every frame that crossed it. */
  async function shmRun(wireDtype: WireDtype) {
    const h = await harness(tiny({ iterations: 3 }), 2, 'shm', undefined, wireDtype);
    const shm = closeAfter.at(-1)!;
    const frames = { weights: [] as number[], gradients: [] as number[], half: 0 };
    // The frames as the region writes and reads them: a bfloat16 one names its dtype in its header.
    const writeWeights = shm.writeWeights.bind(shm);
    shm.writeWeights = (frame) => {
      frames.weights.push(frame.byteLength);
      return writeWeights(frame);
    };
    const read = shm.readGradientsAsync.bind(shm);
    shm.readGradientsAsync = async (id, seq, byteLength) => {
      const buf = await read(id, seq, byteLength);
      frames.gradients.push(byteLength);
      if (buf.subarray(0, 65536).includes('"dtype":"bfloat16"')) frames.half++;
      return buf;
    };
    await h.run();
    expect(h.events.filter((e) => e.event === 'shm-attached')).toHaveLength(2);
    return { records: h.records, frames, params: h.coordinator.params };
  }

  it('trains on bfloat16 frames in about half the bytes, close to float32 but not the same', async () => {
    const f32 = await shmRun('float32');
    const bf16 = await shmRun('bfloat16');
    expect(bf16.records).toHaveLength(3);
    expect(f32.frames.half).toBe(0);
    // Every gradient frame came through the files (2 workers x 3 iterations), each in bfloat16.
    expect(bf16.frames.gradients).toHaveLength(6);
    expect(bf16.frames.half).toBe(6);
    const ratio = (a: number[], b: number[]) => Math.max(...a) / Math.max(...b);
    // Half, plus the header and the BatchNorm sums and running statistics that stay float32.
    expect(ratio(bf16.frames.gradients, f32.frames.gradients)).toBeGreaterThan(0.5);
    expect(ratio(bf16.frames.gradients, f32.frames.gradients)).toBeLessThan(0.56);
    expect(ratio(bf16.frames.weights, f32.frames.weights)).toBeLessThan(0.56);
    // Rounded weights and gradients: the same run within bfloat16's error, never bit for bit.
    const losses = (r: typeof f32) => r.records.flatMap((x) => [x.lossD, x.lossG]);
    const a = losses(f32);
    const b = losses(bf16);
    for (let i = 0; i < a.length; i++) expect(Math.abs(b[i] - a[i]), `loss ${i}`).toBeLessThan(0.02 * Math.abs(a[i]));
    expect(b).not.toEqual(a);
    // Adam's step is about lr (2e-4) whatever the gradient's size: where rounding flips the sign
    // of a gradient near zero, the two runs part by up to 2 lr an iteration, never by more.
    const w32 = f32.params['G/tconv1/w'];
    const parted = bf16.params['G/tconv1/w'].reduce((m, x, i) => Math.max(m, Math.abs(x - w32[i])), 0);
    expect(parted).toBeGreaterThan(0);
    expect(parted).toBeLessThan(1.25 * 3 * 2 * 2e-4);
  });
});

describe('non-finite gradients from shared memory', () => {
  // Simulated workers (no model): each shard answered at once with zero gradients, or with a NaN
  // in them. On shared memory the worker leaves the check to the coordinator, which must take a
  // NaN as the worker's report of it, never as a broken frame that costs the worker its place.
  async function simulated(workers: { nonFinite: boolean }[], iterations: number, wireDtype?: WireDtype) {
    const shm = ShmRegion.create().region;
    closeAfter.push(shm);
    const h = await startCoordinator(tiny({ iterations }), { minWorkers: workers.length, shm, wireDtype });
    open.push(h.coordinator);
    const outcomes = workers.map((w) =>
      runWorker({
        url: `ws://${h.endpoint}`,
        token: h.token,
        backend: 'wasm',
        ganDistVersion: 'test',
        shmRegion: shm.dir,
        simulateStepMs: 1,
        simulateNonFinite: w.nonFinite,
      }),
    );
    return { h, outcomes };
  }

  // In bfloat16 the worker checks before encoding (the encoder refuses NaN) and reports over the socket.
  it.each(['float32', 'bfloat16'] as const)(
    'gives a NaN shard to the other worker, which keeps the run going; the NaN worker stays (%s)',
    async (wireDtype) => {
      const { h, outcomes } = await simulated([{ nonFinite: true }, { nonFinite: false }], 3, wireDtype);
      await h.coordinator.run();
      expect(h.records).toHaveLength(3);
      expect(h.events.filter((e) => e.event === 'shm-attached')).toHaveLength(2);
      expect(h.events.filter((e) => e.event === 'shard-nonfinite').length).toBeGreaterThanOrEqual(1);
      // Both stayed to the end (they leave as the run closes, with exit code 0, never for a bad frame).
      expect(h.events.filter((e) => e.event === 'worker-left' && e.fields.reason !== 'connection closed')).toEqual([]);
      for (const o of await Promise.all(outcomes)) expect(o.exitCode, o.reason).toBe(0);
      // Only the finite worker's zero gradients were summed: Adam moved nothing.
      expect(Array.from(h.coordinator.adamM['G/proj/w'].subarray(0, 4))).toEqual([0, 0, 0, 0]);
    },
  );

  it('fails the run as diverged when the only worker returns non-finite gradients', async () => {
    const { h, outcomes } = await simulated([{ nonFinite: true }], 2);
    await expect(h.coordinator.run()).rejects.toMatchObject({ code: 'GAN_DIST_E_DIVERGED' });
    expect(h.events.filter((e) => e.event === 'worker-left' && e.fields.reason !== 'connection closed')).toEqual([]);
    await Promise.all(outcomes);
  });

  it('stops within seconds with no live worker: the iteration in progress is given up and leaves no trace', async () => {
    const h = await startCoordinator(tiny({ iterations: 1000 }), { minWorkers: 1 });
    open.push(h.coordinator);
    const leave = new AbortController();
    // Each shard takes 300 ms, so the worker leaves in the middle of one.
    const outcome = runWorker({
      url: `ws://${h.endpoint}`,
      token: h.token,
      backend: 'wasm',
      ganDistVersion: 'test',
      simulateStepMs: 300,
      signal: leave.signal,
    });
    const running = h.coordinator.run();
    await waitFor(() => h.records.length >= 2, 'two iterations', 30_000);
    leave.abort('SIGTERM');
    await outcome;
    await waitFor(
      () => h.events.some((e) => e.event === 'waiting-for-workers'),
      'the run to wait for a worker',
      10_000,
    );
    const t0 = performance.now();
    h.coordinator.requestStop('test stop');
    expect(await running).toBe('finished');
    expect(performance.now() - t0).toBeLessThan(10_000);
    const done = h.records.length;
    const abandoned = h.events.find((e) => e.event === 'iteration-abandoned');
    expect(abandoned?.fields.iteration).toBe(done + 1);
    // The snapshot is the last completed iteration, with the RNG and data as before the abandoned
    // draw: a resume draws the same Z for that iteration again.
    const snap = h.coordinator.snapshot();
    expect(snap.iteration).toBe(done);
    const cfg = tiny({});
    const z = Rng.fromState(snap.rng.z).fillNormal(new Float32Array(cfg.batchSize * cfg.latent));
    expect(z).toEqual(h.draws.get(done + 1)!.z);
    // The harness's 64 synthetic images make 64 / batch iterations an epoch.
    expect((snap.data.epoch - 1) * (64 / cfg.batchSize) + snap.data.position).toBe(done);
  }, 60_000);

  it('goes on training when a periodic checkpoint fails (a full disk), and writes the final one', async () => {
    let calls = 0;
    const saved: number[] = [];
    const h = await startCoordinator(tiny({ iterations: 3 }), {
      minWorkers: 1,
      checkpointEvery: 1,
      saveSnapshot: async (s) => {
        if (++calls === 1) throw new Error('ENOSPC: no space left on device');
        saved.push(s.iteration);
        return `iter-${s.iteration}`;
      },
    });
    open.push(h.coordinator);
    const outcome = runWorker({
      url: `ws://${h.endpoint}`,
      token: h.token,
      backend: 'wasm',
      ganDistVersion: 'test',
      simulateStepMs: 1,
    });
    expect(await h.coordinator.run()).toBe('finished');
    await outcome;
    expect(h.records.map((r) => r.iteration)).toEqual([1, 2, 3]);
    const failed = h.events.filter((e) => e.event === 'checkpoint-failed');
    expect(failed.map((e) => e.fields)).toEqual([{ iteration: 1, error: 'ENOSPC: no space left on device' }]);
    expect(saved).toEqual([2, 3]);
  }, 30_000);
});
