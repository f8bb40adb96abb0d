// The coordinator's optimizer: sums the shards' weighted gradients, takes their mean and applies
// Adam, over flat state (weights, Adam's moments, gradient sums), on the main thread or on a
// piscina pool whose threads each own a contiguous slice of the flat learnable range. Every
// element goes through the same kernels (reduce.ts addScaled, adam.ts meanAdamStep) in the same
// order either way, so the threads change the time an iteration takes, never its floats.

import { availableParallelism } from 'node:os';
import { createRequire } from 'node:module';
import { pathToFileURL } from 'node:url';
import type { Worker } from 'node:worker_threads';
import { Piscina } from 'piscina';
import { meanAdamStep, type AdamHyper } from './adam.ts';
import { GanDistError } from '../../protocol/errors.ts';
import { FlatArrays, flatLayout } from './flat-arrays.ts';
import { addScaledMany } from './reduce.ts';
import { existingArena, simdArena } from '../../protocol/arena/simd.ts';
import type { NamedArrays, ParamSpec } from '../../protocol/model/architecture.ts';

/**
 * A Float32Array in shared memory, as a task carries it to a thread: in the SIMD arena (which the
 * threads adopt, so their kernels see it) or in a SharedArrayBuffer of its own.
 */
export interface SharedF32 {
  buffer: SharedArrayBuffer;
  byteOffset: number;
  length: number;
  inArena: boolean;
}

export function sharedF32(a: Float32Array): SharedF32 {
  if (!(a.buffer instanceof SharedArrayBuffer))
    throw new Error('optimizer state handed to a thread must be in shared memory');
  return {
    buffer: a.buffer,
    byteOffset: a.byteOffset,
    length: a.length,
    inArena: (existingArena()?.address(a) ?? -1) >= 0,
  };
}

/** Part of a gradient for a thread to add: `g` goes onto the flat sums from index `at`. */
export interface GradientPart {
  at: number;
  g: SharedF32;
}

/** A task for a pool thread; declared once, here, for both sides. Arrays are the flat state. */
export type OptimizerTask =
  | {
      kind: 'add';
      sum: SharedF32;
      shards: { parts: GradientPart[]; n: number }[];
      first: boolean;
      from: number;
      to: number;
    }
  | {
      kind: 'adam';
      w: SharedF32;
      sum: SharedF32;
      m: SharedF32;
      v: SharedF32;
      inv: number;
      t: number;
      hyper: AdamHyper;
      from: number;
      to: number;
    };

/**
 * Two threads where there are two cores. On the 2-core machine, full model, 4 workers' gradients
 * from shared memory, with the SIMD kernels: `gan-dist bench adam` measured 23-24 ms for a pool
 * of 2 against 33 ms on the main thread (1.34-1.41x, two runs); in `gan-dist bench scaling`
 * (S = 200 ms, 4 shm workers) the pool did a little better than the main thread, within the
 * run-to-run noise (308-335 against 329-342 ms an iteration). More threads than cores only
 * queue behind each other.
 */
export const DEFAULT_OPTIMIZER_THREADS = Math.min(2, availableParallelism());

/**
 * Below this many learnables the main thread does it all. Measured with the JavaScript kernels
 * before the SIMD ones (2 adds + step, medians of 35, load 8): main thread against a pool of 2, 0.24 against 0.74 ms at 2^14 learnables, 1.5
 * against 2.0 at 2^16, 6.1 against 6.3 at 2^18 (a tie), 35 against 22 at 2^20.
 */
export const MIN_PARALLEL_LEARNABLES = 1 << 18;

export interface OptimizerOptions {
  /** Pool threads; 1 runs everything on the main thread. Default DEFAULT_OPTIMIZER_THREADS. */
  threads?: number;
  /**
   * Who adds each arriving gradient that is not in the SIMD arena (one that came over a socket):
   * 'main' (default) adds it on the main thread as it arrives, while the others are still in
   * flight; 'threads' copies it into the arena and the threads add their slices of it. Gradients
   * read from shared memory are in the arena already: the threads add them in place, either way.
   * Measured with the JavaScript kernels, before the SIMD ones: with 2 free cores 'threads' was
   * faster when all gradients are in at once (1.54x against 1.34x the single thread) but left
   * more to do after the last one arrives (130 against 93 ms), and it was slower on a busy
   * machine and in `gan-dist bench scaling`; it also holds a copy per shard.
   */
  addOn?: 'main' | 'threads';
  /** Models with fewer learnables than this stay on the main thread (default MIN_PARALLEL_LEARNABLES). */
  minParallel?: number;
}

export function validateOptimizerThreads(threads: number, flag = '--adam-threads'): void {
  if (!Number.isInteger(threads) || threads < 1) {
    throw new GanDistError(
      'GAN_DIST_E_CONFIG',
      `${flag} must be a positive integer, got ${threads}`,
      `1 runs Adam on the main thread; default ${DEFAULT_OPTIMIZER_THREADS}`,
    );
  }
}

// tsx's loader, resolved from this package so the threads load TypeScript whatever the cwd is.
const TSX_LOADER = pathToFileURL(createRequire(import.meta.url).resolve('tsx')).href;

export class Optimizer {
  /** Every parameter (learnables, then BatchNorm running statistics in the flat vector), keys in table order. */
  readonly params: NamedArrays;
  readonly adamM: NamedArrays;
  readonly adamV: NamedArrays;
  /** Threads actually used: 1 when the model is small or one was asked for. */
  readonly threads: number;
  readonly addOn: 'main' | 'threads';
  /** Learnable elements: the range [0, learnables) of every flat state. */
  readonly learnables: number;
  private readonly w: FlatArrays;
  private readonly m: FlatArrays;
  private readonly v: FlatArrays;
  private readonly sums: FlatArrays;
  private readonly slices: [number, number][];
  private pool?: Piscina<OptimizerTask, void>;
  private closed = false;
  /** Shards added this iteration, and their rows. */
  private added = 0;
  private total = 0;
  /** 'threads' mode: one shared copy per shard of the iteration, reused across iterations. */
  private readonly slots: FlatArrays[] = [];
  /** 'threads' mode: per slice, the adds queued on it, in shard order. */
  private chains: Promise<unknown>[];

  constructor(
    specs: readonly ParamSpec[],
    init: { params: NamedArrays; adamM?: NamedArrays; adamV?: NamedArrays },
    opts: OptimizerOptions = {},
  ) {
    const threads = opts.threads ?? DEFAULT_OPTIMIZER_THREADS;
    validateOptimizerThreads(threads);
    const learn = specs.filter((s) => s.role === 'learnable');
    const layout = flatLayout([...learn, ...specs.filter((s) => s.role !== 'learnable')]);
    const learnLayout = flatLayout(learn);
    this.learnables = learnLayout.total;
    this.threads = this.learnables >= (opts.minParallel ?? MIN_PARALLEL_LEARNABLES) ? threads : 1;
    this.addOn = this.threads > 1 ? (opts.addOn ?? 'main') : 'main';
    // All state in the SIMD arena, where the wasm kernels add and step it (simd.ts); the arena is
    // shared memory, so the pool's threads work on it in place.
    // Learnables first: the same offsets in the weights as in the moments and the sums.
    this.w = new FlatArrays(
      layout,
      'arena',
      specs.map((s) => s.name),
    ).load(init.params, 'weights');
    this.m = new FlatArrays(learnLayout, 'arena');
    this.v = new FlatArrays(learnLayout, 'arena');
    if (init.adamM) this.m.load(init.adamM, 'Adam first moments');
    if (init.adamV) this.v.load(init.adamV, 'Adam second moments');
    // Gradients read from shared memory land in the arena too: the wasm add takes them in place.
    this.sums = new FlatArrays(learnLayout, 'arena');
    this.params = this.w.views;
    this.adamM = this.m.views;
    this.adamV = this.v.views;
    // Contiguous, equal slices; a slice may span tensors, as every element's update is its own.
    this.slices = Array.from({ length: this.threads }, (_, k) => [
      Math.floor((k * this.learnables) / this.threads),
      Math.floor(((k + 1) * this.learnables) / this.threads),
    ]);
    this.chains = this.slices.map(() => Promise.resolve());
  }

  /** The gradient sums' views (the memory benchmark commits them). */
  get gradientSums(): NamedArrays {
    return this.sums.views;
  }

  /** Starts the pool's threads now (they take a moment to load), so the first step does not wait for them. */
  prepare(): void {
    if (this.threads > 1) this.startPool();
  }

  /** Starts an iteration: the next add is the first. */
  begin(): void {
    this.added = 0;
    this.total = 0;
    // Adds of a failed iteration may still be running: later ones queue behind them.
    this.chains = this.chains.map((c) => c.catch(() => undefined));
  }

  /**
   * Adds n * g of one shard. Call in shard order: the sums, hence the run, then never depend on
   * which shard arrived first. `grads` may be views into a received frame: 'main' mode is done
   * with them on return; otherwise they must stay untouched until step() (a frame read from
   * shared memory is held that long), and copies are made of those outside the arena.
   */
  add(grads: Record<string, Float32Array>, n: number): void {
    this.addMany([{ grads, n }]);
  }

  /**
   * add() of several shards, in order: one fused pass over the sums per four shards in the
   * arena (the floats of one add per shard, with a third of the memory traffic).
   */
  addMany(shards: readonly { grads: Record<string, Float32Array>; n: number }[]): void {
    if (shards.length === 0) return;
    const first = this.added === 0;
    const layout = this.sums.layout;
    const arena = existingArena();
    // Gradients in the arena (read from shared memory) need no copy for the threads to add them.
    const inArena =
      arena !== undefined && shards.every(({ grads }) => layout.names.every((name) => arena.address(grads[name]) >= 0));
    const ns = shards.map((s) => s.n);
    if (this.threads === 1 || (this.addOn === 'main' && !inArena)) {
      for (const name of layout.names) {
        addScaledMany(
          this.sums.views[name],
          shards.map((s) => s.grads[name]),
          ns,
          first,
        );
      }
    } else {
      const tasks = shards.map(({ grads, n }, k) => {
        if (inArena)
          return { n, parts: layout.names.map((name, i) => ({ at: layout.offsets[i], g: sharedF32(grads[name]) })) };
        this.slots[this.added + k] ??= new FlatArrays(this.sums.layout, 'arena');
        const slot = this.slots[this.added + k].flat;
        for (const [i, name] of layout.names.entries()) slot.set(grads[name], layout.offsets[i]);
        return { n, parts: [{ at: 0, g: sharedF32(slot) }] };
      });
      const pool = this.startPool();
      const sum = sharedF32(this.sums.flat);
      this.chains = this.chains.map((c, j) => {
        const [from, to] = this.slices[j];
        return c.then(() => pool.run({ kind: 'add', sum, shards: tasks, first, from, to }));
      });
    }
    this.added += shards.length;
    this.total += ns.reduce((a, b) => a + b, 0);
  }

  /** The mean of the added gradients and Adam at step t (from 1), in one pass per slice. */
  async step(t: number, hyper: AdamHyper): Promise<void> {
    if (this.added === 0) throw new Error('optimizer step with no gradient added');
    const inv = 1 / this.total;
    if (this.threads === 1) {
      meanAdamStep(this.w.flat, this.sums.flat, inv, this.m.flat, this.v.flat, t, hyper, 0, this.learnables);
    } else {
      const pool = this.startPool();
      const task = {
        kind: 'adam' as const,
        w: sharedF32(this.w.flat),
        sum: sharedF32(this.sums.flat),
        m: sharedF32(this.m.flat),
        v: sharedF32(this.v.flat),
        inv,
        t,
        hyper,
      };
      // Each slice's Adam starts as soon as that slice's adds are done.
      const done = this.slices.map(([from, to], j) => this.chains[j].then(() => pool.run({ ...task, from, to })));
      this.chains = done;
      await Promise.all(done);
    }
    this.added = 0;
    this.total = 0;
  }

  /** Ends the pool's threads and frees the gradient sums; the weights and moments stay readable. */
  async close(): Promise<void> {
    this.closed = true;
    const pool = this.pool;
    this.pool = undefined;
    if (pool) {
      await Promise.allSettled(this.chains);
      await pool.destroy();
    }
    for (const a of [this.sums, ...this.slots]) a.release();
  }

  /**
   * close(), then hands the weights and moments back to the arena: for callers done with the
   * state (benchmarks and tests that make many optimizers). Their views must not be used after.
   */
  async dispose(): Promise<void> {
    await this.close();
    for (const a of [this.w, this.m, this.v]) a.release();
  }

  /** The pool's threads (none before the first parallel step); a test sees them exit on close(). */
  get poolThreads(): readonly Worker[] {
    return this.pool ? [...this.pool.threads] : [];
  }

  // Started at the first parallel step, so a coordinator that never steps starts no threads.
  private startPool(): Piscina<OptimizerTask, void> {
    if (this.closed) throw new Error('optimizer used after close()');
    this.pool ??= new Piscina<OptimizerTask, void>({
      filename: new URL('./optimizer-thread.ts', import.meta.url).href,
      execArgv: ['--import', TSX_LOADER],
      // The threads adopt this thread's arena, so their wasm kernels work on the same state.
      workerData: { arena: simdArena().memory },
      minThreads: this.threads,
      maxThreads: this.threads,
      // One task per thread at a time: a queued slice waits for a free thread, not behind another.
      concurrentTasksPerWorker: 1,
    });
    return this.pool;
  }
}
