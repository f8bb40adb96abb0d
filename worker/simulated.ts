// What a worker session computes with: the Trainer on a real backend, or (benchmarks, tests) a
// simulated step that answers after a fixed delay with zero gradients of the right names and sizes.

import type { ModelConfig } from '../protocol/config.ts';
import { parameterTable, sizeOf, type NamedArrays } from '../protocol/model/architecture.ts';
import { bnLayers, type BnSumsByLayer } from '../protocol/wire/bn-sums.ts';
import type { Shard, ShardResult } from './trainer.ts';

/** The part of Trainer a worker session uses; a simulated worker provides the same. */
export interface Compute {
  setWeights(named: Record<string, Float32Array>): void;
  step(shard: Shard): ShardResult | Promise<ShardResult>;
  generate(z: Float32Array, count: number): Float32Array | Promise<Float32Array>;
  dispose(): void;
  readonly cfg: ModelConfig;
}

/** Zero gradients after a fixed delay: the network and the coordinator stay real, compute does not. */
export function simulatedCompute(cfg: ModelConfig, delayMs: number, nonFinite = false): Compute {
  const learnables = parameterTable(cfg).filter((s) => s.role === 'learnable');
  const layers = bnLayers(cfg);
  const grads: NamedArrays = {};
  for (const s of learnables) grads[s.name] = new Float32Array(sizeOf(s.shape));
  if (nonFinite) grads[learnables[0].name][0] = NaN;
  return {
    cfg,
    setWeights: () => {},
    step: async (shard) => {
      const t0 = performance.now();
      await new Promise((r) => setTimeout(r, delayMs));
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
