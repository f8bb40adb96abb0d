// `gan-dist bench memory`: does a long run grow? RSS of the coordinator and of each worker after
// a short and a long stretch of the tiny preset, and the coordinator's RSS with the full model set
// against the byte sum of what it must hold (master weights, two Adam states, gradient sums).

import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import v8 from 'node:v8';
import vm from 'node:vm';
import os from 'node:os';
import path from 'node:path';
import { pino } from 'pino';
import { resolveConfig } from '../protocol/config.ts';
import { Coordinator } from '../coordinator/coordinator.ts';
import { train } from '../coordinator/train/train.ts';
import { parameterTable, sizeOf } from '../protocol/model/architecture.ts';
import { modelConfigOf } from '../protocol/config.ts';
import type { BatchIterator } from '../data/batches.ts';

export interface MemoryReport {
  tiny: {
    workers: number;
    checkpoints: number[];
    /** RSS in MB at each checkpoint iteration. */
    coordinatorMB: number[];
    /** The coordinator's live JS heap after a full garbage collection: what it retains. */
    coordinatorHeapMB: number[];
    workersMB: number[][];
    coordinatorGrowthPct: number;
    coordinatorHeapGrowthPct: number;
    workerGrowthPct: number[];
  };
  full: {
    parameters: number;
    heldBytesMB: number;
    rssBeforeMB: number;
    rssAfterMB: number;
    rssDeltaMB: number;
    deltaVsHeld: number;
  };
}

const MB = 1024 * 1024;

/** A full collection, so a reading shows what is retained rather than what the GC has not reached yet. */
export function collectGarbage(): void {
  if (!global.gc) v8.setFlagsFromString('--expose-gc');
  const gc = global.gc ?? (vm.runInNewContext('gc') as () => void);
  gc();
}

/** RSS of a process from /proc (Linux); NaN elsewhere. */
export function rssOf(pid: number): number {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? (Number(m[1]) * 1024) / MB : NaN;
  } catch {
    return NaN;
  }
}

function childPids(): number[] {
  try {
    return readFileSync(`/proc/${process.pid}/task/${process.pid}/children`, 'utf8')
      .trim()
      .split(/\s+/)
      .filter(Boolean)
      .map(Number);
  } catch {
    return [];
  }
}

export async function benchMemory(opts: {
  short: number;
  long: number;
  workers: number;
  progress?: (s: string) => void;
}): Promise<MemoryReport> {
  const say = opts.progress ?? (() => {});
  const cwd = mkdtempSync(path.join(os.tmpdir(), 'gan-dist-mem-'));
  const checkpoints = [opts.short, opts.long];
  const coordinatorMB: number[] = [];
  const coordinatorHeapMB: number[] = [];
  const workersMB: number[][] = [];
  try {
    say(`tiny preset, ${opts.workers} workers, ${opts.long} iterations: RSS at ${checkpoints.join(' and ')}`);
    await train({
      config: resolveConfig({ preset: 'tiny', flags: { iterations: opts.long } }),
      data: 'synthetic',
      listen: '127.0.0.1:0',
      workers: opts.workers,
      backend: 'wasm',
      checkpointEvery: 0,
      keepCheckpoints: 1,
      runDir: path.join(cwd, 'run'),
      cwd,
      threadsPerWorker: 1,
      onCoordinator: (c) => {
        c.watchIterations((r) => {
          if (!checkpoints.includes(r.iteration)) return;
          collectGarbage();
          coordinatorMB.push(process.memoryUsage().rss / MB);
          coordinatorHeapMB.push(process.memoryUsage().heapUsed / MB);
          workersMB.push(childPids().map(rssOf));
          say(
            `  iteration ${r.iteration}: coordinator ${coordinatorMB.at(-1)!.toFixed(0)} MB (heap ${coordinatorHeapMB.at(-1)!.toFixed(1)} MB), workers ${workersMB
              .at(-1)!
              .map((x) => x.toFixed(0))
              .join(', ')} MB`,
          );
        });
      },
    });
    const growth = (a: number, b: number) => (100 * (b - a)) / a;

    // The full model: what the coordinator must hold, and what holding it costs.
    collectGarbage();
    const before = process.memoryUsage().rss / MB;
    const config = resolveConfig({});
    const specs = parameterTable(modelConfigOf(config));
    const params = specs.reduce((n, s) => n + sizeOf(s.shape), 0);
    const learn = specs.filter((s) => s.role === 'learnable').reduce((n, s) => n + sizeOf(s.shape), 0);
    const stub = {
      next: () => {
        throw new Error('not iterated');
      },
      state: () => ({}),
    } as unknown as BatchIterator;
    const c = new Coordinator({
      config,
      batches: stub,
      iterationsPerEpoch: 1,
      log: pino({ level: 'silent' }),
      token: 'x'.repeat(32),
      host: '127.0.0.1',
      port: 0,
      minWorkers: 1,
      checkpointEvery: 0,
      saveSnapshot: async () => '',
      writeSamples: async () => '',
    });
    // Fresh typed arrays are zero pages the OS has not committed yet: write every buffer once, as
    // the first iteration does, so RSS shows what a running coordinator holds.
    for (const a of [...Object.values(c.adamM), ...Object.values(c.adamV)]) a.fill(0);
    for (const a of Object.values(
      (c as unknown as { optimizer: { gradientSums: Record<string, Float32Array> } }).optimizer.gradientSums,
    ))
      a.fill(0);
    const after = process.memoryUsage().rss / MB;
    // Master weights (all parameters), Adam m and v, and the gradient sums (learnables).
    const held = (4 * (params + 3 * learn)) / MB;
    void c;
    return {
      tiny: {
        workers: opts.workers,
        checkpoints,
        coordinatorMB,
        coordinatorHeapMB,
        workersMB,
        coordinatorGrowthPct: growth(coordinatorMB[0], coordinatorMB[1]),
        coordinatorHeapGrowthPct: growth(coordinatorHeapMB[0], coordinatorHeapMB[1]),
        workerGrowthPct: workersMB[0].map((x, i) => growth(x, workersMB[1][i])),
      },
      full: {
        parameters: params,
        heldBytesMB: held,
        rssBeforeMB: before,
        rssAfterMB: after,
        rssDeltaMB: after - before,
        deltaVsHeld: (after - before) / held,
      },
    };
  } finally {
    rmSync(cwd, { recursive: true, force: true });
  }
}
