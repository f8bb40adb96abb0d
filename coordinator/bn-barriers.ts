// `--batchnorm sync`: one iteration's BatchNorm barriers. Each shard sends its part of barrier 0,
// 1, ... of the step; once every shard's part of a barrier is in, its global result is fixed (on
// the coordinator combined in shard order, protocol/wire/bn-sync.ts; on a node, the node's part
// sent on to the coordinator and its answer awaited) and goes to each shard's current worker. A
// worker that replaces a lost one recomputes the same rows from barrier 0: for a barrier already
// closed it gets the fixed result at once (its part is not combined again), for an open one its
// part counts as the shard's, so no sum is ever counted twice or left out. A round re-split over
// fewer workers keeps the closed barriers' results: they are the whole batch's, however it is cut.

import { combineBnParts, type BnBarrierPart, type BnBarrierResult } from '../protocol/wire/bn-sync.ts';

/** What a barrier must look like for every shard: the first part fixes it. */
interface BarrierShape {
  key: string;
  kind: BnBarrierPart['kind'];
  channels: number;
}

interface Barrier extends BarrierShape {
  parts: Map<number, BnBarrierPart>;
  result?: BnBarrierResult;
  /** A node: the coordinator's answer, awaited. */
  pending?: Promise<BnBarrierResult>;
}

/** A result to send: to the worker that now computes `shardId`. */
export interface BnReply {
  shardId: number;
  barrier: number;
  result: BnBarrierResult;
}

/** Fixes barrier `index`'s result from every shard's part, in shard order. */
export type CloseBarrier = (
  index: number,
  key: string,
  parts: BnBarrierPart[],
) => BnBarrierResult | Promise<BnBarrierResult>;

const channelsOf = (p: BnBarrierPart) => (p.kind === 'moments' ? p.mean.length : p.sumDy.length);

export class BnBarriers {
  private readonly barriers: Barrier[] = [];
  private order: number[];

  /** `shardIds` in row order: the order parts are combined in. `close`: default, combined here. */
  constructor(
    readonly iteration: number,
    shardIds: readonly number[],
    private readonly close: CloseBarrier = (_i, _k, parts) => combineBnParts(parts),
  ) {
    this.order = [...shardIds];
  }

  /**
   * Takes `shardId`'s part of barrier `index` at layer `key`. Returns the replies to send: every
   * shard's when this part closes the barrier, this shard's alone when it was closed already,
   * none while it is open; a promise of them while the barrier's result is awaited (a node).
   * Throws (a protocol error for the sender) on a part that does not fit: an unknown shard, or a
   * layer, kind or width other than the barrier's.
   */
  contribute(shardId: number, index: number, key: string, part: BnBarrierPart): BnReply[] | Promise<BnReply[]> {
    if (!this.order.includes(shardId)) throw new Error(`bnPart for shard ${shardId}, not one of this iteration's`);
    const shape: BarrierShape = { key, kind: part.kind, channels: channelsOf(part) };
    let b = this.barriers[index];
    if (b === undefined) {
      if (index > this.barriers.length)
        throw new Error(`bnPart for barrier ${index} before barrier ${this.barriers.length}`);
      b = { ...shape, parts: new Map() };
      this.barriers[index] = b;
    } else if (b.key !== key || b.kind !== part.kind || b.channels !== shape.channels) {
      throw new Error(
        `bnPart for barrier ${index} is ${key} ${part.kind} x${shape.channels}; the barrier is ${b.key} ${b.kind} x${b.channels}`,
      );
    }
    const barrier = b;
    if (barrier.result) return [{ shardId, barrier: index, result: barrier.result }];
    if (barrier.pending) return barrier.pending.then((result) => [{ shardId, barrier: index, result }]);
    barrier.parts.set(shardId, part);
    if (barrier.parts.size < this.order.length) return [];
    const parts = this.order.map((id) => barrier.parts.get(id)!);
    barrier.parts.clear();
    const replies = (result: BnBarrierResult) => {
      barrier.result = result;
      barrier.pending = undefined;
      return this.order.map((id) => ({ shardId: id, barrier: index, result }));
    };
    const closed = this.close(index, key, parts);
    if (!(closed instanceof Promise)) return replies(closed);
    barrier.pending = closed;
    // Those in the order when the answer comes: after a re-split, the new shards'.
    return closed.then(replies);
  }

  /**
   * The round is cut again over `shardIds` (workers were lost and none could take their rows):
   * closed barriers keep their results, an open one's parts are dropped (the new shards send theirs).
   */
  resplit(shardIds: readonly number[]): void {
    this.order = [...shardIds];
    for (const b of this.barriers) b.parts.clear();
  }

  /** How many barriers have closed: a shard's step is past them all. */
  get closed(): number {
    return this.barriers.filter((b) => b.result).length;
  }
}
