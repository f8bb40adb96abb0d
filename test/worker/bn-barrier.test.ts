import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { initialParams, layersOf, parameterTable, type NamedArrays } from '../../protocol/model/architecture.ts';
import { loadBackend, type TF } from '../../worker/backend.ts';
import { PASS_GEN, PASS_REAL, Trainer, type BnBarrierAt, type Shard, type ShardResult } from '../../worker/trainer.ts';
import { combineBnParts, syncBarrierPlan } from '../../protocol/wire/bn-sync.ts';
import { bnLayers } from '../../protocol/wire/bn-sums.ts';
import { simulatedCompute } from '../../worker/simulated.ts';
import { ShardAborted } from '../../worker/bn-barrier.ts';
import { adamStep, ADAM_EPSILON } from '../../coordinator/optimizer/adam.ts';
import { poolBatchStats, updateRunningStats } from '../../coordinator/optimizer/reduce.ts';
import { defaults } from '../../protocol/config.ts';
import { randomShard, seedModel, tinyModel } from '../support/fixtures.ts';
import type { ModelConfig } from '../../protocol/config.ts';

// `--batchnorm sync` at the trainer: N shards of one batch, each BatchNorm barrier combined in
// shard order (Trainer.stepShardsSynced, as the coordinator combines), against one process on
// the whole batch. The tiny preset's batch of 16, split as 1, 2 and 3 workers split it.
const backend = (process.env.TEST_BACKEND ?? 'wasm') as 'wasm' | 'cpu';
const BATCH = 16;

let tf: TF;
let trainer: Trainer;
const weights: NamedArrays = initialParams(parameterTable(tinyModel), 11);
const whole = randomShard(tinyModel, BATCH, 7, 3);

/** `batch` split into contiguous shards of these sizes, as the coordinator splits it. */
function split(sizes: number[], batch: Shard = whole, cfg: ModelConfig = tinyModel): Shard[] {
  const s = cfg.imageSize;
  let start = 0;
  return sizes.map((n) => {
    const shard: Shard = {
      iteration: batch.iteration,
      rowStart: start,
      n,
      images: batch.images.slice(start * s * s * 3, (start + n) * s * s * 3),
      z: batch.z.slice(start * cfg.latent, (start + n) * cfg.latent),
      flip: batch.flip.slice(start, start + n),
    };
    start += n;
    return shard;
  });
}

/** The coordinator's mean: each shard's gradients weighted by n / sum(n), in float64. */
function averaged(results: ShardResult[]): Record<string, Float64Array> {
  const total = results.reduce((a, r) => a + r.n, 0);
  const out: Record<string, Float64Array> = {};
  for (const r of results)
    for (const [name, g] of Object.entries(r.grads)) {
      out[name] ??= new Float64Array(g.length);
      const acc = out[name];
      for (let i = 0; i < g.length; i++) acc[i] += (g[i] * r.n) / total;
    }
  return out;
}

/** Biases that feed a BatchNorm: their gradient is zero in theory, rounding noise in practice. */
function biasesBeforeBn(cfg: ModelConfig): Set<string> {
  return new Set(
    (['G', 'D'] as const).flatMap((net) => {
      const layers = layersOf(net, cfg);
      return layers.flatMap((l, i) => (layers[i + 1]?.kind === 'bn' ? [`${net}/${l.name}/b`] : []));
    }),
  );
}
const beforeBn = biasesBeforeBn(tinyModel);

/** The batch with its rows in reverse order. */
function reversedRows(b: Shard, cfg: ModelConfig): Shard {
  const px = cfg.imageSize * cfg.imageSize * 3;
  const images = new Uint8Array(b.images.length);
  const z = new Float32Array(b.z.length);
  const flip = b.flip.slice();
  for (let r = 0; r < b.n; r++) {
    const to = b.n - 1 - r;
    images.set(b.images.subarray(r * px, (r + 1) * px), to * px);
    z.set(b.z.subarray(r * cfg.latent, (r + 1) * cfg.latent), to * cfg.latent);
    flip[to] = b.flip[r];
  }
  return { ...b, images, z, flip };
}

/** Per tensor: |a - b|_inf / |b|_inf, or for the biases in `absolute` |a - b|_inf. */
function perTensor(
  a: Record<string, Float64Array>,
  b: Record<string, Float64Array>,
  absolute: Set<string>,
): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [name, ref] of Object.entries(b)) {
    let diff = 0;
    let scale = 0;
    for (let i = 0; i < ref.length; i++) {
      diff = Math.max(diff, Math.abs(a[name][i] - ref[i]));
      scale = Math.max(scale, Math.abs(ref[i]));
    }
    out[name] = absolute.has(name) ? diff : diff / scale;
  }
  return out;
}

/** The largest of perTensor's relative errors, and of the absolute ones of biases before a BatchNorm. */
function errors(a: Record<string, Float64Array>, b: Record<string, Float64Array>) {
  const each = perTensor(a, b, beforeBn);
  let relative = 0;
  let absoluteBeforeBn = 0;
  for (const [name, e] of Object.entries(each)) {
    if (beforeBn.has(name)) absoluteBeforeBn = Math.max(absoluteBeforeBn, e);
    else relative = Math.max(relative, e);
  }
  return { relative, absoluteBeforeBn };
}

beforeAll(async () => {
  ({ tf } = await loadBackend(backend));
  trainer = new Trainer(tf, tinyModel, 5);
  trainer.setWeights(weights);
});
afterAll(() => trainer?.dispose());

describe(`synced BatchNorm on ${backend}`, () => {
  let reference: Record<string, Float64Array>;
  beforeAll(async () => {
    reference = averaged([await trainer.step(whole)]);
  });

  for (const sizes of [[16], [8, 8], [6, 5, 5]]) {
    it(`gives one process's gradients on the whole batch with shards ${sizes.join('+')}`, async () => {
      const err = errors(averaged(await trainer.stepShardsSynced(split(sizes))), reference);
      console.log(
        `sync ${sizes.join('+')}: max relative error ${err.relative.toExponential(2)}, biases before BN: max absolute ${err.absoluteBeforeBn.toExponential(2)}`,
      );
      expect(err.relative).toBeLessThanOrEqual(1e-5);
      expect(err.absoluteBeforeBn).toBeLessThanOrEqual(1e-6);
    });
  }

  // The seed's model and batch of 128, as 2 workers split it (about a minute on one core). Here
  // float32 itself sets the floor: one process fed the same rows in reverse order (dropout masks
  // reversed with them: the same step in exact arithmetic) moves D/conv1, D/conv3, D/conv4 and every
  // G tensor by 1e-3 to 6e-2 of their largest value, since their gradients are sums that nearly
  // cancel (a BatchNorm's input gradient sums to zero over its channel). So the bound there is
  // per tensor: synced 64+64 within twice that reordering's distance (or 1e-5); per-shard
  // statistics must fall outside it. Biases before a BatchNorm (here G/tconv1-3/b, D/conv2-4/b): 1e-5 absolute.
  it("gives one process's gradients on the seed's model, batch 128 as 64+64, within float32's own reordering noise", async () => {
    const seedTrainer = new Trainer(tf, seedModel, 5);
    const masks: ReturnType<TF['reverse']>[] = [];
    try {
      seedTrainer.setWeights(initialParams(parameterTable(seedModel), 11));
      const batch = randomShard(seedModel, 128, 7, 3);
      const single = averaged([await seedTrainer.step(batch)]);
      masks.push(
        tf.reverse(seedTrainer.dropout(batch, PASS_REAL), 0),
        tf.reverse(seedTrainer.dropout(batch, PASS_GEN), 0),
      );
      const reordered = averaged([
        await seedTrainer.step(reversedRows(batch, seedModel), { real: masks[0], gen: masks[1] }),
      ]);
      const synced = averaged(await seedTrainer.stepShardsSynced(split([64, 64], batch, seedModel)));
      const halves = split([64, 64], batch, seedModel);
      const sharded = averaged([await seedTrainer.step(halves[0]), await seedTrainer.step(halves[1])]);
      const loose = biasesBeforeBn(seedModel);
      const floor = perTensor(reordered, single, loose);
      const sync = perTensor(synced, single, loose);
      const shard = perTensor(sharded, single, loose);
      const bound = (name: string) => Math.max(2 * floor[name], 1e-5);
      const names = Object.keys(floor).filter((n) => !loose.has(n));
      const worstSync = Math.max(...names.map((n) => sync[n] / bound(n)));
      const worstShard = Math.max(...names.map((n) => shard[n] / bound(n)));
      const biasSync = Math.max(...[...loose].map((n) => sync[n]));
      const widest = names.sort((x, y) => floor[y] - floor[x]).slice(0, 3);
      console.log(
        `seed's model, 128 as 64+64: reordering moves ${widest.map((n) => `${n} ${floor[n].toExponential(1)} (sync ${sync[n].toExponential(1)})`).join(', ')}; sync at most ${worstSync.toFixed(2)} of its bound, shard ${worstShard.toFixed(1)} times it; biases before BN: sync ${biasSync.toExponential(1)} absolute`,
      );
      expect(biasSync).toBeLessThanOrEqual(1e-5);
      expect(worstSync).toBeLessThanOrEqual(1);
      expect(worstShard).toBeGreaterThan(1);
    } finally {
      tf.dispose(masks);
      seedTrainer.dispose();
    }
  }, 240_000);

  it('differs from one process with per-shard statistics (--batchnorm shard) on 8+8', async () => {
    const shards = split([8, 8]);
    const results: ShardResult[] = [];
    for (const s of shards) results.push(await trainer.step(s));
    const err = errors(averaged(results), reference);
    console.log(`shard 8+8: max relative error ${err.relative.toExponential(2)}`);
    expect(err.relative).toBeGreaterThan(1e-2);
  });

  it("awaits each of the step's 14 barriers in order and, alone, gives the unsynced step", async () => {
    const seen: (BnBarrierAt & { kind: string; channels: number })[] = [];
    const r = await trainer.step(whole, undefined, async (at, part) => {
      seen.push({ ...at, kind: part.kind, channels: part.kind === 'moments' ? part.mean.length : part.sumDy.length });
      await new Promise((done) => setImmediate(done));
      return combineBnParts([part]);
    });
    // Forward: G's 2, D's 2 on real, D's 2 on generated; backward: D real, D generated (lossD),
    // D generated (lossG), G.
    expect(seen.map((b) => b.index)).toEqual([...Array(14).keys()]);
    expect(seen.map((b) => b.key).join(' ')).toBe(
      'G/bn1 G/bn2 D/bn2 D/bn3 D/bn2 D/bn3 D/bn3 D/bn2 D/bn3 D/bn2 D/bn3 D/bn2 G/bn2 G/bn1',
    );
    expect(seen.map(({ index, ...b }) => b)).toEqual(syncBarrierPlan(bnLayers(tinyModel)));
    const err = errors(averaged([r]), reference);
    expect(err.relative).toBeLessThanOrEqual(1e-5);
  });

  it('has simulated compute join the same barriers, in the same order', async () => {
    const seen: string[] = [];
    await simulatedCompute(tinyModel, 1).step(whole, undefined, async (at, part) => {
      seen.push(`${at.index} ${at.key} ${part.kind}`);
      return combineBnParts([part]);
    });
    expect(seen).toEqual(syncBarrierPlan(bnLayers(tinyModel)).map((b, i) => `${i} ${b.key} ${b.kind}`));
  });

  it('leaks no tensor over synced steps, in lockstep or awaiting a barrier', async () => {
    const alone = async (_at: BnBarrierAt, part: Parameters<typeof combineBnParts>[0][number]) =>
      combineBnParts([part]);
    await trainer.step(whole, undefined, alone);
    await trainer.stepShardsSynced(split([8, 8]));
    const before = tf.memory().numTensors;
    for (let i = 0; i < 2; i++) {
      await trainer.stepShardsSynced(split([6, 5, 5]));
      await trainer.step(whole, undefined, alone);
    }
    expect(tf.memory().numTensors).toBe(before);
  });

  it('leaks no tensor when the coordinator gives a step up at a barrier (bnAbort), forward or backward', async () => {
    const before = tf.memory().numTensors;
    for (const at of [1, 9]) {
      const abortAt = async (b: BnBarrierAt, part: Parameters<typeof combineBnParts>[0][number]) => {
        if (b.index === at) throw new ShardAborted(`given up at barrier ${at}`);
        return combineBnParts([part]);
      };
      await expect(trainer.step(whole, undefined, abortAt)).rejects.toThrow(ShardAborted);
    }
    expect(tf.memory().numTensors).toBe(before);
  });

  describe('over 10 iterations with Adam and the running statistics, as the coordinator applies them', () => {
    const ITERATIONS = 10;
    const hyper = { lr: defaults.lr, beta1: defaults.beta1, beta2: defaults.beta2, epsilon: ADAM_EPSILON };
    // Biases that feed a BatchNorm, and the running means of the BatchNorm after them: their
    // gradient is rounding noise that Adam turns into steps of about lr, so they may part by up to
    // 2 lr an iteration. Every other value within 1e-4 of the network's largest weight.
    const LOOSE = 2 * hyper.lr * ITERATIONS;
    const loose = (name: string) => beforeBn.has(name) || name.endsWith('/mean');

    async function train(run: (batch: Shard) => Promise<ShardResult[]>): Promise<NamedArrays> {
      const params: NamedArrays = {};
      const m: NamedArrays = {};
      const v: NamedArrays = {};
      for (const [k, a] of Object.entries(weights)) params[k] = a.slice();
      for (let t = 1; t <= ITERATIONS; t++) {
        trainer.setWeights(params);
        const results = await run(randomShard(tinyModel, BATCH, 100 + t, t));
        for (const [name, g] of Object.entries(averaged(results))) {
          m[name] ??= new Float32Array(g.length);
          v[name] ??= new Float32Array(g.length);
          adamStep(params[name], Float32Array.from(g), m[name], v[name], t, hyper);
        }
        updateRunningStats(params, poolBatchStats(results.map((r) => r.bn)));
      }
      trainer.setWeights(weights);
      return params;
    }

    /** Per network: max |a - b| / max |b| over the strict values; max |a - b| over the loose ones. */
    function weightErrors(a: NamedArrays, b: NamedArrays) {
      const out = { strict: 0, loose: 0 };
      for (const net of ['G', 'D']) {
        let largest = 0;
        let strict = 0;
        for (const [name, ref] of Object.entries(b)) {
          if (!name.startsWith(`${net}/`)) continue;
          for (let i = 0; i < ref.length; i++) {
            const d = Math.abs(a[name][i] - ref[i]);
            largest = Math.max(largest, Math.abs(ref[i]));
            if (loose(name)) out.loose = Math.max(out.loose, d);
            else strict = Math.max(strict, d);
          }
        }
        out.strict = Math.max(out.strict, strict / largest);
      }
      return out;
    }

    let single: NamedArrays;
    beforeAll(async () => {
      single = await train(async (batch) => [await trainer.step(batch)]);
    });

    for (const sizes of [
      [8, 8],
      [6, 5, 5],
    ]) {
      it(`ends on one process's weights with synced shards ${sizes.join('+')}`, async () => {
        const err = weightErrors(await train((batch) => trainer.stepShardsSynced(split(sizes, batch))), single);
        console.log(
          `sync ${sizes.join('+')}, ${ITERATIONS} iterations: weights ${err.strict.toExponential(2)} of the largest, biases before BN and BN running means ${err.loose.toExponential(2)} (bound ${LOOSE})`,
        );
        expect(err.strict).toBeLessThanOrEqual(1e-4);
        expect(err.loose).toBeLessThanOrEqual(LOOSE);
      });
    }

    it('parts from them with per-shard statistics (--batchnorm shard) on 8+8', async () => {
      const err = weightErrors(
        await train(async (batch) => {
          const out: ShardResult[] = [];
          for (const s of split([8, 8], batch)) out.push(await trainer.step(s));
          return out;
        }),
        single,
      );
      console.log(`shard 8+8, ${ITERATIONS} iterations: weights ${err.strict.toExponential(2)} of the largest`);
      expect(err.strict).toBeGreaterThan(1e-3);
    });
  });
});
