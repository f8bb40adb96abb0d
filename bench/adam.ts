// `gan-dist bench adam`: the coordinator's reduction of N workers' gradients plus Adam on the full
// model: plain JavaScript outside the SIMD arena (the accumulator and per-tensor adamStep), the
// optimizer on the main thread with gradients in the arena (as shared memory delivers them) and
// outside it (as the socket does), and the optimizer's piscina pool, with the memory bandwidth of
// a plain copy measured in the same run as the yardstick.

import { loadavg } from 'node:os';
import { Worker } from 'node:worker_threads';
import { ADAM_EPSILON, adamStep } from '../coordinator/optimizer/adam.ts';
import { modelConfigOf, resolveConfig } from '../protocol/config.ts';
import { FlatArrays, flatLayout } from '../coordinator/optimizer/flat-arrays.ts';
import { Optimizer } from '../coordinator/optimizer/optimizer.ts';
import { GradientAccumulator } from '../coordinator/optimizer/reduce.ts';
import { initialParams, parameterTable, sizeOf, type NamedArrays } from '../protocol/model/architecture.ts';
import { median } from './util.ts';

export interface AdamBenchOptions {
  /** Thread counts of the pooled runs (1 is the fused single-threaded run). */
  threads: number[];
  /** Workers whose gradients are reduced each iteration. */
  workers: number;
  /** Timed iterations per variant (after one untimed). */
  reps: number;
  progress?: (line: string) => void;
}

export interface AdamBenchRow {
  variant: string;
  threads: number;
  addOn: 'main' | 'threads';
  /** Median ms of one iteration: N adds + mean + Adam. */
  ms: number;
  /** The fastest iteration: the least disturbed by other processes on a shared machine. */
  bestMs: number;
  /**
   * Median CPU time of the whole process per iteration (all threads): what a busy machine
   * inflates least. cpuMs / threads is the wall time the threads would take on idle cores.
   */
  cpuMs: number;
  /** Median ms from the last worker's gradient being handed over to Adam's end: what the iteration waits for once the last result is in. */
  tailMs: number;
  /** Bytes read and written by the computation per ms, as GB/s. */
  gbps: number;
  /** ms of the single-threaded baseline / ms of this row. */
  speedup: number;
  /** gbps / the copy's GB/s. */
  ofMemcpy: number;
}

export interface AdamBenchReport {
  parameters: number;
  learnables: number;
  workers: number;
  reps: number;
  /** Bytes read + written per iteration: N gradients read, the sums written and read N times, weights and both moments read and written. */
  bytesPerIteration: number;
  memcpy: { bufferCopyGBps: number; typedArraySetGBps: number };
  rows: AdamBenchRow[];
  /** A pure compute loop on 1 thread, then split over 2: what parallelism the machine gives right now. */
  probe: { oneThreadMs: number; twoThreadsMs: number; speedup: number };
  loadavg: number[];
}

/** The same arithmetic loop on one worker thread, then halved over two, best of 3. */
async function probeParallelism(): Promise<AdamBenchReport['probe']> {
  const code = `const { parentPort } = require('node:worker_threads');
parentPort.on('message', (n) => { let x = 0; for (let i = 0; i < n; i++) x += Math.sqrt(i) / (i + 1.5); parentPort.postMessage(x); });`;
  const threads = [new Worker(code, { eval: true }), new Worker(code, { eval: true })];
  const run = (w: Worker, n: number) =>
    new Promise((resolve) => {
      w.once('message', resolve);
      w.postMessage(n);
    });
  try {
    const n = 5e7;
    await Promise.all(threads.map((w) => run(w, 1e6)));
    let one = Infinity;
    let two = Infinity;
    for (let r = 0; r < 3; r++) {
      let t0 = performance.now();
      await run(threads[0], n);
      one = Math.min(one, performance.now() - t0);
      t0 = performance.now();
      await Promise.all(threads.map((w) => run(w, n / 2)));
      two = Math.min(two, performance.now() - t0);
    }
    return { oneThreadMs: one, twoThreadsMs: two, speedup: one / two };
  } finally {
    await Promise.all(threads.map((w) => w.terminate()));
  }
}

/** Gradient tensors as a worker's frame delivers them: views into one ordinary buffer each. */
function fakeGradients(specs: { name: string; shape: number[] }[], seed: number): NamedArrays {
  const total = specs.reduce((n, s) => n + sizeOf(s.shape), 0);
  const flat = new Float32Array(total);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < total; i++) {
    // xorshift32: cheap, and values of every sign and a spread of magnitudes.
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    flat[i] = ((x >>> 0) / 2 ** 32 - 0.5) * 1e-2;
  }
  const out: NamedArrays = {};
  let off = 0;
  for (const s of specs) {
    out[s.name] = flat.subarray(off, off + sizeOf(s.shape));
    off += sizeOf(s.shape);
  }
  return out;
}

export async function benchAdam(opts: AdamBenchOptions): Promise<AdamBenchReport> {
  const config = resolveConfig({});
  const specs = parameterTable(modelConfigOf(config));
  const learn = specs.filter((s) => s.role === 'learnable');
  const L = learn.reduce((n, s) => n + sizeOf(s.shape), 0);
  const N = opts.workers;
  const rows = Array.from(
    { length: N },
    (_, k) => Math.floor(((k + 1) * config.batchSize) / N) - Math.floor((k * config.batchSize) / N),
  );
  const grads = rows.map((_, k) => fakeGradients(learn, 1 + k));
  const params = initialParams(specs, config.seed);
  const hyper = { lr: config.lr, beta1: config.beta1, beta2: config.beta2, epsilon: ADAM_EPSILON };
  const bytes = 4 * L * (N + 2 * N + 6);
  const say = opts.progress ?? (() => undefined);

  type Timed = { ms: number; tailMs: number; cpuMs: number };
  type Variant = {
    variant: string;
    threads: number;
    addOn: 'main' | 'threads';
    iteration: (t: number) => Promise<Timed>;
    close: () => Promise<void>;
    times: Timed[];
  };
  const variants: Variant[] = [];

  // Gradients where the shm transport reads them: in the arena, where the wasm kernels take them.
  const inArena = grads.map((g) => new FlatArrays(flatLayout(learn), 'arena').load(g, 'gradients'));

  // Plain JavaScript on arrays outside the arena: zeroed accumulator, N adds, mean pass, adamStep per tensor.
  {
    const w: NamedArrays = Object.fromEntries(Object.entries(params).map(([k, v]) => [k, v.slice()]));
    const m: NamedArrays = Object.fromEntries(learn.map((s) => [s.name, new Float32Array(sizeOf(s.shape))]));
    const v: NamedArrays = Object.fromEntries(learn.map((s) => [s.name, new Float32Array(sizeOf(s.shape))]));
    const acc = new GradientAccumulator(learn);
    variants.push({
      variant: 'plain JavaScript',
      threads: 1,
      addOn: 'main',
      times: [],
      close: async () => undefined,
      iteration: async (t) => {
        const t0 = performance.now();
        acc.reset();
        for (let k = 0; k < N - 1; k++) acc.add(grads[k], rows[k]);
        const tLast = performance.now();
        acc.add(grads[N - 1], rows[N - 1]);
        const g = acc.mean();
        for (const s of learn) adamStep(w[s.name], g[s.name], m[s.name], v[s.name], t, hyper);
        const t1 = performance.now();
        return { ms: t1 - t0, tailMs: t1 - tLast, cpuMs: 0 };
      },
    });
  }
  const runs: { threads: number; addOn: 'main' | 'threads'; arena: boolean }[] = [];
  for (const threads of opts.threads) {
    if (threads === 1) runs.push({ threads, addOn: 'main', arena: false });
    for (const addOn of threads > 1 ? (['main', 'threads'] as const) : (['main'] as const))
      runs.push({ threads, addOn, arena: true });
  }
  for (const { threads, addOn, arena } of runs) {
    {
      const opt = new Optimizer(specs, { params }, { threads, addOn });
      const g = arena ? inArena.map((f) => f.views) : grads;
      const where = arena ? 'shm gradients' : 'socket gradients';
      variants.push({
        variant:
          threads === 1
            ? `main thread, ${where}`
            : `pool of ${threads}, ${addOn === 'main' ? 'main adds' : 'threads add'}`,
        threads,
        addOn,
        times: [],
        close: () => opt.dispose(),
        iteration: async (t) => {
          const t0 = performance.now();
          opt.begin();
          for (let k = 0; k < N - 1; k++) opt.add(g[k], rows[k]);
          const tLast = performance.now();
          opt.add(g[N - 1], rows[N - 1]);
          await opt.step(t, hyper);
          const t1 = performance.now();
          return { ms: t1 - t0, tailMs: t1 - tLast, cpuMs: 0 };
        },
      });
    }
  }

  // A plain copy of half the bytes (it reads and writes each): the machine's memory speed, now.
  const half = Math.round(bytes / 2 / 4) * 4;
  const src = Buffer.alloc(half, 1);
  const dst = Buffer.alloc(half, 2);
  const fa = new Float32Array(src.buffer, src.byteOffset, half / 4);
  const fb = new Float32Array(dst.buffer, dst.byteOffset, half / 4);
  const copies = { bufferCopy: [] as number[], typedArraySet: [] as number[] };
  const timeCopy = (fn: () => void) => {
    const t0 = performance.now();
    fn();
    return performance.now() - t0;
  };
  let memcpy: AdamBenchReport['memcpy'];
  try {
    say(`untimed round: JIT, page commits, the pools' threads ...`);
    src.copy(dst);
    fb.set(fa);
    for (const v of variants) await v.iteration(1);
    // Round robin, one iteration of each variant per round: a load that comes and goes on a
    // shared machine then weighs on every variant alike.
    for (let r = 0; r < opts.reps; r++) {
      say(`round ${r + 1}/${opts.reps}`);
      copies.bufferCopy.push(timeCopy(() => src.copy(dst)));
      copies.typedArraySet.push(timeCopy(() => fb.set(fa)));
      for (const v of variants) {
        const c0 = process.cpuUsage();
        const timed = await v.iteration(r + 2);
        const c = process.cpuUsage(c0);
        v.times.push({ ...timed, cpuMs: (c.user + c.system) / 1000 });
      }
    }
    memcpy = {
      bufferCopyGBps: (2 * half) / (median(copies.bufferCopy) * 1e6),
      typedArraySetGBps: (2 * half) / (median(copies.typedArraySet) * 1e6),
    };
  } finally {
    for (const v of variants) await v.close();
    for (const f of inArena) f.release();
  }
  const copyGBps = Math.max(memcpy.bufferCopyGBps, memcpy.typedArraySetGBps);
  const out = variants;
  say('parallelism probe ...');
  const probe = await probeParallelism();

  const baseMs = median(out[0].times.map((x) => x.ms));
  return {
    parameters: specs.reduce((n, s) => n + sizeOf(s.shape), 0),
    learnables: L,
    workers: N,
    reps: opts.reps,
    bytesPerIteration: bytes,
    memcpy,
    rows: out.map((o) => {
      const ms = median(o.times.map((x) => x.ms));
      const gbps = bytes / (ms * 1e6);
      return {
        variant: o.variant,
        threads: o.threads,
        addOn: o.addOn,
        ms,
        bestMs: Math.min(...o.times.map((x) => x.ms)),
        cpuMs: median(o.times.map((x) => x.cpuMs)),
        tailMs: median(o.times.map((x) => x.tailMs)),
        gbps,
        speedup: baseMs / ms,
        ofMemcpy: gbps / copyGBps,
      };
    }),
    probe,
    loadavg: loadavg(),
  };
}

export function formatAdamBench(r: AdamBenchReport): string {
  const lines = [
    `reduction of ${r.workers} ${r.workers === 1 ? "worker's" : "workers'"} gradients + Adam, full model: ${r.parameters.toLocaleString('en-US')} parameters (${r.learnables.toLocaleString('en-US')} learnable), median of ${r.reps}`,
    `memcpy of the same run (read + write bytes): Buffer.copy ${r.memcpy.bufferCopyGBps.toFixed(1)} GB/s, TypedArray.set ${r.memcpy.typedArraySetGBps.toFixed(1)} GB/s; ` +
      `an iteration reads and writes ${(r.bytesPerIteration / 1e6).toFixed(0)} MB`,
    `the machine, now: a compute loop split over 2 threads ran x${r.probe.speedup.toFixed(2)} as fast as on 1 (the ceiling of a pool of 2)`,
    '',
    `${'variant'.padEnd(34)} ${'ms'.padStart(8)} ${'best'.padStart(7)} ${'cpu ms'.padStart(7)} ${'after last'.padStart(11)} ${'GB/s'.padStart(7)} ${'x JS'.padStart(9)} ${'of memcpy'.padStart(10)}`,
  ];
  for (const row of r.rows) {
    lines.push(
      `${row.variant.padEnd(34)} ${row.ms.toFixed(1).padStart(8)} ${row.bestMs.toFixed(1).padStart(7)} ${row.cpuMs.toFixed(1).padStart(7)} ${row.tailMs.toFixed(1).padStart(11)} ${row.gbps.toFixed(1).padStart(7)} ${row.speedup.toFixed(2).padStart(9)} ${(row.ofMemcpy * 100).toFixed(0).padStart(9)}%`,
    );
  }
  lines.push(
    '',
    `ms, GB/s and ratios from medians; "best": the fastest repetition; "cpu ms": CPU time of all the process's threads. "after last": from the last worker's gradient to Adam's end, what an iteration waits for once every result is in. Load average ${r.loadavg.map((x) => x.toFixed(2)).join(' ')}.`,
  );
  return lines.join('\n');
}
