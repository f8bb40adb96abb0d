// BatchNorm statistics as a gradients message carries them: per layer and channel, the sum and the
// sum of squares over a shard's rows x H x W, so the coordinator can pool the whole batch exactly.

import type { ModelConfig } from '../config.ts';
import { activationShapes, layersOf } from '../model/architecture.ts';

/** One BatchNorm layer's per-channel sums over `count` elements (rows x H x W). */
export interface BnSums {
  sum: Float32Array;
  sumSq: Float32Array;
  count: number;
}

/** By layer key: "G/bn1", "D/bn2". */
export type BnSumsByLayer = Record<string, BnSums>;

/** A BatchNorm layer as the statistics see it. */
export interface BnLayer {
  /** "G/bn1": also the prefix of its running statistics' parameter names ("G/bn1/mean"). */
  key: string;
  channels: number;
  /** Elements per channel it normalises over, per image: H x W of its input. */
  perImage: number;
}

const PARTS = ['sum', 'sumSq'] as const;
const PREFIX = 'bn/';

/** The model's BatchNorm layers, G's then D's, in layer order. */
export function bnLayers(cfg: ModelConfig): BnLayer[] {
  const out: BnLayer[] = [];
  for (const net of ['G', 'D'] as const) {
    const layers = layersOf(net, cfg);
    const shapes = activationShapes(layers);
    layers.forEach((l, i) => {
      if (l.kind === 'bn')
        out.push({ key: `${net}/${l.name}`, channels: l.channels, perImage: shapes[i][0] * shapes[i][1] });
    });
  }
  return out;
}

/** The tensor name of one part of a layer's sums in a gradients message: "bn/G/bn1/sumSq". */
export function bnTensorName(key: string, part: (typeof PARTS)[number]): string {
  return `${PREFIX}${key}/${part}`;
}

/** Whether a gradients message's tensor is a BatchNorm sum (sent exact, never in a 16-bit wire dtype). */
export function isBnTensor(name: string): boolean {
  return name.startsWith(PREFIX);
}

/** How many tensors the sums add to a gradients message. */
export function bnTensorCount(layers: BnLayer[]): number {
  return PARTS.length * layers.length;
}

/** Sums from a layer's batch mean and biased variance over `count` elements. */
export function bnSumsFromMoments(mean: Float32Array, variance: Float32Array, count: number): BnSums {
  const sum = new Float32Array(mean.length);
  const sumSq = new Float32Array(mean.length);
  for (let c = 0; c < mean.length; c++) {
    sum[c] = mean[c] * count;
    sumSq[c] = (variance[c] + mean[c] * mean[c]) * count;
  }
  return { sum, sumSq, count };
}

/** Adds a shard's sums to the tensors of its gradients message. */
export function putBnSums(tensors: Record<string, Float32Array>, sums: BnSumsByLayer): void {
  for (const [key, b] of Object.entries(sums)) {
    tensors[bnTensorName(key, 'sum')] = b.sum;
    tensors[bnTensorName(key, 'sumSq')] = b.sumSq;
  }
}

/** What is wrong with a gradients message's sums, or undefined: each layer's two parts, of its channel count. */
export function checkBnSums(tensors: Record<string, Float32Array>, layers: BnLayer[]): string | undefined {
  for (const l of layers) {
    for (const part of PARTS) {
      const name = bnTensorName(l.key, part);
      const a = tensors[name];
      if (!a || a.length !== l.channels) return `missing or mis-sized BatchNorm statistic ${name}`;
    }
  }
  return undefined;
}

/**
 * The sums of a checked gradients message over `rows` images. The count is derived here, from the
 * layer's shape and the shard's rows, never taken from the sender.
 */
export function readBnSums(tensors: Record<string, Float32Array>, layers: BnLayer[], rows: number): BnSumsByLayer {
  const out: BnSumsByLayer = {};
  for (const l of layers) {
    out[l.key] = {
      sum: tensors[bnTensorName(l.key, 'sum')],
      sumSq: tensors[bnTensorName(l.key, 'sumSq')],
      count: l.perImage * rows,
    };
  }
  return out;
}
