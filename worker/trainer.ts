// What a worker computes: modelLoss on one shard (gradients of lossG w.r.t. G and of lossD
// w.r.t. D, BatchNorm batch statistics, scores and losses) and G in inference mode for samples.

import type { Tensor, Tensor1D, Tensor2D } from '@tensorflow/tfjs';
import type { BackendWasm } from '@tensorflow/tfjs-backend-wasm';
import type { ModelConfig } from '../protocol/config.ts';
import { GanDistError } from '../protocol/errors.ts';
import { dropoutMask } from '../protocol/rng.ts';
import type { TF } from './backend.ts';
import {
  activationShapes,
  DROPOUT_RATE,
  layersOf,
  paramSpecs,
  sizeOf,
  type Layer,
  type NamedArrays,
  type ParamSpec,
} from '../protocol/model/architecture.ts';
import { lossD, lossG, scores } from './loss.ts';
import { heapFloats } from './kernels/gemm.ts';
import {
  drain,
  forward,
  forwardSteps,
  imagesToInput,
  type BatchStats,
  type BnBarrierAsk,
  type BnSteps,
  type LayerTrace,
  type ParamTensors,
} from './model.ts';
import { backwardSteps } from './backprop.ts';
import { combineBnParts } from '../protocol/wire/bn-sync.ts';
import { barrierPartOf, readBarrierPart, type BnBarrier } from './bn-barrier.ts';

export type { BnBarrier, BnBarrierAt } from './bn-barrier.ts';
import { bnSumsFromMoments, type BnSumsByLayer } from '../protocol/wire/bn-sums.ts';

/** One shard of a mini-batch: `n` contiguous rows starting at global row `rowStart`. */
export interface Shard {
  iteration: number;
  rowStart: number;
  n: number;
  /** uint8 HWC images, n x size x size x 3. */
  images: Uint8Array;
  /** Latent rows, n x latent. */
  z: Float32Array;
  /** Real-label flip bits, n. */
  flip: Uint8Array;
}

export interface ShardResult {
  n: number;
  /** Gradients of lossG w.r.t. G's learnables and of lossD w.r.t. D's, by parameter name. */
  grads: NamedArrays;
  /** By layer key ("G/bn1", "D/bn2"): G's from its forward pass, D's from the real-image pass. */
  bn: BnSumsByLayer;
  lossG: number;
  lossD: number;
  scoreG: number;
  scoreD: number;
  computeMs: number;
}

/** What one step carries out of its tensor work: the results are read after it. */
interface StepContext {
  stats: Map<string, BatchStats>;
  grads: NamedArrays;
  later: Map<string, Tensor>;
  out?: Tensor;
  t0: number;
}

const newStepContext = (): StepContext => ({
  stats: new Map(),
  grads: {},
  later: new Map(),
  t0: performance.now(),
});

/** Dropout passes: D sees real images in pass 0 and generated ones in pass 1. */
export const PASS_REAL = 0;
export const PASS_GEN = 1;

export interface TrainerOptions {
  /**
   * Read the gradients into arrays this trainer owns and reuses, straight from the wasm heap:
   * a step's result is then valid until the next step. A worker sends each result before it
   * steps again, and saves a fresh 37.8 MB per step (the seed's model) and its page faults.
   */
  reuseGradientBuffers?: boolean;
  /**
   * A GPU device's bounds: a shard whose largest activation would not fit one storage binding is
   * refused before it runs, naming the limit; `health` reports a device lost or an error it raised.
   */
  device?: { maxStorageBufferBindingSize: number; health(): string | undefined };
}

export class Trainer {
  readonly gLayers: Layer[];
  readonly dLayers: Layer[];
  readonly gSpecs: ParamSpec[];
  readonly dSpecs: ParamSpec[];
  private readonly gLearn: ParamSpec[];
  private readonly dLearn: ParamSpec[];
  private params: ParamTensors = {};
  private readonly device?: TrainerOptions['device'];
  /** The reused gradient arrays by parameter name (reuseGradientBuffers). */
  private readonly gradBuffers?: Map<string, Float32Array>;

  constructor(
    private readonly tf: TF,
    readonly cfg: ModelConfig,
    /** The run seed, which keys dropout masks. */
    readonly seed: number,
    opts: TrainerOptions = {},
  ) {
    if (opts.reuseGradientBuffers) this.gradBuffers = new Map();
    this.device = opts.device;
    this.gLayers = layersOf('G', cfg);
    this.dLayers = layersOf('D', cfg);
    this.gSpecs = paramSpecs('G', cfg);
    this.dSpecs = paramSpecs('D', cfg);
    this.gLearn = this.gSpecs.filter((s) => s.role === 'learnable');
    this.dLearn = this.dSpecs.filter((s) => s.role === 'learnable');
  }

  /** Replaces the weights (learnables and BN running statistics) with the named arrays given. */
  setWeights(named: NamedArrays): void {
    const next: ParamTensors = {};
    for (const s of [...this.gSpecs, ...this.dSpecs]) {
      const a = named[s.name];
      if (!a) throw new Error(`setWeights: missing parameter ${s.name}`);
      next[s.name] = this.tf.tensor(a, s.shape, 'float32');
    }
    this.disposeWeights();
    this.params = next;
  }

  private disposeWeights(): void {
    for (const t of Object.values(this.params)) t.dispose();
    this.params = {};
  }

  dispose(): void {
    this.disposeWeights();
  }

  /**
   * A gradient's values, inside the step's tidy: on wasm (when asked and the heap is in reach)
   * copied at once into its reused array; on every other backend the tensor is kept and read
   * asynchronously after the tidy (a GPU backend has no synchronous read under Node).
   */
  private readGradient(name: string, t: Tensor, into: NamedArrays, later: Map<string, Tensor>): void {
    const view =
      this.gradBuffers && this.tf.getBackend() === 'wasm' ? heapFloats(this.tf.backend() as BackendWasm, t) : undefined;
    if (view === undefined) {
      later.set(name, this.tf.keep(t));
      return;
    }
    let buf = this.gradBuffers!.get(name);
    if (buf?.length !== view.length) {
      buf = new Float32Array(view.length);
      this.gradBuffers!.set(name, buf);
    }
    buf.set(view);
    into[name] = buf;
  }

  /** The dropout multipliers of D's input for `shard` in `pass`, keyed by global row. */
  dropout(shard: Pick<Shard, 'iteration' | 'rowStart' | 'n'>, pass: number): Tensor {
    const s = this.cfg.imageSize;
    const mask = dropoutMask(this.seed, shard.iteration, pass, shard.rowStart, shard.n, s * s * 3, DROPOUT_RATE);
    return this.tf.tensor4d(mask, [shard.n, s, s, 3]);
  }

  /**
   * modelLoss on one shard, as MATLAB's two dlgradient calls: lossG back through D into G's
   * learnables, and lossD into D's learnables with the generated images held fixed. One forward
   * pass of G and of D on each image set; backprop.ts then runs D backwards twice over the same
   * generated-image pass (lossG's input gradient, lossD's parameter gradient) instead of
   * recomputing it, as two tfjs tapes would. With a `barrier` (`--batchnorm sync`) every
   * BatchNorm layer waits on it for the global batch's statistics and gradient sums.
   */
  async step(shard: Shard, masks?: { real: Tensor; gen: Tensor }, barrier?: BnBarrier): Promise<ShardResult> {
    this.checkFits(shard.n);
    const result = await this.runStep(shard, masks, barrier);
    this.checkDevice();
    return result;
  }

  /** The largest activation of either network for `rows` images must fit one storage binding. */
  private checkFits(rows: number): void {
    if (!this.device) return;
    let largest = { bytes: 0, layer: '' };
    for (const [net, layers] of [
      ['G', this.gLayers],
      ['D', this.dLayers],
    ] as const) {
      activationShapes(layers).forEach((shape, i) => {
        const bytes = 4 * rows * sizeOf(shape);
        if (bytes > largest.bytes) largest = { bytes, layer: `${net}/${layers[i].name}` };
      });
    }
    const limit = this.device.maxStorageBufferBindingSize;
    if (largest.bytes <= limit) return;
    const mib = (n: number) => (n >= 2 ** 20 ? `${(n / 2 ** 20).toFixed(0)} MiB` : `${(n / 1024).toFixed(0)} KiB`);
    throw new GanDistError(
      'GAN_DIST_E_BACKEND',
      `a shard of ${rows} rows needs a ${mib(largest.bytes)} buffer (${largest.layer}), above this GPU's maxStorageBufferBindingSize of ${mib(limit)}`,
      `shard the batch over more workers, or lower --batch-size to at most ${Math.floor((rows * limit) / largest.bytes)} rows a worker`,
    );
  }

  private checkDevice(): void {
    const bad = this.device?.health();
    if (bad)
      throw new GanDistError(
        'GAN_DIST_E_BACKEND',
        `the GPU device failed: ${bad}`,
        'restart the worker; `gan-dist doctor` checks the driver',
      );
  }

  private async runStep(
    shard: Shard,
    masks?: { real: Tensor; gen: Tensor },
    barrier?: BnBarrier,
  ): Promise<ShardResult> {
    const tf = this.tf;
    const ctx = newStepContext();
    if (!barrier) {
      // Results leave the tidy through ctx, not its return value: tidy walks whatever it returns
      // looking for tensors, element by element through a 9.45 M-float gradient.
      tf.tidy(() => {
        ctx.out = drain(this.stepBody(shard, masks, false, ctx));
      });
      return this.collect(shard, ctx);
    }
    // Synced: the step awaits each barrier, so a scope stands in for the tidy. A worker runs one
    // step at a time, so nothing else allocates tensors inside it.
    const engine = tf.engine();
    engine.startScope();
    try {
      const steps = this.stepBody(shard, masks, true, ctx);
      let r = steps.next();
      for (let index = 0; !r.done; index++) {
        const part = await readBarrierPart(r.value);
        r = steps.next(await barrier({ index, key: r.value.key }, part));
      }
      ctx.out = r.value;
    } catch (err) {
      tf.dispose([...ctx.later.values(), ...[...ctx.stats.values()].flatMap((st) => [st.mean, st.variance])]);
      throw err;
    } finally {
      engine.endScope(ctx.out);
    }
    return this.collect(shard, ctx);
  }

  /**
   * `--batchnorm sync` over several shards in this one process, in lockstep, each barrier combined
   * in shard order as the coordinator does: the oracle of the synced step. Reads synchronously
   * (not on WebGPU); results own their arrays.
   */
  async stepShardsSynced(shards: Shard[]): Promise<ShardResult[]> {
    if (this.gradBuffers) throw new Error('stepShardsSynced: not with reuseGradientBuffers');
    const ctxs = shards.map(() => newStepContext());
    this.tf.tidy(() => {
      const runs = shards.map((shard, i) => this.stepBody(shard, undefined, true, ctxs[i]));
      let rs = runs.map((r) => r.next());
      while (rs.some((r) => !r.done)) {
        if (!rs.every((r) => !r.done)) throw new Error('stepShardsSynced: shards reached different barriers');
        const parts = rs.map((r) => barrierPartOf(r.value as BnBarrierAsk, (t) => t.dataSync() as Float32Array));
        const global = combineBnParts(parts);
        rs = runs.map((r) => r.next(global));
      }
      rs.forEach((r, i) => {
        ctxs[i].out = r.value as Tensor;
      });
    });
    const results: ShardResult[] = [];
    for (let i = 0; i < shards.length; i++) results.push(await this.collect(shards[i], ctxs[i]));
    return results;
  }

  /** The step's tensor work, stopping at each BatchNorm barrier when `sync`. */
  private *stepBody(
    shard: Shard,
    masks: { real: Tensor; gen: Tensor } | undefined,
    sync: boolean,
    ctx: StepContext,
  ): BnSteps<Tensor> {
    const tf = this.tf;
    const { params } = this;
    const { stats, grads, later } = ctx;
    const s = this.cfg.imageSize;
    const z = tf.tensor2d(shard.z, [shard.n, this.cfg.latent]);
    const real = imagesToInput(tf, shard.images, shard.n, s);
    const flip = tf.tensor1d(shard.flip, 'float32');
    const maskReal = masks?.real ?? this.dropout(shard, PASS_REAL);
    const maskGen = masks?.gen ?? this.dropout(shard, PASS_GEN);

    // Training mode throughout: batch statistics (G's and D's real pass are recorded), dropout.
    const traceG: LayerTrace[] = [];
    const traceReal: LayerTrace[] = [];
    const traceGen: LayerTrace[] = [];
    const syncBn = sync;
    const generated = yield* forwardSteps(tf, 'G', this.gLayers, params, z, {
      training: true,
      stats,
      trace: traceG,
      syncBn,
    });
    const logitsReal = (yield* forwardSteps(tf, 'D', this.dLayers, params, real, {
      training: true,
      dropoutMask: maskReal,
      stats,
      trace: traceReal,
      syncBn,
    })) as Tensor1D;
    const logitsGen = (yield* forwardSteps(tf, 'D', this.dLayers, params, generated, {
      training: true,
      dropoutMask: maskGen,
      trace: traceGen,
      syncBn,
    })) as Tensor1D;

    // The losses' gradients w.r.t. the logits: small tapes over loss.ts, the one statement of the loss.
    const g = tf.valueAndGrads((lg: Tensor) => lossG(tf, lg as Tensor1D))([logitsGen]);
    const d = tf.valueAndGrads((lr: Tensor, lg: Tensor) => lossD(tf, lr as Tensor1D, lg as Tensor1D, flip))([
      logitsReal,
      logitsGen,
    ]);

    // lossD into D: both image sets' passes, parameter gradients only, summed.
    const dReal = (yield* backwardSteps(tf, 'D', params, traceReal, d.grads[0], { params: true, input: false, syncBn }))
      .grads;
    const dGen = (yield* backwardSteps(tf, 'D', params, traceGen, d.grads[1], { params: true, input: false, syncBn }))
      .grads;
    for (const spec of this.dLearn)
      this.readGradient(spec.name, tf.add(dReal.get(spec.name)!, dGen.get(spec.name)!), grads, later);
    // lossG through D (its input gradient only) and on into G's learnables.
    const dImages = (yield* backwardSteps(tf, 'D', params, traceGen, g.grads[0], {
      params: false,
      input: true,
      syncBn,
    })).dx!;
    const gGrads = (yield* backwardSteps(tf, 'G', params, traceG, dImages, { params: true, input: false, syncBn }))
      .grads;
    for (const spec of this.gLearn) this.readGradient(spec.name, gGrads.get(spec.name)!, grads, later);

    const sc = scores(tf, logitsReal, logitsGen);
    // The four scalars in one tensor: one read.
    return tf.keep(tf.stack([g.value, d.value, sc.scoreG, sc.scoreD]));
  }

  /** Reads a step's results after its tidy, all in flight at once; kept tensors are disposed whatever happens. */
  private async collect(shard: Shard, ctx: StepContext): Promise<ShardResult> {
    const { grads, later, stats } = ctx;
    const out = ctx.out!;
    const statList = [...stats];
    try {
      const [scalars, gradValues, statValues] = await Promise.all([
        out.data() as Promise<Float32Array>,
        Promise.all([...later.values()].map((t) => t.data() as Promise<Float32Array>)),
        Promise.all(statList.flatMap(([, st]) => [st.mean.data(), st.variance.data()]) as Promise<Float32Array>[]),
      ]);
      [...later.keys()].forEach((name, i) => {
        grads[name] = gradValues[i];
      });
      const bn: BnSumsByLayer = {};
      statList.forEach(([key, st], i) => {
        bn[key] = bnSumsFromMoments(statValues[2 * i], statValues[2 * i + 1], st.count);
      });
      const [lossGValue, lossDValue, scoreG, scoreD] = scalars;
      return {
        n: shard.n,
        lossG: lossGValue,
        lossD: lossDValue,
        scoreG,
        scoreD,
        grads,
        bn,
        computeMs: performance.now() - ctx.t0,
      };
    } finally {
      this.tf.dispose([out, ...later.values(), ...statList.flatMap(([, st]) => [st.mean, st.variance])]);
    }
  }

  /** G(z) in inference mode (BatchNorm with running statistics, as MATLAB's predict): k x s x s x 3 in [-1, 1]. */
  async generate(z: Float32Array, count: number): Promise<Float32Array> {
    const tf = this.tf;
    const images = tf.tidy(() => {
      const zt = tf.tensor2d(z, [count, this.cfg.latent]) as Tensor2D;
      return forward(tf, 'G', this.gLayers, this.params, zt, { training: false });
    });
    try {
      return (await images.data()) as Float32Array;
    } finally {
      images.dispose();
    }
  }

  /** D's logits in training mode for given weights: used by the gradient check. */
  async lossesFor(shard: Shard, masks: { real: Tensor; gen: Tensor }): Promise<{ lossG: number; lossD: number }> {
    const tf = this.tf;
    const losses = tf.tidy(() => {
      const z = tf.tensor2d(shard.z, [shard.n, this.cfg.latent]);
      const real = imagesToInput(tf, shard.images, shard.n, this.cfg.imageSize);
      const flip = tf.tensor1d(shard.flip, 'float32');
      const generated = forward(tf, 'G', this.gLayers, this.params, z, { training: true });
      const lg = forward(tf, 'D', this.dLayers, this.params, generated, { training: true, dropoutMask: masks.gen });
      const lr = forward(tf, 'D', this.dLayers, this.params, real, { training: true, dropoutMask: masks.real });
      return tf.stack([lossG(tf, lg as Tensor1D), lossD(tf, lr as Tensor1D, lg as Tensor1D, flip)]);
    });
    try {
      const [g, d] = await losses.data();
      return { lossG: g, lossD: d };
    } finally {
      losses.dispose();
    }
  }
}
