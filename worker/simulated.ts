// What a worker session computes with: the Trainer on a real backend, or (benchmarks, tests) a
// simulated step that answers after a fixed delay with zero gradients of the right names and sizes.

import type { ModelConfig } from '../protocol/config.ts';
import { parameterTable, sizeOf, type NamedArrays } from '../protocol/model/architecture.ts';
import { bnLayers, type BnSumsByLayer } from '../protocol/wire/bn-sums.ts';
import { syncBarrierPlan } from '../protocol/wire/bn-sync.ts';
import type { BnBarrier, Shard, ShardResult } from './trainer.ts';

/** The part of Trainer a worker session uses; a simulated worker provides the same. */
export interface Compute {
  setWeights(named: Record<string, Float32Array>): void;
  /** With a `barrier` (`--batchnorm sync`), each BatchNorm layer waits on it (bn-barrier.ts). */
  step(shard: Shard, masks?: undefined, barrier?: BnBarrier): ShardResult | Promise<ShardResult>;
  generate(z: Float32Array, count: number): Float32Array | Promise<Float32Array>;
  dispose(): void;
  readonly cfg: ModelConfig;
}

/** Zero gradients after a fixed delay: the network and the coordinator stay real, compute does not. */
export function simulatedCompute(cfg: ModelConfig, delayMs: number, nonFinite = false): Compute {
  const learnables = parameterTable(cfg).filter((s) => s.role === 'learnable');
  const layers = bnLayers(cfg);
  const plan = syncBarrierPlan(layers);
  const grads: NamedArrays = {};
  for (const s of learnables) grads[s.name] = new Float32Array(sizeOf(s.shape));
  if (nonFinite) grads[learnables[0].name][0] = NaN;
  return {
    cfg,
    setWeights: () => {},
    step: async (shard, _masks, barrier) => {
      const t0 = performance.now();
      const sleep = (ms: number) => (ms > 0 ? new Promise((r) => setTimeout(r, ms)) : Promise.resolve());
      if (barrier) {
        // The delay spread over the step's barriers, each joined with a unit normal's part. Each
        // stretch sleeps until its share of the delay is past (a timer lasts at least 1 ms, so
        // fixed sleeps of delay / 22 would stretch a 10 ms step to over 22 ms).
        const until = (k: number) => sleep(t0 + (delayMs * k) / (plan.length + 1) - performance.now());
        for (const [index, b] of plan.entries()) {
          await until(index + 1);
          const count = (layers.find((l) => l.key === b.key)?.perImage ?? 1) * shard.n;
          const zeros = new Float32Array(b.channels);
          await barrier(
            { index, key: b.key },
            b.kind === 'moments'
              ? { kind: 'moments', count, mean: zeros, m2: new Float32Array(b.channels).fill(count) }
              : { kind: 'gradSums', count, sumDy: zeros, sumDyXhat: zeros },
          );
        }
        await until(plan.length + 1);
      } else await sleep(delayMs);
      const sums: BnSumsByLayer = {};
      for (const l of layers) {
        const count = l.perImage * shard.n;
        // The statistics of a unit normal: mean 0, variance 1.
        sums[l.key] = { sum: new Float32Array(l.channels), sumSq: new Float32Array(l.channels).fill(count), count };
      }
      return {
        n: shard.n,
        grads,
        bn: sums,
        lossG: Math.LN2,
        lossD: 2 * Math.LN2,
        scoreG: 0.5,
        scoreD: 0.5,
        computeMs: performance.now() - t0,
      };
    },
    generate: (_z, count) => new Float32Array(count * cfg.imageSize * cfg.imageSize * 3),
    dispose: () => {},
  };
}
