import { describe, expect, it } from 'vitest';
import { BarrierExchange, ShardAborted } from '../../worker/bn-barrier.ts';
import type { BnPartMessage, BnResultMessage } from '../../protocol/wire/protocol.ts';
import type { BnBarrierPart } from '../../protocol/wire/bn-sync.ts';

const part: BnBarrierPart = {
  kind: 'gradSums',
  count: 8,
  sumDy: Float32Array.of(1, 2),
  sumDyXhat: Float32Array.of(3, 4),
};
const result = (iteration: number, shardId: number, barrier: number, channels = 2): BnResultMessage => ({
  type: 'bnResult',
  iteration,
  shardId,
  barrier,
  count: 16,
  tensors: { a: new Float32Array(channels).fill(barrier), b: new Float32Array(channels) },
  shapes: { a: [channels], b: [channels] },
});

describe("a worker's barrier exchange", () => {
  it('sends each part and resolves with its result, also one that came before the step asked', async () => {
    const sent: BnPartMessage[] = [];
    const x = new BarrierExchange((m) => sent.push(m));
    const barrier = x.barrierFor(3, 1);
    const first = barrier({ index: 0, key: 'G/bn1' }, part);
    x.onResult(result(3, 1, 0));
    expect((await first).a[0]).toBe(0);
    // A replacement replaying a closed barrier can be answered before it asks.
    x.onResult(result(3, 1, 1));
    expect((await barrier({ index: 1, key: 'G/bn2' }, part)).a[0]).toBe(1);
    expect(sent.map((m) => [m.iteration, m.shardId, m.barrier, m.key, m.kind, m.count])).toEqual([
      [3, 1, 0, 'G/bn1', 'gradSums', 8],
      [3, 1, 1, 'G/bn2', 'gradSums', 8],
    ]);
  });

  it('fails the waiting step on bnAbort, and a shard aborted before it began is skipped', async () => {
    const x = new BarrierExchange(() => {});
    const waiting = x.barrierFor(4, 0)({ index: 0, key: 'G/bn1' }, part);
    x.onAbort(4, 0);
    await expect(waiting).rejects.toThrow(ShardAborted);
    x.onAbort(4, 2);
    expect(x.isAborted(4, 2)).toBe(true);
    expect(x.isAborted(4, 3)).toBe(false);
    await expect(x.barrierFor(4, 2)({ index: 0, key: 'G/bn1' }, part)).rejects.toThrow(/given up/);
  });

  it('refuses a result whose width is not the layer’s', async () => {
    const x = new BarrierExchange(() => {});
    const waiting = x.barrierFor(5, 0)({ index: 0, key: 'G/bn1' }, part);
    x.onResult(result(5, 0, 0, 3));
    await expect(waiting).rejects.toThrow(/3 channels, the layer 2/);
  });
});
