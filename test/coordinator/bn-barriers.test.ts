import { describe, expect, it } from 'vitest';
import { BnBarriers as Barriers, type BnReply } from '../../coordinator/bn-barriers.ts';
import { combineBnParts, type BnBarrierPart } from '../../protocol/wire/bn-sync.ts';

const moments = (count: number, mean: number[], variance: number[]): BnBarrierPart => ({
  kind: 'moments',
  count,
  mean: Float32Array.from(mean),
  m2: Float32Array.from(variance.map((v) => v * count)),
});

describe('combineBnParts', () => {
  it("pools moments exactly (Chan's formula) where sums of squares would cancel", () => {
    // Two shards of a channel with mean 1e4 and spread 1: float32 sums of squares lose it all.
    const rows = [1e4 - 1, 1e4 + 1, 1e4 - 0.5, 1e4 + 0.5, 1e4];
    const part = (xs: number[]) => {
      const m = xs.reduce((a, x) => a + x, 0) / xs.length;
      return moments(xs.length, [m], [xs.reduce((a, x) => a + (x - m) ** 2, 0) / xs.length]);
    };
    const r = combineBnParts([part(rows.slice(0, 2)), part(rows.slice(2))]);
    expect(r.count).toBe(5);
    expect(r.a[0]).toBe(1e4);
    expect(r.b[0]).toBeCloseTo(0.5, 6);
  });

  it('weights gradient sums by each part count, over the total', () => {
    const part = (count: number, s1: number, s2: number): BnBarrierPart => ({
      kind: 'gradSums',
      count,
      sumDy: Float32Array.of(s1),
      sumDyXhat: Float32Array.of(s2),
    });
    const r = combineBnParts([part(2, 1, 4), part(6, 3, -2)]);
    expect([r.count, r.a[0], r.b[0]]).toEqual([8, (2 * 1 + 6 * 3) / 8, (2 * 4 - 6 * 2) / 8]);
  });
});

/** The coordinator's table, whose replies come at once. */
class BnBarriers {
  private readonly inner: Barriers;
  constructor(iteration: number, shardIds: number[]) {
    this.inner = new Barriers(iteration, shardIds);
  }
  contribute(...args: Parameters<Barriers['contribute']>): BnReply[] {
    return this.inner.contribute(...args) as BnReply[];
  }
  get closed(): number {
    return this.inner.closed;
  }
}

describe('BnBarriers', () => {
  const a = moments(4, [1, 2], [1, 1]);
  const b = moments(2, [4, 2], [1, 3]);

  it('answers every shard once the last part of a barrier is in, combined in shard order', () => {
    const bars = new BnBarriers(5, [10, 11]);
    expect(bars.contribute(11, 0, 'G/bn1', b)).toEqual([]);
    const replies = bars.contribute(10, 0, 'G/bn1', a);
    expect(replies.map((r) => r.shardId)).toEqual([10, 11]);
    expect(replies[0].result).toEqual(combineBnParts([a, b]));
    expect(bars.closed).toBe(1);
  });

  it("gives a replacement worker a closed barrier's fixed result and counts its part once for an open one", () => {
    const bars = new BnBarriers(5, [0, 1]);
    bars.contribute(0, 0, 'G/bn1', a);
    const fixed = bars.contribute(1, 0, 'G/bn1', b)[0].result;
    bars.contribute(1, 1, 'G/bn2', a); // shard 1's worker waits at barrier 1, then dies
    // Its replacement recomputes shard 1 from the start: barrier 0 is answered as before, not recombined.
    expect(bars.contribute(1, 0, 'G/bn1', moments(2, [9, 9], [9, 9]))).toEqual([
      { shardId: 1, barrier: 0, result: fixed },
    ]);
    expect(bars.contribute(1, 1, 'G/bn2', a)).toEqual([]);
    const replies = bars.contribute(0, 1, 'G/bn2', b);
    expect(replies[1].result).toEqual(combineBnParts([b, a]));
  });

  it('refuses a part for another layer, kind or width than the barrier, an unknown shard or a skipped barrier', () => {
    const bars = new BnBarriers(5, [0, 1]);
    bars.contribute(0, 0, 'G/bn1', a);
    expect(() => bars.contribute(1, 0, 'G/bn2', a)).toThrow(/barrier is G\/bn1 moments x2/);
    expect(() => bars.contribute(1, 0, 'G/bn1', moments(4, [1], [1]))).toThrow(/x1; the barrier is G\/bn1 moments x2/);
    expect(() => bars.contribute(7, 0, 'G/bn1', a)).toThrow(/shard 7/);
    expect(() => bars.contribute(1, 2, 'G/bn1', a)).toThrow(/before barrier 1/);
  });
});
