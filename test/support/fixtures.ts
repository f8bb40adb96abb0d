// Small deterministic inputs shared by the model tests.

import type { ModelConfig } from '../../protocol/config.ts';
import { Rng } from '../../protocol/rng.ts';
import type { Shard } from '../../worker/trainer.ts';

/** A shard of `n` rows with random images, latents and flip bits, reproducible from `seed`. */
export function randomShard(cfg: ModelConfig, n: number, seed = 7, iteration = 1, rowStart = 0): Shard {
  const rng = new Rng(seed, 99);
  const s = cfg.imageSize;
  const images = new Uint8Array(n * s * s * 3);
  for (let i = 0; i < images.length; i++) images[i] = rng.nextU32() & 255;
  return {
    iteration,
    rowStart,
    n,
    images,
    z: rng.fillNormal(new Float32Array(n * cfg.latent)),
    flip: rng.bernoulli(n, 0.35),
  };
}

export const tinyModel: ModelConfig = { imageSize: 32, filters: 16, latent: 100 };
export const seedModel: ModelConfig = { imageSize: 64, filters: 64, latent: 100 };
