// How the coordinator runs one iteration's shards: cut the batch over the live workers, hand the
// shards out, and add each answer to the optimizer's sum in shard order as it arrives; under
// `--batchnorm sync`, the batch is cut again over the workers still live when one is lost mid-step.

import { BnBarriers } from './bn-barriers.ts';
import type { Dispatcher, RoundSync, ShardAnswer, ShardTask } from './dispatcher.ts';
import { shardTasks, shardWeights, type IterationInputs } from './iteration.ts';
import type { WorkerLinks } from './links.ts';
import type { CoordinatorOptions } from './options.ts';
import type { Optimizer } from './optimizer/optimizer.ts';
import type { GradientsMessage } from '../protocol/wire/protocol.ts';

export interface Gathered {
  answers: ShardAnswer[];
  /** Time the main thread spent adding answers to the sum. */
  reduceMs: number;
}

export interface GatherDeps {
  opts: Pick<CoordinatorOptions, 'config' | 'batchnorm' | 'shardsAt' | 'minWorkers' | 'balance'>;
  dispatcher: Dispatcher;
  links: WorkerLinks;
  optimizer: Optimizer;
  /** Barriers of one synced step (bn-sync.ts syncBarrierPlan's length). */
  barrierCount: number;
  /** Aborts the wait for workers (Stop). */
  signal: AbortSignal;
  /** Logged while a synced iteration waits for a worker to cut the batch again over. */
  waiting: (iteration: number) => void;
}

export class ShardGather {
  constructor(private readonly d: GatherDeps) {}

  /**
   * Runs the shards and adds each answer to the optimizer's sum in shard order (shard k waits for
   * the shards before it), so the reduction overlaps the other workers' transfers and its float
   * sums never depend on timing.
   */
  async gather(inputs: IterationInputs): Promise<Gathered> {
    const tasks = this.cut(inputs, 0);
    if (this.d.opts.batchnorm !== 'sync') return this.once(inputs.iteration, tasks, undefined);
    const barriers = new BnBarriers(
      inputs.iteration,
      tasks.map((t) => t.shardId),
    );
    const sync: RoundSync = { barriers, total: this.d.barrierCount };
    // Synced and a worker lost mid-step: the batch cut again over the workers still live.
    return this.d.dispatcher.resplitting(
      tasks,
      sync,
      (firstId) => this.cut(inputs, firstId),
      (t) => this.once(inputs.iteration, t, sync),
      this.d.signal,
      () => this.d.waiting(inputs.iteration),
    );
  }

  /**
   * The iteration's shards over the live workers. Shard mode: at least min-workers shards, so
   * that a lost worker's shard is recomputed whole by another and the split, hence the arithmetic,
   * stays as it was. Synced: one per live worker (each step waits on all the others at every
   * BatchNorm layer), and the split does not change the arithmetic.
   */
  private cut(inputs: IterationInputs, firstId: number): ShardTask[] {
    const { opts, dispatcher } = this.d;
    const live = [...dispatcher.workers.values()];
    const asked = opts.shardsAt?.(inputs.iteration);
    const count =
      opts.batchnorm === 'sync'
        ? Math.min(asked ?? live.length, live.length)
        : (asked ?? Math.max(opts.minWorkers, live.length));
    return shardTasks(opts.config, inputs, shardWeights(live, count, opts.balance), firstId);
  }

  private async once(iteration: number, tasks: ShardTask[], sync: RoundSync | undefined): Promise<Gathered> {
    const { links, optimizer, dispatcher } = this.d;
    links.newRound();
    optimizer.begin();
    const arrived: (GradientsMessage | undefined)[] = new Array(tasks.length);
    const first = tasks[0].shardId;
    let nextToAdd = 0;
    let reduceMs = 0;
    const answers = await dispatcher.run(
      iteration,
      tasks,
      ({ task, msg }) => {
        const r0 = performance.now();
        arrived[task.shardId - first] = msg;
        // Every shard now ready in order, added in one fused pass (several when results bunch up).
        const ready: { grads: Record<string, Float32Array>; n: number }[] = [];
        for (; nextToAdd < tasks.length && arrived[nextToAdd]; nextToAdd++)
          ready.push({ grads: arrived[nextToAdd]!.tensors, n: arrived[nextToAdd]!.n });
        optimizer.addMany(ready);
        reduceMs += performance.now() - r0;
      },
      sync,
    );
    return { answers, reduceMs };
  }
}
