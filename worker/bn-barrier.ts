// `--batchnorm sync` on a worker: how a step hands its part of each BatchNorm barrier over
// (protocol/wire/bn-sync.ts) and what it waits for.

import type { Tensor } from '@tensorflow/tfjs';
import type { BnBarrierPart, BnBarrierResult } from '../protocol/wire/bn-sync.ts';
import type { BnBarrierAsk } from './model.ts';
import { GanDistError } from '../protocol/errors.ts';
import type { BnPartMessage, BnResultMessage } from '../protocol/wire/protocol.ts';

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

/** A synced step given up by the coordinator (bnAbort): the worker sends nothing for it. */
export class ShardAborted extends Error {}

interface ShardBarriers {
  iteration: number;
  /** Results by barrier index; one may come before the step asks for it (a replacement replaying). */
  results: Map<number, BnBarrierResult>;
  waiter?: { index: number; resolve: (r: BnBarrierResult) => void; reject: (err: Error) => void };
  aborted: boolean;
}

/**
 * A worker session's side of the barriers: each shard's step hands its parts to `send` and waits
 * for the coordinator's bnResult; bnAbort fails the step waiting, or marks a shard still queued so
 * it is skipped. Results and aborts come straight from the socket, not behind the shard in the
 * session's one-message-at-a-time queue.
 */
export class BarrierExchange {
  private readonly shards = new Map<string, ShardBarriers>();

  constructor(private readonly send: (m: BnPartMessage) => void) {}

  private entry(iteration: number, shardId: number): ShardBarriers {
    const key = `${iteration}/${shardId}`;
    let e = this.shards.get(key);
    if (!e) {
      // What belongs to iterations two back is stale: a result or abort for a shard never run.
      for (const [k, old] of this.shards) if (old.iteration < iteration - 1) this.shards.delete(k);
      e = { iteration, results: new Map(), aborted: false };
      this.shards.set(key, e);
    }
    return e;
  }

  /** The barrier a shard's step waits on. */
  barrierFor(iteration: number, shardId: number): BnBarrier {
    const e = this.entry(iteration, shardId);
    return (at, part) => {
      if (e.aborted) return Promise.reject(new ShardAborted(`shard ${shardId} of iteration ${iteration} was given up`));
      const [a, b] = part.kind === 'moments' ? [part.mean, part.m2] : [part.sumDy, part.sumDyXhat];
      this.send({
        type: 'bnPart',
        iteration,
        shardId,
        barrier: at.index,
        key: at.key,
        kind: part.kind,
        count: part.count,
        tensors: { a, b },
        shapes: { a: [a.length], b: [b.length] },
      });
      const checked = (r: BnBarrierResult) => {
        if (r.a.length !== a.length)
          throw new GanDistError(
            'GAN_DIST_E_PROTOCOL',
            `bnResult for barrier ${at.index} (${at.key}) has ${r.a.length} channels, the layer ${a.length}`,
          );
        return r;
      };
      const early = e.results.get(at.index);
      if (early) return Promise.resolve(early).then(checked);
      return new Promise<BnBarrierResult>((resolve, reject) => {
        const settle = (r: BnBarrierResult) => {
          try {
            resolve(checked(r));
          } catch (err) {
            reject(err as Error);
          }
        };
        e.waiter = { index: at.index, resolve: settle, reject };
      });
    };
  }

  onResult(msg: BnResultMessage): void {
    const e = this.entry(msg.iteration, msg.shardId);
    const result = { count: msg.count, a: msg.tensors.a, b: msg.tensors.b };
    if (e.waiter?.index === msg.barrier) {
      const w = e.waiter;
      e.waiter = undefined;
      w.resolve(result);
    } else e.results.set(msg.barrier, result);
  }

  onAbort(iteration: number, shardId: number): void {
    const e = this.entry(iteration, shardId);
    e.aborted = true;
    const w = e.waiter;
    e.waiter = undefined;
    w?.reject(new ShardAborted(`shard ${shardId} of iteration ${iteration} was given up by the coordinator`));
  }

  isAborted(iteration: number, shardId: number): boolean {
    return this.shards.get(`${iteration}/${shardId}`)?.aborted ?? false;
  }

  /** The shard's step is over (answered or given up). */
  end(iteration: number, shardId: number): void {
    this.shards.delete(`${iteration}/${shardId}`);
  }

  /** The session ends: a step still waiting fails. */
  close(): void {
    for (const e of this.shards.values()) e.waiter?.reject(new ShardAborted('the session ended'));
    this.shards.clear();
  }
}
