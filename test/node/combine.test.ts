import { describe, expect, it } from 'vitest';
import type { ParamSpec } from '../../protocol/model/architecture.ts';
import { bnTensorName, type BnLayer } from '../../protocol/wire/bn-sums.ts';
import type { GradientsMessage } from '../../protocol/wire/protocol.ts';
import { ShardCombiner, weightedMean } from '../../node/combine.ts';

const learnables: ParamSpec[] = [
  { name: 'G/w', shape: [3], role: 'learnable', init: { kind: 'const', value: 0 } } as ParamSpec,
];
const layers: BnLayer[] = [{ key: 'G/bn1', channels: 2, perImage: 4 }];

function answer(
  shardId: number,
  n: number,
  g: number[],
  sum: number[],
  scoreG: number,
): {
  task: { shardId: number; rowCount: number };
  msg: GradientsMessage;
} {
  return {
    task: { shardId, rowCount: n },
    msg: {
      type: 'gradients',
      iteration: 1,
      shardId,
      weightsVersion: 1,
      n,
      scoreG,
      scoreD: 0.5,
      lossG: 1,
      lossD: 2,
      timings: { computeMs: 1 },
      tensors: {
        'G/w': Float32Array.from(g),
        [bnTensorName('G/bn1', 'sum')]: Float32Array.from(sum),
        [bnTensorName('G/bn1', 'sumSq')]: Float32Array.from(sum.map((x) => x * 2)),
      },
      shapes: {},
    },
  };
}

describe('ShardCombiner', () => {
  it('folds sub-shard answers into the row-weighted mean gradient, summed BatchNorm sums and row-weighted scores, whatever their arrival order', () => {
    const c = new ShardCombiner(learnables, layers);
    const a = answer(0, 3, [1, 2, 3], [1, 1], 0.2);
    const b = answer(1, 1, [5, 6, 7], [10, 20], 0.6);
    const r = c.combine([b, a], 9);
    expect(r.n).toBe(4);
    expect([...r.grads['G/w']]).toEqual([(3 * 1 + 5) / 4, (3 * 2 + 6) / 4, (3 * 3 + 7) / 4]);
    expect([...r.bn['G/bn1'].sum]).toEqual([11, 21]);
    expect([...r.bn['G/bn1'].sumSq]).toEqual([22, 42]);
    expect(r.bn['G/bn1'].count).toBe(4 * 4);
    expect(r.scoreG).toBeCloseTo((3 * 0.2 + 0.6) / 4, 12);
    expect(r.computeMs).toBe(9);
  });
});

describe('weightedMean', () => {
  it('accumulates in float64: three shards whose float32 running sum would round give the exact mean', () => {
    const out = new Float32Array(1);
    // 2^24 + 1 is not a float32: a float32 accumulator would lose the 1.
    weightedMean(out, [Float32Array.of(2 ** 24), Float32Array.of(1), Float32Array.of(-(2 ** 24))], [1, 1, 1], 3);
    expect(out[0]).toBe(Math.fround(1 / 3));
  });
});
