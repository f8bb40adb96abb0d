// A node's arithmetic: its local workers' answers to the sub-shards of one shard, folded into the
// one answer the coordinator gets, as if one worker had computed the whole shard: gradients as the
// row-weighted mean, BatchNorm sums added, scores and losses as row-weighted means. Sums run in
// shard order with float64 accumulation, so the result never depends on which worker answered first.

import { sizeOf, type NamedArrays, type ParamSpec } from '../protocol/model/architecture.ts';
import { readBnSums, type BnLayer, type BnSumsByLayer } from '../protocol/wire/bn-sums.ts';
import type { GradientsMessage } from '../protocol/wire/protocol.ts';
import type { ShardResult } from '../worker/trainer.ts';
import { existingArena, simdArena } from '../protocol/arena/simd.ts';

/** One sub-shard's accepted answer, as the node's dispatcher hands it over. */
export interface SubShardAnswer {
  task: { shardId: number; rowCount: number };
  msg: GradientsMessage;
}

export class ShardCombiner {
  /** The node's answer is sent before the next shard is stepped: its arrays are reused. */
  private readonly grads: NamedArrays = {};
  private readonly bnSums: Record<string, { sum: Float32Array; sumSq: Float32Array }> = {};

  constructor(
    private readonly learnables: readonly ParamSpec[],
    private readonly layers: readonly BnLayer[],
  ) {
    // In the SIMD arena, where the workers' gradients read from shared memory land too: the mean
    // is then the wasm kernel's, and the check before the send the arena's fast path.
    const arena = simdArena();
    for (const s of learnables) {
      const n = sizeOf(s.shape);
      const block = arena.alloc(4 * n);
      this.grads[s.name] = block ? arena.f32(block, n) : new Float32Array(n);
    }
    for (const l of layers)
      this.bnSums[l.key] = { sum: new Float32Array(l.channels), sumSq: new Float32Array(l.channels) };
  }

  /** The whole shard's result from its sub-shards' answers (sorted here into shard order). */
  combine(answers: SubShardAnswer[], computeMs: number): ShardResult {
    answers.sort((a, b) => a.task.shardId - b.task.shardId);
    const ns = answers.map((a) => a.msg.n);
    const n = ns.reduce((a, b) => a + b, 0);
    for (const s of this.learnables)
      weightedMean(
        this.grads[s.name],
        answers.map((a) => a.msg.tensors[s.name]),
        ns,
        n,
      );
    const bn: BnSumsByLayer = {};
    const parts = answers.map((a) => readBnSums(a.msg.tensors, this.layers as BnLayer[], a.msg.n));
    for (const l of this.layers) {
      const out = this.bnSums[l.key];
      sumInto(
        out.sum,
        parts.map((p) => p[l.key].sum),
      );
      sumInto(
        out.sumSq,
        parts.map((p) => p[l.key].sumSq),
      );
      bn[l.key] = { sum: out.sum, sumSq: out.sumSq, count: l.perImage * n };
    }
    const mean = (pick: (m: GradientsMessage) => number) =>
      answers.reduce((acc, a) => acc + a.msg.n * pick(a.msg), 0) / n;
    return {
      n,
      grads: this.grads,
      bn,
      scoreG: mean((m) => m.scoreG),
      scoreD: mean((m) => m.scoreD),
      lossG: mean((m) => m.lossG),
      lossD: mean((m) => m.lossD),
      computeMs,
    };
  }
}

/** out[i] = sum_k n_k g_k[i] / total, accumulated in float64 in the order given. */
export function weightedMean(
  out: Float32Array,
  gs: readonly Float32Array[],
  ns: readonly number[],
  total: number,
): void {
  if (gs.length === 0) {
    // No answer (a node whose workers all diverged): 0 / 0, the NaN that reports it.
    out.fill(0 / total);
    return;
  }
  if (gs.length === 1) {
    // One sub-shard (a node of one worker, or every other worker down): its gradient unchanged.
    out.set(gs[0]);
    return;
  }
  // All in the SIMD arena (the workers' gradients read from shared memory, and `out`): the wasm
  // kernel, the same operations per element, does all but the last few (9.45 M floats, two
  // shards: 6.6 ms against 19.0 for the unrolled loop below, median of 9, in one run).
  const from = existingArena()?.weightedMean(out, gs, ns, total) ?? 0;
  if (gs.length === 2) {
    // The common node of two, unrolled: the arena kernel's tail, or every float of arrays outside the arena.
    const [a, b] = gs;
    const [na, nb] = ns;
    for (let i = from; i < out.length; i++) out[i] = (na * a[i] + nb * b[i]) / total;
    return;
  }
  for (let i = from; i < out.length; i++) {
    let s = ns[0] * gs[0][i];
    for (let k = 1; k < gs.length; k++) s += ns[k] * gs[k][i];
    out[i] = s / total;
  }
}

/** out[i] = sum_k parts_k[i], in float64. */
function sumInto(out: Float32Array, parts: readonly Float32Array[]): void {
  for (let i = 0; i < out.length; i++) {
    let s = 0;
    for (const p of parts) s += p[i];
    out[i] = s;
  }
}
