import { describe, expect, it } from 'vitest';
import { benchScaling, interleavedRuns } from '../../bench/scaling.ts';
import { formatScaling } from '../../bench/scaling-report.ts';

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
