// The seed's generator and discriminator as data: layers, activation shapes and the named
// parameter table. No tfjs here, so the coordinator can initialise and serve parameters as
// flat arrays without knowing what they compute.

import type { ModelConfig } from '../config.ts';
import { Rng } from '../rng.ts';

export type Layer =
  | { kind: 'input'; name: string; shape: number[] }
  | { kind: 'project'; name: string; inputs: number; shape: [number, number, number] }
  | {
      kind: 'tconv' | 'conv';
      name: string;
      k: number;
      stride: number;
      pad: 'same' | 'valid';
      inC: number;
      outC: number;
    }
  | { kind: 'bn'; name: string; channels: number }
  | { kind: 'relu' | 'tanh' | 'sigmoid'; name: string }
  | { kind: 'leakyrelu'; name: string; alpha: number }
  | { kind: 'dropout'; name: string; rate: number };

export type Net = 'G' | 'D';

export interface ParamSpec {
  /** e.g. "G/tconv2/w"; the order of the table is the order of the flat parameter vector. */
  name: string;
  net: Net;
  layer: string;
  shape: number[];
  /** learnable parameters get gradients and Adam; 'state' are BatchNorm running statistics. */
  role: 'learnable' | 'state';
  init: { kind: 'glorot'; fanIn: number; fanOut: number } | { kind: 'const'; value: number };
}

export const BN_EPSILON = 1e-5;
/** MATLAB's MeanDecay and VarianceDecay: running = decay * batch + (1 - decay) * running. */
export const BN_DECAY = 0.1;
export const LEAKY_ALPHA = 0.2;
export const DROPOUT_RATE = 0.5;

/** Generator: project 100 -> 4x4x8nf; tconv (s1, no crop) to 8x8x4nf; stride-2 tconvs to the image. */
export function generatorLayers(cfg: ModelConfig): Layer[] {
  const nf = cfg.filters;
  const layers: Layer[] = [
    { kind: 'input', name: 'in', shape: [1, 1, cfg.latent] },
    { kind: 'project', name: 'proj', inputs: cfg.latent, shape: [4, 4, 8 * nf] },
    // state size: 4 x 4 x 8nf
    { kind: 'tconv', name: 'tconv1', k: 5, stride: 1, pad: 'valid', inC: 8 * nf, outC: 4 * nf },
    // state size: 8 x 8 x 4nf
    { kind: 'bn', name: 'bn1', channels: 4 * nf },
    { kind: 'relu', name: 'relu1' },
  ];
  // 64x64 needs three stride-2 doublings from 8x8 (4nf -> 2nf -> nf -> 3); 32x32 needs two (4nf -> 2nf -> 3).
  const doublings = Math.log2(cfg.imageSize / 8);
  let c = 4 * nf;
  for (let i = 0; i < doublings; i++) {
    const idx = i + 2;
    const last = i === doublings - 1;
    const outC = last ? 3 : c / 2;
    layers.push({ kind: 'tconv', name: `tconv${idx}`, k: 5, stride: 2, pad: 'same', inC: c, outC });
    if (!last) {
      layers.push({ kind: 'bn', name: `bn${idx}`, channels: outC }, { kind: 'relu', name: `relu${idx}` });
    }
    c = outC;
  }
  layers.push({ kind: 'tanh', name: 'tanh' }); // state size: image x image x 3, in [-1, 1]
  return layers;
}

/** Discriminator: dropout on the input; stride-2 convs nf, 2nf, ... down to 4x4; 4x4 conv to one logit. */
export function discriminatorLayers(cfg: ModelConfig): Layer[] {
  const nf = cfg.filters;
  const layers: Layer[] = [
    { kind: 'input', name: 'in', shape: [cfg.imageSize, cfg.imageSize, 3] },
    { kind: 'dropout', name: 'dropout', rate: DROPOUT_RATE },
  ];
  const halvings = Math.log2(cfg.imageSize / 4); // 64 -> 4 convs (nf..8nf); 32 -> 3 (nf..4nf)
  let c = 3;
  for (let i = 0; i < halvings; i++) {
    const idx = i + 1;
    const outC = nf * 2 ** i;
    layers.push({ kind: 'conv', name: `conv${idx}`, k: 5, stride: 2, pad: 'same', inC: c, outC });
    if (i > 0) layers.push({ kind: 'bn', name: `bn${idx}`, channels: outC });
    layers.push({ kind: 'leakyrelu', name: `lrelu${idx}`, alpha: LEAKY_ALPHA });
    c = outC;
  }
  // state size: 4 x 4 x c
  layers.push({ kind: 'conv', name: `conv${halvings + 1}`, k: 4, stride: 1, pad: 'valid', inC: c, outC: 1 });
  layers.push({ kind: 'sigmoid', name: 'sigmoid' }); // applied in the loss from the logit
  return layers;
}

export function layersOf(net: Net, cfg: ModelConfig): Layer[] {
  return net === 'G' ? generatorLayers(cfg) : discriminatorLayers(cfg);
}

/** Activation shape (H, W, C) after each layer, for the summary table and shape checks. */
export function activationShapes(layers: Layer[]): number[][] {
  const shapes: number[][] = [];
  let s: number[] = [];
  for (const l of layers) {
    switch (l.kind) {
      case 'input':
        s = l.shape;
        break;
      case 'project':
        s = l.shape;
        break;
      case 'conv':
      case 'tconv': {
        const [h, w] = s;
        const size = (x: number) => {
          if (l.kind === 'tconv') return l.pad === 'same' ? x * l.stride : (x - 1) * l.stride + l.k;
          return l.pad === 'same' ? Math.ceil(x / l.stride) : Math.floor((x - l.k) / l.stride) + 1;
        };
        s = [size(h), size(w), l.outC];
        break;
      }
      default:
        break; // elementwise layers keep the shape
    }
    shapes.push(s);
  }
  return shapes;
}

function paramsOfLayer(net: Net, l: Layer): ParamSpec[] {
  const p = (suffix: string, shape: number[], role: ParamSpec['role'], init: ParamSpec['init']): ParamSpec => ({
    name: `${net}/${l.name}/${suffix}`,
    net,
    layer: l.name,
    shape,
    role,
    init,
  });
  const zero = { kind: 'const', value: 0 } as const;
  switch (l.kind) {
    case 'project': {
      const out = l.shape[0] * l.shape[1] * l.shape[2];
      return [
        p('w', [l.inputs, out], 'learnable', { kind: 'glorot', fanIn: l.inputs, fanOut: out }),
        p('b', [out], 'learnable', zero),
      ];
    }
    case 'conv':
    case 'tconv': {
      const area = l.k * l.k;
      // tfjs filter layouts: conv2d [k, k, in, out]; conv2dTranspose [k, k, out, in].
      const shape = l.kind === 'conv' ? [l.k, l.k, l.inC, l.outC] : [l.k, l.k, l.outC, l.inC];
      return [
        p('w', shape, 'learnable', { kind: 'glorot', fanIn: area * l.inC, fanOut: area * l.outC }),
        p('b', [l.outC], 'learnable', zero),
      ];
    }
    case 'bn':
      return [
        p('offset', [l.channels], 'learnable', zero),
        p('scale', [l.channels], 'learnable', { kind: 'const', value: 1 }),
        p('mean', [l.channels], 'state', zero),
        p('var', [l.channels], 'state', { kind: 'const', value: 1 }),
      ];
    default:
      return [];
  }
}

/** The parameter table of one network, in a fixed order. */
export function paramSpecs(net: Net, cfg: ModelConfig): ParamSpec[] {
  return layersOf(net, cfg).flatMap((l) => paramsOfLayer(net, l));
}

/** G's table then D's: the one table both sides hash in the handshake. */
export function parameterTable(cfg: ModelConfig): ParamSpec[] {
  return [...paramSpecs('G', cfg), ...paramSpecs('D', cfg)];
}

export const sizeOf = (shape: number[]) => shape.reduce((a, b) => a * b, 1);

export function learnableCount(specs: ParamSpec[]): number {
  return specs.filter((s) => s.role === 'learnable').reduce((n, s) => n + sizeOf(s.shape), 0);
}

export type NamedArrays = Record<string, Float32Array>;

/** MATLAB's default initialisation (Glorot uniform weights, zero biases and offsets, unit scales), seeded. */
export function initialParams(specs: ParamSpec[], seed: number): NamedArrays {
  const rng = new Rng(seed, 1);
  const out: NamedArrays = {};
  for (const s of specs) {
    const a = new Float32Array(sizeOf(s.shape));
    if (s.init.kind === 'glorot') {
      const bound = Math.sqrt(6 / (s.init.fanIn + s.init.fanOut));
      rng.fillUniform(a, -bound, bound);
    } else if (s.init.value !== 0) {
      a.fill(s.init.value);
    }
    out[s.name] = a;
  }
  return out;
}
