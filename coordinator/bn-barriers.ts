// `--batchnorm sync` on the coordinator: one iteration's BatchNorm barriers. Each shard sends its
// part of barrier 0, 1, ... of the step; once every shard's part of a barrier is in, its global
// result (protocol/wire/bn-sync.ts, combined in shard order) is fixed and goes to each shard's
// current worker. A worker that replaces a lost one recomputes the same rows from barrier 0: for a
// barrier already closed it gets the fixed result at once (its part is not combined again), for an
// open one its part counts as the shard's, so no sum is ever counted twice or left out.

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
}

/** A result to send: to the worker that now computes `shardId`. */
export interface BnReply {
  shardId: number;
  barrier: number;
  result: BnBarrierResult;
}

const channelsOf = (p: BnBarrierPart) => (p.kind === 'moments' ? p.mean.length : p.sumDy.length);

export class BnBarriers {
  private readonly barriers: Barrier[] = [];
  private readonly order: number[];

  /** `shardIds` in row order: the order parts are combined in. */
  constructor(
    readonly iteration: number,
    shardIds: readonly number[],
  ) {
    this.order = [...shardIds];
  }

  /**
   * Takes `shardId`'s part of barrier `index` at layer `key`. Returns the replies to send now:
   * every shard's when this part closes the barrier, this shard's alone when it was closed
   * already, none while it is open. Throws (a protocol error for the sender) on a part that
   * does not fit: an unknown shard, or a layer, kind or width other than the barrier's.
   */
  contribute(shardId: number, index: number, key: string, part: BnBarrierPart): BnReply[] {
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
    if (b.result) return [{ shardId, barrier: index, result: b.result }];
    b.parts.set(shardId, part);
    if (b.parts.size < this.order.length) return [];
    b.result = combineBnParts(this.order.map((id) => b.parts.get(id)!));
    b.parts.clear();
    return this.order.map((id) => ({ shardId: id, barrier: index, result: b.result! }));
  }

  /** How many barriers have closed: a shard's step is past them all. */
  get closed(): number {
    return this.barriers.filter((b) => b.result).length;
  }
}
