// The reference for worker/backprop.ts: modelLoss's gradients by two tfjs tapes, as MATLAB's two
// dlgradient calls (lossG back through D into G; lossD into D with the generated images fixed).
// This is how Trainer.step worked before it ran D's generated-image pass only once.

import type { Tensor, Tensor1D } from '@tensorflow/tfjs';
import type { ModelConfig } from '../../protocol/config.ts';
import { layersOf, paramSpecs, type NamedArrays, type ParamSpec } from '../../protocol/model/architecture.ts';
import type { TF } from '../../worker/backend.ts';
import { lossD, lossG } from '../../worker/loss.ts';
import { forward, imagesToInput, type ParamTensors } from '../../worker/model.ts';
import type { Shard } from '../../worker/trainer.ts';

export async function tapeGradients(
  tf: TF,
  cfg: ModelConfig,
  weights: NamedArrays,
  shard: Shard,
  masks: { real: Tensor; gen: Tensor },
): Promise<NamedArrays> {
  // Kept out of the tidy and read after it: a GPU backend has no synchronous read under Node.
  const kept = new Map<string, Tensor>();
  tf.tidy(() => {
    const specs = [...paramSpecs('G', cfg), ...paramSpecs('D', cfg)];
    const params: ParamTensors = {};
    for (const s of specs) params[s.name] = tf.tensor(weights[s.name], s.shape, 'float32');
    const learn = (net: 'G' | 'D') => specs.filter((s) => s.net === net && s.role === 'learnable');
    const withParams = (names: ParamSpec[], values: Tensor[]): ParamTensors => {
      const p = { ...params };
      for (const [i, spec] of names.entries()) p[spec.name] = values[i];
      return p;
    };
    const [gLayers, dLayers] = [layersOf('G', cfg), layersOf('D', cfg)];
    const z = tf.tensor2d(shard.z, [shard.n, cfg.latent]);
    const real = imagesToInput(tf, shard.images, shard.n, cfg.imageSize);
    const flip = tf.tensor1d(shard.flip, 'float32');
    let generated!: Tensor;
    const g = tf.grads((...gw: Tensor[]) => {
      const p = withParams(learn('G'), gw);
      generated = tf.keep(forward(tf, 'G', gLayers, p, z, { training: true }));
      return lossG(tf, forward(tf, 'D', dLayers, p, generated, { training: true, dropoutMask: masks.gen }) as Tensor1D);
    })(learn('G').map((s) => params[s.name]));
    const d = tf.grads((...dw: Tensor[]) => {
      const p = withParams(learn('D'), dw);
      const lr = forward(tf, 'D', dLayers, p, real, { training: true, dropoutMask: masks.real }) as Tensor1D;
      const lg = forward(tf, 'D', dLayers, p, generated, { training: true, dropoutMask: masks.gen }) as Tensor1D;
      return lossD(tf, lr, lg, flip);
    })(learn('D').map((s) => params[s.name]));
    for (const [i, s] of learn('G').entries()) kept.set(s.name, tf.keep(g[i]));
    for (const [i, s] of learn('D').entries()) kept.set(s.name, tf.keep(d[i]));
    generated.dispose();
  });
  const out: NamedArrays = {};
  try {
    for (const [name, t] of kept) out[name] = (await t.data()) as Float32Array;
  } finally {
    tf.dispose([...kept.values()]);
  }
  return out;
}
