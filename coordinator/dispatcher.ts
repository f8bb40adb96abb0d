// Hands one iteration's shards to the live workers and gathers their results. A worker that
// leaves mid-iteration gives its shard back to the queue, so another computes the same rows
// within the same iteration; a late answer to a closed iteration is stale and dropped.

import { GanDistError } from '../protocol/errors.ts';
import type { Peer } from './server.ts';
import {
  encodeMessage,
  type BnPartMessage,
  type GradientsMessage,
  type GradientsNonFiniteMessage,
} from '../protocol/wire/protocol.ts';
import type { BnBarrierPart } from '../protocol/wire/bn-sync.ts';
import type { BnBarriers, BnReply } from './bn-barriers.ts';

export interface WorkerSlot {
  peer: Peer;
  /** The weights version this worker holds. */
  weightsVersion: number;
  busy?: ShardTask;
  /** Last shard's compute time (ms), for the workers table. */
  lastComputeMs?: number;
  /** Measured throughput, rows per ms of compute (EMA); undefined until its first shard. */
  rowsPerMs?: number;
  shardsDone: number;
  /** Workers' worth of rows it takes: a node's local worker count (hello.capacity), else 1. */
  capacity: number;
}

/** A shard gets this long before its worker is declared lost, until step times are known. */
export const FIRST_DEADLINE_MS = 120_000;
/** Then: this many times the expected round trip for its rows, and never under MIN_DEADLINE_MS. */
export const DEADLINE_FACTOR = 5;
export const MIN_DEADLINE_MS = 5_000;

export interface ShardTask {
  shardId: number;
  rowStart: number;
  rowCount: number;
  frame: Buffer;
  done: boolean;
  /** Workers that returned a non-finite gradient for it: it is recomputed elsewhere once. */
  nonFiniteFrom: Set<number>;
  assignedAt?: number;
}

/** A shard's accepted answer: its gradients, who computed them and how long the round trip took. */
export interface ShardAnswer {
  task: ShardTask;
  msg: GradientsMessage;
  workerId: number;
  roundTripMs: number;
}

export interface Round {
  iteration: number;
  tasks: ShardTask[];
  queue: ShardTask[];
  results: ShardAnswer[];
  /** Called as each shard's result is accepted, so reduction overlaps the others' transfers. */
  onResult?: (r: ShardAnswer) => void;
  /** `--batchnorm sync`: the round's barriers, and how many a step has. */
  sync?: RoundSync;
  resolve: () => void;
  reject: (err: Error) => void;
}

export interface DispatcherHooks {
  /**
   * The frames of the current weights to send to THAT worker, and its version: encoded once per
   * version and per form a peer gets them in (a wire dtype, or a local transport's own frame).
   */
  weights(slot: WorkerSlot): { version: number; frames: Buffer[] };
  /** Checks a gradients message against the parameter table; a string is the reason it is bad. */
  validate(msg: GradientsMessage): string | undefined;
  event(name: string, fields: Record<string, unknown>, level?: 'info' | 'warn' | 'error'): void;
}

/** `--batchnorm sync`: the barrier table of a round and the number of barriers in one step. */
export interface RoundSync {
  barriers: BnBarriers;
  total: number;
}

/** The iteration in progress was given up: none of its results were applied. */
export class RoundAbandoned extends Error {}

/**
 * `--batchnorm sync`: a worker was lost while the others waited at a barrier for its part, and no
 * worker was free to recompute its rows. Every step of the round was given up (bnAbort) and no
 * result was taken: the caller cuts the batch again over the workers still live.
 */
export class RoundResplit extends Error {}

export class Dispatcher {
  readonly workers = new Map<number, WorkerSlot>();
  private round?: Round;
  private waiters: (() => void)[] = [];
  /** Round trip per row (ms, EMA) over all workers: the basis of the adaptive step deadline. */
  private msPerRow?: number;
  private watchdog?: NodeJS.Timeout;

  constructor(private readonly hooks: DispatcherHooks) {}

  get liveCount(): number {
    return this.workers.size;
  }

  add(peer: Peer): void {
    this.workers.set(peer.id, { peer, weightsVersion: -1, shardsDone: 0, capacity: peer.hello.capacity ?? 1 });
    for (const w of this.waiters.splice(0)) w();
    this.pump();
  }

  /** The worker's next task comes with the current weights again (it now gets them another way). */
  resendWeights(peerId: number): void {
    const slot = this.workers.get(peerId);
    if (slot) slot.weightsVersion = -1;
  }

  remove(peerId: number, reason: string): void {
    const slot = this.workers.get(peerId);
    if (!slot) return;
    this.workers.delete(peerId);
    const task = slot.busy;
    if (task && !task.done && this.round?.tasks.includes(task)) {
      this.round.queue.unshift(task);
      this.hooks.event('shard-reassigned', {
        iteration: this.round.iteration,
        shardId: task.shardId,
        fromWorker: peerId,
        reason,
      });
      if (this.workers.size === 0) this.hooks.event('waiting-for-workers', { iteration: this.round.iteration }, 'warn');
    }
    this.pump();
    this.resplitIfStuck(reason);
  }

  /**
   * Synced, a shard left in the queue blocks every other step at its next open barrier: unless
   * all barriers are closed (a worker that finishes its own step then takes it), the round is
   * given up and cut again (RoundResplit).
   */
  private resplitIfStuck(reason: string): void {
    const round = this.round;
    if (!round?.sync || round.queue.length === 0 || round.sync.barriers.closed >= round.sync.total) return;
    const lost = round.queue.map((t) => t.shardId);
    this.hooks.event('round-resplit', { iteration: round.iteration, shards: lost, reason }, 'warn');
    this.abandonRound(
      round,
      new RoundResplit(`iteration ${round.iteration}: shards ${lost.join(', ')} lost mid-step (${reason})`),
    );
  }

  /**
   * A shard's part of a BatchNorm barrier. False when it is stale (not the shard that worker
   * holds now); a part that does not fit the barrier costs the worker its connection.
   */
  onBnPart(peer: Peer, msg: BnPartMessage): boolean {
    const round = this.round;
    const slot = this.workers.get(peer.id);
    const task = slot?.busy;
    if (!round?.sync || msg.iteration !== round.iteration || task?.shardId !== msg.shardId || task.done) return false;
    const { a, b } = msg.tensors;
    const part: BnBarrierPart =
      msg.kind === 'moments'
        ? { kind: 'moments', count: msg.count, mean: a, m2: b }
        : { kind: 'gradSums', count: msg.count, sumDy: a, sumDyXhat: b };
    let replies: BnReply[] | Promise<BnReply[]>;
    try {
      replies = round.sync.barriers.contribute(msg.shardId, msg.barrier, msg.key, part);
    } catch (err) {
      peer.close(`bad bnPart: ${(err as Error).message}`);
      return true;
    }
    if (Array.isArray(replies)) this.sendResults(round, replies);
    else
      replies.then(
        (r) => this.sendResults(round, r),
        // A node's upstream barrier failed (the coordinator gave the step up): so is this round.
        (err: Error) => this.abandonRound(round, err),
      );
    return true;
  }

  private sendResults(round: Round, replies: BnReply[]): void {
    if (this.round !== round) return;
    for (const { shardId, barrier, result } of replies) {
      // To the worker computing that shard now; a shard in the queue replays from barrier 0.
      const slot = [...this.workers.values()].find((s) => s.busy?.shardId === shardId && round.tasks.includes(s.busy));
      slot?.peer.send(
        encodeMessage({
          type: 'bnResult',
          iteration: round.iteration,
          shardId,
          barrier,
          count: result.count,
          tensors: { a: result.a, b: result.b },
          shapes: { a: [result.a.length], b: [result.b.length] },
        }),
      );
    }
  }

  /** Gives the round up with `err`, telling every worker in it to drop its step (a node's sub-round). */
  abandonRound(round: Round, err: Error): void {
    if (this.round !== round) return;
    this.round = undefined;
    for (const slot of this.workers.values()) {
      const task = slot.busy;
      if (!task || !round.tasks.includes(task)) continue;
      if (round.sync) slot.peer.send({ type: 'bnAbort', iteration: round.iteration, shardId: task.shardId });
      slot.busy = undefined;
      slot.peer.setComputing(false);
    }
    round.reject(err);
  }

  /** Resolves once at least `n` workers are in. */
  async waitForWorkers(n: number, signal?: AbortSignal): Promise<void> {
    while (this.workers.size < n) {
      if (signal?.aborted) throw new GanDistError('GAN_DIST_E_WORKER', 'stopped while waiting for workers');
      await new Promise<void>((resolve) => {
        this.waiters.push(resolve);
        signal?.addEventListener('abort', () => resolve(), { once: true });
      });
    }
  }

  /** Gives up the iteration in progress (Stop with no live worker to finish it): run() rejects with RoundAbandoned. */
  abandon(reason: string): void {
    const round = this.round;
    if (!round) return;
    this.round = undefined;
    round.reject(new RoundAbandoned(`iteration ${round.iteration} abandoned: ${reason}`));
  }

  /** Runs one iteration's shards to completion on whichever workers are live. */
  run(
    iteration: number,
    tasks: ShardTask[],
    onResult?: (r: ShardAnswer) => void,
    sync?: RoundSync,
  ): Promise<ShardAnswer[]> {
    return new Promise((resolve, reject) => {
      const round: Round = {
        iteration,
        tasks,
        queue: [...tasks],
        results: [],
        onResult,
        sync,
        resolve: () => resolve(round.results),
        reject,
      };
      this.round = round;
      this.startWatchdog();
      this.pump();
      // Synced, every shard needs a worker of its own from the start.
      if (sync && round.queue.length > 0) this.resplitIfStuck('fewer workers than shards');
    });
  }

  /**
   * A synced round, `attempt`ed on `first` and, each time it is re-split (RoundResplit: a worker
   * lost mid-step), on `cut(firstId)` over the workers then live, once one is (`onWait` says it
   * waits); the barriers keep their closed results. The coordinator's gather and a node's step.
   */
  async resplitting<T>(
    first: ShardTask[],
    sync: RoundSync,
    cut: (firstId: number) => ShardTask[],
    attempt: (tasks: ShardTask[]) => Promise<T>,
    signal: AbortSignal,
    onWait?: () => void,
  ): Promise<T> {
    let tasks = first;
    for (;;) {
      try {
        return await attempt(tasks);
      } catch (err) {
        if (!(err instanceof RoundResplit)) throw err;
        if (this.liveCount === 0) {
          onWait?.();
          await this.waitForWorkers(1, signal);
        }
        tasks = cut(tasks[tasks.length - 1].shardId + 1);
        sync.barriers.resplit(tasks.map((t) => t.shardId));
      }
    }
  }

  /** The time a shard of `rows` may take before its worker is dropped and the shard moves on. */
  deadlineMs(rows: number): number {
    if (this.msPerRow === undefined) return FIRST_DEADLINE_MS;
    return Math.max(MIN_DEADLINE_MS, DEADLINE_FACTOR * this.msPerRow * rows);
  }

  private startWatchdog(): void {
    if (this.watchdog) return;
    this.watchdog = setInterval(() => {
      if (!this.round) return;
      const now = performance.now();
      for (const slot of [...this.workers.values()]) {
        const task = slot.busy;
        if (!task || task.assignedAt === undefined) continue;
        const limit = this.deadlineMs(task.rowCount);
        if (now - task.assignedAt > limit) {
          slot.peer.close(
            `missed the step deadline: shard ${task.shardId} of iteration ${this.round.iteration} took over ${Math.round(limit)} ms`,
          );
        }
      }
    }, 500);
    this.watchdog.unref();
  }

  stop(): void {
    clearInterval(this.watchdog);
    this.watchdog = undefined;
  }

  /** Gives every idle worker a queued shard, preceded by the current weights when it lacks them. */
  private pump(): void {
    const round = this.round;
    if (!round) return;
    for (const slot of this.workers.values()) {
      if (slot.busy || round.queue.length === 0) continue;
      // A shard that gave this worker a non-finite gradient goes to another one if there is one.
      let idx = round.queue.findIndex((t) => !t.nonFiniteFrom.has(slot.peer.id));
      if (idx < 0) idx = this.workers.size === 1 ? 0 : -1;
      if (idx < 0) continue;
      const [task] = round.queue.splice(idx, 1);
      this.syncWeights(slot);
      slot.busy = task;
      task.assignedAt = performance.now();
      slot.peer.setComputing(true);
      slot.peer.send(task.frame);
    }
  }

  /** A worker's result; false when it was stale (not the shard that worker holds now) and dropped. */
  onGradients(peer: Peer, msg: GradientsMessage | GradientsNonFiniteMessage): boolean {
    const round = this.round;
    const slot = this.workers.get(peer.id);
    const task = round?.tasks.find((t) => t.shardId === msg.shardId);
    if (!round || !slot || msg.iteration !== round.iteration || !task || task.done || slot.busy !== task) {
      this.hooks.event('stale-result', { worker: peer.id, iteration: msg.iteration, shardId: msg.shardId }, 'info');
      return false;
    }
    this.take(peer, slot, round, task, msg);
    return true;
  }

  private take(
    peer: Peer,
    slot: WorkerSlot,
    round: Round,
    task: ShardTask,
    msg: GradientsMessage | GradientsNonFiniteMessage,
  ): void {
    if (msg.n !== task.rowCount) {
      peer.close(`returned n=${msg.n} for a shard of ${task.rowCount} rows`);
      return;
    }
    slot.busy = undefined;
    peer.setComputing(false);
    if (msg.type === 'gradientsNonFinite') {
      task.nonFiniteFrom.add(peer.id);
      if (task.nonFiniteFrom.size >= 2 || this.workers.size === 1) {
        const err = new GanDistError(
          'GAN_DIST_E_DIVERGED',
          `training diverged at iteration ${round.iteration}: shard ${task.shardId} gave non-finite gradients (${msg.tensorNames.slice(0, 3).join(', ')}) on ${task.nonFiniteFrom.size} worker(s)`,
          'resume from the last checkpoint with a lower --lr, or check the data',
        );
        this.round = undefined;
        round.reject(err);
        return;
      }
      this.hooks.event(
        'shard-nonfinite',
        { iteration: round.iteration, shardId: task.shardId, worker: peer.id },
        'warn',
      );
      round.queue.unshift(task);
      this.pump();
      return;
    }
    const bad = this.hooks.validate(msg);
    if (bad) {
      round.queue.unshift(task);
      peer.close(`bad gradients: ${bad}`);
      return;
    }
    task.done = true;
    slot.shardsDone++;
    slot.lastComputeMs = msg.timings.computeMs;
    const roundTripMs = performance.now() - (task.assignedAt ?? 0);
    const ema = (old: number | undefined, x: number) => (old === undefined ? x : 0.7 * old + 0.3 * x);
    this.msPerRow = ema(this.msPerRow, roundTripMs / task.rowCount);
    slot.rowsPerMs = ema(slot.rowsPerMs, task.rowCount / Math.max(1, msg.timings.computeMs));
    const result = { task, msg, workerId: peer.id, roundTripMs };
    round.results.push(result);
    // Hand out the next shard before reducing this one: the worker computes while we add.
    if (round.results.length !== round.tasks.length) this.pump();
    round.onResult?.(result);
    if (round.results.length === round.tasks.length) {
      this.round = undefined;
      round.resolve();
    }
  }

  /** Any idle worker, for a sample request. */
  idleWorker(): WorkerSlot | undefined {
    for (const slot of this.workers.values()) if (!slot.busy) return slot;
    return undefined;
  }

  /** Sends the current weights to `slot` if it lacks them. */
  syncWeights(slot: WorkerSlot): void {
    const { version, frames } = this.hooks.weights(slot);
    if (slot.weightsVersion !== version) {
      for (const frame of frames) slot.peer.send(frame);
      slot.weightsVersion = version;
    }
  }
}
