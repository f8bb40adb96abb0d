import { describe, expect, it } from 'vitest';
import { benchScaling, interleavedRuns } from '../../bench/scaling.ts';
import { formatScaling, type SimulatedRun } from '../../bench/scaling-report.ts';
import { medianRound } from '../../bench/scaling-simulated.ts';

/** Iteration lines of an interleaved run whose iterations alternate 1 and 2 workers: [1-worker ms, 2-worker ms] per cycle. */
const linesOf = (cycles: [number, number][]) =>
  cycles.flatMap(([one, two], c) => [
    { iteration: 2 * c + 1, stepMs: one },
    { iteration: 2 * c + 2, stepMs: two },
  ]);

describe('bench scaling, interleaved real part', () => {
  it("pairs each cycle's iterations, leaves out two warm-up cycles, and takes the median of the pairs' ratios", () => {
    // Warm-up cycles 0-1 would say 10x; the host slows down 2x in cycle 3 for both counts alike.
    const lines = linesOf([
      [9000, 900],
      [9000, 900],
      [1000, 500],
      [2000, 1000],
      [1000, 600],
      [1100, 550],
    ]);
    const [one, two] = interleavedRuns(lines, [1, 2], 64, 'shm');
    expect(two.speedupByCycle).toEqual([2, 2, 1000 / 600, 2]);
    expect(two.speedupVsFirst).toBe(2);
    expect(one.speedupByCycle).toEqual([1, 1, 1, 1]);
    expect(two.iterations).toBe(4);
    expect(two.stepMsMedian).toBe((550 + 600) / 2);
    // The median of the per-iteration rates (64, 32, 64, 58.2 img/s).
    expect(one.imagesPerSec).toBeCloseTo((64 + 64000 / 1100) / 2, 10);
    expect(two).toMatchObject({ transport: 'shm', workers: 2, globalBatch: 64, threadsPerWorker: 1 });
  });

  it('drops a cycle that lacks one of its iterations, and a last incomplete cycle', () => {
    const lines = linesOf([
      [5, 5],
      [5, 5],
      [1000, 500],
      [1000, 400],
      [1000, 250],
    ]).filter((l) => l.iteration !== 8);
    lines.push({ iteration: 11, stepMs: 1 });
    const [, two] = interleavedRuns(lines, [1, 2], 16, 'socket');
    expect(two.speedupByCycle).toEqual([2, 4]);
    expect(two.iterations).toBe(2);
  });

  it('counts nothing when the run had no cycle beyond the warm-up', () => {
    const [, two] = interleavedRuns(
      linesOf([
        [1000, 500],
        [1000, 500],
      ]),
      [1, 2],
      16,
      'shm',
    );
    expect(two.iterations).toBe(0);
    expect(two.speedupVsFirst).toBeNaN();
  });
});

describe('bench scaling, simulated part with nodes', () => {
  it("runs a node of 2 workers beside 2 flat socket workers, and reports each one's link bytes", async () => {
    const report = await benchScaling({
      preset: 'tiny',
      realWorkers: [1],
      real: false,
      transports: ['socket'],
      simulatedWorkers: [2],
      simulateStepMs: [5],
      rowsPerShard: 2,
      simulatedIterations: 4,
      nodes: [1],
      workersPerNode: [2],
    });
    expect(report.real).toMatchObject({ runs: [], interleaved: [], ceiling: [] });
    const [flat, node] = report.simulated.runs;
    expect(flat).toMatchObject({ transport: 'socket', workers: 2, nodes: null, workersPerNode: null, vsFlat: null });
    expect(node).toMatchObject({ transport: 'socket', workers: 2, nodes: 1, workersPerNode: 2, globalBatch: 4 });
    // Weights out and gradients back: tens of MB of the seed's model per peer and iteration.
    for (const r of [flat, node]) {
      expect(r.linkBytesPerIteration.sentBytes).toBeGreaterThan(30e6);
      expect(r.linkBytesPerIteration.receivedBytes).toBeGreaterThan(30e6);
    }
    // One peer instead of two: about half the bytes.
    expect(node.vsFlat!.workers).toBe(2);
    expect(node.vsFlat!.linkBytes).toBeGreaterThan(0.4);
    expect(node.vsFlat!.linkBytes).toBeLessThan(0.6);
    expect(formatScaling(report)).toContain('socket link, 1 node(s) x 2 workers (shm inside)');
  }, 180_000);
});

describe('bench scaling, simulated rounds', () => {
  /** A node run of one round: its iteration time and its own round's ratio against the flat run. */
  const round = (iterationMs: number, vsFlat: number): SimulatedRun =>
    ({
      transport: 'socket',
      workers: 4,
      simulateStepMs: 50,
      rowsPerShard: 32,
      globalBatch: 128,
      iterationMsMedian: iterationMs,
      overheadMs: iterationMs - 50,
      reduceAdamMs: 20,
      transportMs: iterationMs - 70,
      bytesPerIteration: 1e8,
      bareTransferMs: 100,
      overheadVsBare: (iterationMs - 50) / 100,
      memcpyMs: 10,
      transportVsMemcpy: (iterationMs - 70) / 10,
      imagesPerSec: 128000 / iterationMs,
      speedupVsFirst: 1,
      efficiency: 1,
      nodes: 2,
      workersPerNode: 2,
      linkBytesPerIteration: { sentBytes: 7e7, receivedBytes: 7e7 },
      vsFlat: { workers: 4, imagesPerSec: vsFlat, linkBytes: 0.5 },
      iterationMsByRound: [iterationMs],
    }) as SimulatedRun;

  it("takes times from the median round and ratios as the median of each round's own", () => {
    // Round 2 ran in a slow minute for both layouts: its node time is the largest, its ratio is not.
    const r = medianRound([round(400, 1.3), round(600, 1.5), round(380, 1.2)]);
    expect(r.iterationMsMedian).toBe(400);
    expect(r.overheadMs).toBe(350);
    expect(r.imagesPerSec).toBeCloseTo(320, 9);
    expect(r.vsFlat).toEqual({ workers: 4, imagesPerSec: 1.3, linkBytes: 0.5 });
    expect(r.iterationMsByRound).toEqual([400, 600, 380]);
  });
});
