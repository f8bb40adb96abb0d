// What leaves a run as a product: the trained generator as a standard tfjs LayersModel
// (model.json + group1-shard1of1.bin, loadable with tf.loadLayersModel in Node or a browser),
// and sample grids of G(z) from a checkpoint (`gan-dist generate`).

import { randomInt } from 'node:crypto';
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { io, LayersModel, Sequential } from '@tensorflow/tfjs';
import { modelConfigOf, type ModelConfig } from '../protocol/config.ts';
import {
  assertSameTable,
  loadCheckpoint,
  loadLatestCheckpoint,
  type LoadedCheckpoint,
} from '../protocol/run/checkpoint.ts';
import { GanDistError } from '../protocol/errors.ts';
import { Rng } from '../protocol/rng.ts';
import { resolveRunDir } from '../protocol/run/run-dir.ts';
import { writeSampleGrid } from '../protocol/run/samples.ts';
import {
  BN_DECAY,
  BN_EPSILON,
  generatorLayers,
  parameterTable,
  type NamedArrays,
} from '../protocol/model/architecture.ts';
import type { BackendInfo, BackendName } from '../protocol/backends.ts';
import { loadBackend, type TF } from './backend.ts';
import { Trainer } from './trainer.ts';

export const MODEL_JSON = 'model.json';
export const WEIGHTS_BIN = 'group1-shard1of1.bin';

/**
 * G in inference mode as a tf.sequential of standard layers, one per entry of generatorLayers
 * (the project layer is a dense plus a reshape). Weights are left at tfjs's initialisers.
 */
export function buildGeneratorModel(tf: TF, cfg: ModelConfig): Sequential {
  const model = tf.sequential({ name: 'generator' });
  for (const l of generatorLayers(cfg)) {
    switch (l.kind) {
      case 'input':
        break;
      case 'project': // fully connected with bias to 4*4*8nf, reshaped row-major to 4 x 4 x 8nf
        model.add(
          tf.layers.dense({
            name: l.name,
            units: l.shape[0] * l.shape[1] * l.shape[2],
            useBias: true,
            inputShape: [cfg.latent],
          }),
        );
        model.add(tf.layers.reshape({ name: `${l.name}_reshape`, targetShape: l.shape }));
        break;
      case 'tconv':
        // Both layers call tf.conv2dTranspose with the same output size ('valid': (s-1)*stride+k,
        // 'same': s*stride) and the same [k, k, out, in] filter as worker/model.ts.
        model.add(
          tf.layers.conv2dTranspose({
            name: l.name,
            filters: l.outC,
            kernelSize: l.k,
            strides: l.stride,
            padding: l.pad,
            useBias: true,
          }),
        );
        break;
      case 'bn':
        // Inference uses the moving statistics; momentum only matters to whoever trains it further.
        model.add(
          tf.layers.batchNormalization({ name: l.name, axis: -1, epsilon: BN_EPSILON, momentum: 1 - BN_DECAY }),
        );
        break;
      case 'relu':
      case 'tanh':
        model.add(tf.layers.activation({ name: l.name, activation: l.kind }));
        break;
      default:
        throw new Error(`buildGeneratorModel: G has no ${l.kind} layer`);
    }
  }
  return model;
}

/** Copies G's named parameters (learnables and BN running statistics) into the model's layers. */
export function setGeneratorWeights(tf: TF, model: LayersModel, cfg: ModelConfig, named: NamedArrays): void {
  const get = (name: string) => {
    const a = named[`G/${name}`];
    if (!a) throw new Error(`setGeneratorWeights: missing parameter G/${name}`);
    return a;
  };
  tf.tidy(() => {
    for (const l of generatorLayers(cfg)) {
      const layer = () => model.getLayer(l.name);
      const t = (name: string, shape: number[]) => tf.tensor(get(name), shape, 'float32');
      switch (l.kind) {
        case 'project': {
          const out = l.shape[0] * l.shape[1] * l.shape[2];
          layer().setWeights([t(`${l.name}/w`, [l.inputs, out]), t(`${l.name}/b`, [out])]);
          break;
        }
        case 'tconv':
          layer().setWeights([t(`${l.name}/w`, [l.k, l.k, l.outC, l.inC]), t(`${l.name}/b`, [l.outC])]);
          break;
        case 'bn': {
          // tfjs-layers' order: gamma (scale), beta (offset), moving mean, moving variance.
          const c = [l.channels];
          layer().setWeights([
            t(`${l.name}/scale`, c),
            t(`${l.name}/offset`, c),
            t(`${l.name}/mean`, c),
            t(`${l.name}/var`, c),
          ]);
          break;
        }
        default:
          break;
      }
    }
  });
}

export interface ExportResult {
  dir: string;
  files: string[];
  bytes: number;
}

/**
 * Writes G as a LayersModel into `dir`: model.json (topology, weights manifest, and under
 * userDefinedMetadata.ganDist the latent size and output range) and one weights shard.
 * '@tensorflow/tfjs' has no file:// handler in Node, so the artifacts are written here.
 */
export async function exportGenerator(
  tf: TF,
  cfg: ModelConfig,
  named: NamedArrays,
  dir: string,
  metadata: Record<string, unknown> = {},
): Promise<ExportResult> {
  const model = buildGeneratorModel(tf, cfg);
  try {
    setGeneratorWeights(tf, model, cfg, named);
    model.setUserDefinedMetadata({
      ganDist: {
        ...cfg,
        input: `z: [n, ${cfg.latent}], N(0, 1)`,
        output: `[n, ${cfg.imageSize}, ${cfg.imageSize}, 3] RGB in [-1, 1]`,
        ...metadata,
      },
    });
    let result!: ExportResult;
    await model.save(
      tf.io.withSaveHandler(async (artifacts) => {
        const weights = new Uint8Array(tf.io.CompositeArrayBuffer.join(artifacts.weightData ?? []));
        const modelJson: io.ModelJSON = {
          modelTopology: artifacts.modelTopology as object,
          format: artifacts.format,
          generatedBy: artifacts.generatedBy,
          convertedBy: artifacts.convertedBy,
          weightsManifest: [{ paths: [WEIGHTS_BIN], weights: artifacts.weightSpecs ?? [] }],
          userDefinedMetadata: artifacts.userDefinedMetadata,
        };
        await mkdir(dir, { recursive: true });
        const text = JSON.stringify(modelJson);
        // Weights first and model.json last, each renamed into place: a reader that finds a
        // model.json finds the shard it names.
        for (const [name, data] of [
          [WEIGHTS_BIN, weights],
          [MODEL_JSON, text],
        ] as const) {
          const tmp = join(dir, `.${name}.tmp-${process.pid}`);
          await writeFile(tmp, data);
          await rename(tmp, join(dir, name));
        }
        result = {
          dir,
          files: [join(dir, MODEL_JSON), join(dir, WEIGHTS_BIN)],
          bytes: weights.byteLength + Buffer.byteLength(text),
        };
        return {
          modelArtifactsInfo: { dateSaved: new Date(), modelTopologyType: 'JSON', weightDataBytes: weights.byteLength },
        };
      }),
    );
    return result;
  } finally {
    model.dispose();
  }
}

/** Loads a model directory written by exportGenerator (or any tfjs LayersModel directory) in Node. */
export async function loadExportedGenerator(tf: TF, dir: string): Promise<LayersModel> {
  const json = JSON.parse(await readFile(join(dir, MODEL_JSON), 'utf8')) as io.ModelJSON;
  const handler: io.IOHandler = {
    load: () =>
      tf.io.getModelArtifactsForJSON(json, async (manifest) => {
        const specs = manifest.flatMap((g) => g.weights);
        const shards = await Promise.all(manifest.flatMap((g) => g.paths).map((p) => readFile(join(dir, p))));
        const data = tf.io.concatenateArrayBuffers(
          shards.map((b) => b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength) as ArrayBuffer),
        );
        return [specs, data];
      }),
  };
  return tf.loadLayersModel(handler);
}

export interface Latents {
  z: Float32Array;
  /** 'validation': the run's fixed ZValidation rows; 'seed': fresh N(0, 1) draws from Rng(seed). */
  source: 'validation' | 'seed';
  seed?: number;
}

/** A seed for fresh latents when none is given: any that `--seed` takes and Rng tells apart. */
export const freshSeed = (): number => randomInt(2 ** 32);

/**
 * The latent vectors to generate from: N(0, 1) draws from Rng(seed), as the seed's "generate new
 * images" draws ZNew = randn(...), or with 'validation' the run's saved ZValidation (the very
 * images of its sample grids), which has numValidationImages rows.
 */
export function chooseLatents(
  count: number,
  latent: number,
  zValidation: Float32Array,
  from: number | 'validation',
): Latents {
  if (from === 'validation') {
    const rows = Math.floor(zValidation.length / latent);
    if (count > rows) {
      throw new GanDistError(
        'GAN_DIST_E_USAGE',
        `--validation-latents: the run has ${rows} validation latents, --count asks for ${count}`,
        `give --count ${rows} or less, or leave out --validation-latents for fresh latents`,
      );
    }
    return { z: zValidation.slice(0, count * latent), source: 'validation' };
  }
  return { z: new Rng(from).fillNormal(new Float32Array(count * latent)), source: 'seed', seed: from };
}

export interface GenerateOptions {
  /** A run directory, runs/latest, or a checkpoint (directory or a file in it). */
  checkpoint: string;
  count?: number;
  /** Draws the latents from Rng(seed); default a fresh seed, which the result reports. */
  seed?: number;
  /** The run's fixed validation latents instead of fresh ones (not with `seed`). */
  validationLatents?: boolean;
  out?: string;
  format?: 'png' | 'tfjs';
  backend?: BackendName;
  cwd?: string;
  /** Told about damaged checkpoints skipped on the way to an intact one. */
  onWarning?: (message: string) => void;
}

export interface GenerateResult {
  checkpoint: string;
  iteration: number;
  runId: string;
  format: 'png' | 'tfjs';
  out: string;
  backend: BackendInfo;
  /** png only. */
  count?: number;
  latents?: Latents['source'];
  seed?: number;
  width?: number;
  height?: number;
  /** tfjs only. */
  files?: string[];
}

/** Rows per forward pass, so a large count does not need memory for all of it at once. */
const GENERATE_BATCH = 64;

/** G(z) in inference mode for `count` latent rows, in passes of GENERATE_BATCH: count x s x s x 3 in [-1, 1]. */
export async function generateImages(
  tf: TF,
  cfg: ModelConfig,
  params: NamedArrays,
  z: Float32Array,
  count: number,
): Promise<Float32Array> {
  const per = cfg.imageSize * cfg.imageSize * 3;
  const images = new Float32Array(count * per);
  // The seed only keys dropout, which inference does not use.
  const trainer = new Trainer(tf, cfg, 0);
  try {
    trainer.setWeights(params);
    for (let i = 0; i < count; i += GENERATE_BATCH) {
      const n = Math.min(GENERATE_BATCH, count - i);
      images.set(await trainer.generate(z.subarray(i * cfg.latent, (i + n) * cfg.latent), n), i * per);
    }
  } finally {
    trainer.dispose();
  }
  return images;
}

async function openCheckpoint(
  arg: string,
  cwd: string | undefined,
  onWarning?: (m: string) => void,
): Promise<LoadedCheckpoint> {
  const run = resolveRunDir(arg, cwd);
  const cp =
    run.checkpoint !== undefined
      ? await loadCheckpoint(run.checkpoint)
      : await loadLatestCheckpoint(run.path, { onWarning });
  assertSameTable(cp.path, cp.specs, parameterTable(modelConfigOf(cp.config)));
  return cp;
}

/** `gan-dist generate`: G of a checkpoint in inference mode, as a sample grid PNG or an exported model. */
export async function generateFromCheckpoint(opts: GenerateOptions): Promise<GenerateResult> {
  const format = opts.format ?? 'png';
  const count = opts.count ?? 25;
  if (!Number.isInteger(count) || count < 1) {
    throw new GanDistError(
      'GAN_DIST_E_USAGE',
      `--count: ${count} is not a positive integer`,
      'give --count an integer >= 1',
    );
  }
  if (opts.validationLatents && opts.seed !== undefined) {
    throw new GanDistError(
      'GAN_DIST_E_USAGE',
      '--seed and --validation-latents: the latents come from one or the other',
      "give --seed S for fresh latents that can be drawn again, or --validation-latents for the run's fixed ones",
    );
  }
  const cp = await openCheckpoint(opts.checkpoint, opts.cwd, opts.onWarning);
  const cfg = modelConfigOf(cp.config);
  // Chosen before the backend loads, so a --count the validation latents cannot meet fails at once.
  const latents =
    format === 'png'
      ? chooseLatents(
          count,
          cfg.latent,
          cp.zValidation,
          opts.validationLatents ? 'validation' : (opts.seed ?? freshSeed()),
        )
      : undefined;
  const { tf, info } = await loadBackend(opts.backend ?? 'auto');
  const base = { checkpoint: cp.path, iteration: cp.iteration, runId: cp.runId, format, backend: info };

  if (!latents) {
    const out = opts.out ?? 'generator-tfjs';
    const r = await exportGenerator(tf, cfg, cp.params, out, { runId: cp.runId, iteration: cp.iteration });
    return { ...base, out, files: r.files };
  }

  const out = opts.out ?? 'grid.png';
  const images = await generateImages(tf, cfg, cp.params, latents.z, count);
  const grid = await writeSampleGrid(out, images, count, cfg.imageSize);
  return { ...base, out, count, latents: latents.source, seed: latents.seed, width: grid.width, height: grid.height };
}
