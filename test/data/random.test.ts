import { describe, expect, it } from 'vitest';
import { hashInts, Random } from '../../protocol/random.ts';

describe('Random', () => {
  it('produces the reference xoshiro128** sequence from state 1, 2, 3, 4', () => {
    const rng = Random.fromState([1, 2, 3, 4]);
    expect(Array.from({ length: 6 }, () => rng.nextUint32())).toEqual([
      11520, 0, 5927040, 70819200, 2031721883, 1637235492,
    ]);
  });

  it('continues identically from a JSON round trip of its state', () => {
    const a = Random.seeded(42, 7);
    for (let i = 0; i < 10; i++) a.next();
    const b = Random.fromState(JSON.parse(JSON.stringify(a.state())));
    expect(Array.from({ length: 20 }, () => b.nextUint32())).toEqual(Array.from({ length: 20 }, () => a.nextUint32()));
  });

  it('gives different streams for different key lists, including seeds above 2^32', () => {
    const first = (...parts: number[]): number => Random.seeded(...parts).nextUint32();
    expect(first(1, 2)).not.toBe(first(2, 1));
    expect(first(1)).not.toBe(first(1 + 2 ** 32));
    expect(hashInts([5, 6])).toBe(hashInts([5, 6]));
  });

  it('draws integers below n with every value about equally often', () => {
    const rng = Random.seeded(3);
    const counts = new Array(6).fill(0);
    for (let i = 0; i < 60_000; i++) counts[rng.int(6)]++;
    for (const c of counts) expect(Math.abs(c - 10_000)).toBeLessThan(400);
  });

  it('shuffles into a permutation', () => {
    const order = Random.seeded(9).permutation(1000);
    expect([...order].sort((a, b) => a - b)).toEqual(Array.from({ length: 1000 }, (_, i) => i));
    expect([...order]).not.toEqual(Array.from({ length: 1000 }, (_, i) => i));
  });

  it('rejects a state that is not four uint32 values or is all zero', () => {
    expect(() => Random.fromState([1, 2, 3])).toThrow(/four unsigned/);
    expect(() => Random.fromState([0, 0, 0, 0])).toThrow(/not all zero/);
    expect(() => Random.fromState([1, 2, 3, 2 ** 32])).toThrow(/four unsigned/);
  });
});
