import { describe, expect, it } from 'vitest';
import type { ParamSpec } from '../../protocol/model/architecture.ts';
import { bnTensorName, type BnLayer } from '../../protocol/wire/bn-sums.ts';
import type { GradientsMessage } from '../../protocol/wire/protocol.ts';
import { ShardCombiner, weightedMean } from '../../node/combine.ts';
import { simdArena } from '../../protocol/arena/simd.ts';
import { Rng } from '../../protocol/rng.ts';

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

  // The arena's kernel against the JavaScript loops it stands in for, bit for bit: random values
  // over many magnitudes, -0, shard counts 2 to 5 of unequal rows, lengths that leave a tail.
  it.each([2, 3, 4, 5])('gives the same floats in the SIMD arena as outside it, for %i shards', (k) => {
    const rng = new Rng(0xc0b1 + k);
    const arena = simdArena();
    const inArena = (n: number) => arena.f32(arena.alloc(4 * n)!, n);
    const n = 4099;
    const ns = Array.from({ length: k }, (_, j) => 7 + 13 * j);
    const total = ns.reduce((a, b) => a + b, 0);
    const gs = ns.map(() => {
      const g = inArena(n);
      for (let i = 0; i < n; i++) g[i] = (rng.uniform() - 0.5) * 2 ** Math.floor(rng.uniform() * 40 - 20);
      g[5] = -0;
      return g;
    });
    const fast = inArena(n);
    const plain = new Float32Array(n);
    weightedMean(fast, gs, ns, total);
    weightedMean(
      plain,
      gs.map((g) => Float32Array.from(g)),
      ns,
      total,
    );
    expect(Buffer.from(fast.buffer, fast.byteOffset, 4 * n).equals(Buffer.from(plain.buffer))).toBe(true);
    expect(Object.is(fast[5], -0)).toBe(true);
    // The kernel did the bulk, the loop only the tail.
    expect(arena.weightedMean(inArena(n), gs, ns, total)).toBe(4096);
  });

  it('gives NaN for no answer at all (a node whose workers all diverged reports it so)', () => {
    const c = new ShardCombiner(learnables, layers);
    expect([...c.combine([], 1).grads['G/w']].every(Number.isNaN)).toBe(true);
  });

  it('accumulates in float64 in the arena too', () => {
    const arena = simdArena();
    const at = (xs: number[]) => {
      const a = arena.f32(arena.alloc(16)!, 4);
      a.set(xs);
      return a;
    };
    const out = at([0, 0, 0, 0]);
    weightedMean(out, [at([2 ** 24, 0, 0, 0]), at([1, 0, 0, 0]), at([-(2 ** 24), 0, 0, 0])], [1, 1, 1], 3);
    expect(out[0]).toBe(Math.fround(1 / 3));
  });
});
