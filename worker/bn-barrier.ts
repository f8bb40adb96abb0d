// `--batchnorm sync` on a worker: how a step hands its part of each BatchNorm barrier over
// (protocol/wire/bn-sync.ts) and what it waits for.

import type { Tensor } from '@tensorflow/tfjs';
import type { BnBarrierPart, BnBarrierResult } from '../protocol/wire/bn-sync.ts';
import type { BnBarrierAsk } from './model.ts';

/** Where a synced step waits: barrier `index` of the step (0, 1, ... in step order), at BatchNorm layer `key`. */
export interface BnBarrierAt {
  index: number;
  key: string;
}

/** `--batchnorm sync`: hands this shard's part of one barrier over and resolves with the global result. */
export type BnBarrier = (at: BnBarrierAt, part: BnBarrierPart) => Promise<BnBarrierResult>;

/** A barrier's part from what a BatchNorm layer asked, with `read` for its tensors' values. */
export function barrierPartOf(ask: BnBarrierAsk, read: (t: Tensor) => Float32Array): BnBarrierPart {
  const a = read(ask.a);
  const b = read(ask.b);
  if (ask.kind === 'gradSums') return { kind: 'gradSums', count: ask.count, sumDy: a, sumDyXhat: b };
  // M2 from the biased variance; the combiner pools in float64.
  const m2 = new Float32Array(b.length);
  for (let c = 0; c < b.length; c++) m2[c] = b[c] * ask.count;
  return { kind: 'moments', count: ask.count, mean: a, m2 };
}

/** barrierPartOf with asynchronous reads (a GPU backend has no synchronous read under Node). */
export async function readBarrierPart(ask: BnBarrierAsk): Promise<BnBarrierPart> {
  const [a, b] = (await Promise.all([ask.a.data(), ask.b.data()])) as Float32Array[];
  const values = new Map<Tensor, Float32Array>([
    [ask.a, a],
    [ask.b, b],
  ]);
  return barrierPartOf(ask, (t) => values.get(t)!);
}
