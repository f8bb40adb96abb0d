// Synced BatchNorm (`--batchnorm sync`): what a shard contributes at each BatchNorm barrier and
// how the contributions combine, in shard order and float64, into the global batch's result.
// Forward barriers pool per-channel moments (Chan's parallel formula: no cancellation of sums of
// squares); backward barriers pool the sums of dy and dy*xhat that BatchNorm's input gradient needs.

import { GanDistError } from '../errors.ts';

/** --batchnorm: over the whole batch, pooled at every layer ('sync'), or over each shard's rows ('shard'). */
export const BATCHNORM_MODES = ['sync', 'shard'] as const;
export type BatchNormMode = (typeof BATCHNORM_MODES)[number];

/**
 * A new run's --batchnorm. One default for every transport, so a run's numbers never depend on how
 * it was deployed. The rule (sync if it costs at most 5 % of the seed's CPU step and 25 % at a
 * simulated 10 ms step) picks shard: at S = 10 ms on shared memory sync measured +57 % (21
 * barriers, about 0.8 ms each on this 2-core machine, plus the first barrier waiting out the
 * workers' staggered starts). See docs/benchmarks.md, "Synced BatchNorm".
 */
export const DEFAULT_BATCHNORM: BatchNormMode = 'shard';

/** --batchnorm (or a run's stored config): 'sync' or 'shard', else an error naming the value and both. */
export function parseBatchNorm(raw: unknown, source = '--batchnorm'): BatchNormMode {
  if (typeof raw === 'string' && (BATCHNORM_MODES as readonly string[]).includes(raw)) return raw as BatchNormMode;
  throw new GanDistError(
    'GAN_DIST_E_CONFIG',
    `${source}: ${JSON.stringify(raw)} is not a BatchNorm mode`,
    'use sync (each BatchNorm layer over the whole batch, as one process) or shard (over each worker’s rows)',
  );
}

/** A forward barrier's contribution: one shard's per-channel moments over `count` elements. */
export interface BnMomentsPart {
  kind: 'moments';
  count: number;
  mean: Float32Array;
  /** Sum of squared deviations from the shard's own mean (biased variance x count). */
  m2: Float32Array;
}

/**
 * A backward barrier's contribution: sums over the shard's elements of dy and dy*xhat, where dy
 * is the gradient of the shard's own mean loss (the coordinator weights shards by rows).
 */
export interface BnGradSumsPart {
  kind: 'gradSums';
  count: number;
  sumDy: Float32Array;
  sumDyXhat: Float32Array;
}

export type BnBarrierPart = BnMomentsPart | BnGradSumsPart;

/**
 * A barrier's global result. For moments: the batch mean and biased variance. For grad sums:
 * sum_k count_k * sum_k(dy) / count and the same of dy*xhat, so that shard k's input gradient
 * uses a / count_k where a single process uses its own sum / count (see worker/backprop.ts).
 */
export interface BnBarrierResult {
  count: number;
  a: Float32Array;
  b: Float32Array;
}

/** Combines one barrier's contributions, given in shard order; all of one kind and width. */
export function combineBnParts(parts: BnBarrierPart[]): BnBarrierResult {
  if (parts.length === 0) throw new Error('combineBnParts: no contribution');
  const kind = parts[0].kind;
  const channels = kind === 'moments' ? parts[0].mean.length : parts[0].sumDy.length;
  const a = new Float64Array(channels);
  const b = new Float64Array(channels);
  let count = 0;
  for (const p of parts) {
    if (p.kind !== kind) throw new Error(`combineBnParts: ${p.kind} contribution to a ${kind} barrier`);
    const pa = p.kind === 'moments' ? p.mean : p.sumDy;
    const pb = p.kind === 'moments' ? p.m2 : p.sumDyXhat;
    if (pa.length !== channels || pb.length !== channels)
      throw new Error(`combineBnParts: ${pa.length} channels where ${channels} were expected`);
    const n = count + p.count;
    for (let c = 0; c < channels; c++) {
      if (p.kind === 'moments') {
        // Chan et al.: mean and M2 of the union from each part's mean and M2.
        const delta = pa[c] - a[c];
        a[c] += (delta * p.count) / n;
        b[c] += pb[c] + (delta * delta * count * p.count) / n;
      } else {
        a[c] += p.count * pa[c];
        b[c] += p.count * pb[c];
      }
    }
    count = n;
  }
  const outA = new Float32Array(channels);
  const outB = new Float32Array(channels);
  for (let c = 0; c < channels; c++) {
    // Moments: M2 / count is the biased variance. Grad sums: the count-weighted sums over count.
    outA[c] = kind === 'moments' ? a[c] : a[c] / count;
    outB[c] = b[c] / count;
  }
  return { count, a: outA, b: outB };
}

/**
 * Several shards' combined result as one part of a larger combination (a node's shard made of its
 * workers' sub-shards): combining it with other parts gives what combining all sub-shards would.
 */
export function partOfResult(kind: BnBarrierPart['kind'], r: BnBarrierResult): BnBarrierPart {
  if (kind === 'gradSums') return { kind, count: r.count, sumDy: r.a, sumDyXhat: r.b };
  const m2 = new Float32Array(r.b.length);
  for (let c = 0; c < m2.length; c++) m2[c] = r.b[c] * r.count;
  return { kind, count: r.count, mean: r.a, m2 };
}

/** One barrier of a synced step: the layer, what it pools, and its channel count. */
export interface BnBarrierStep {
  key: string;
  kind: BnBarrierPart['kind'];
  channels: number;
}

/**
 * The barriers of one synced step, in order (worker/trainer.ts's step): forward G, D on real
 * images, D on generated ones; backward D real and D generated (lossD), D generated (lossG), G.
 * A backward pass has no barrier at a network's first learnable layer (no BN there).
 */
export function syncBarrierPlan(layers: readonly { key: string; channels: number }[]): BnBarrierStep[] {
  const of = (net: string) => layers.filter((l) => l.key.startsWith(`${net}/`));
  const pass = (ls: readonly { key: string; channels: number }[], kind: BnBarrierPart['kind']) =>
    ls.map((l) => ({ key: l.key, kind, channels: l.channels }));
  const g = of('G');
  const d = of('D');
  const back = (ls: typeof layers) => pass([...ls].reverse(), 'gradSums');
  return [
    ...pass(g, 'moments'),
    ...pass(d, 'moments'),
    ...pass(d, 'moments'),
    ...back(d),
    ...back(d),
    ...back(d),
    ...back(g),
  ];
}
