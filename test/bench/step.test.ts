import { describe, expect, it } from 'vitest';
import { MIN_TIMED_STEPS, benchStep, formatStepBench, type StepBenchReport } from '../../bench/step.ts';

describe('bench step', () => {
  it('measures every backend at every batch, the first step apart, with ratios to the first backend at the same batch', async () => {
    const r = await benchStep({ backends: ['wasm', 'wasm'], batches: [2, 4], preset: 'tiny', steps: 2, warmup: 1 });
    expect(r.rows.map((x) => [x.backend, x.batch])).toEqual([
      ['wasm', 2],
      ['wasm', 4],
      ['wasm', 2],
      ['wasm', 4],
    ]);
    for (const x of r.rows) {
      expect(x.firstStepMs).toBeGreaterThan(0);
      expect(x.steps).toBe(2);
      expect(x.imagesPerSec).toBeCloseTo((x.batch * 1000) / x.stepMsMedian, 9);
      expect(x.tensorsPerStep).toBe(0);
      expect(x.softwareAdapter).toBe(false);
    }
    expect(r.rows[0].ratioToFirst).toBe(1);
    expect(r.rows[1].ratioToFirst).toBe(1);
    expect(r.rows[3].ratioToFirst).toBeCloseTo(r.rows[3].imagesPerSec / r.rows[1].imagesPerSec, 12);
  });

  it(`stops the timed steps at the time box, after ${MIN_TIMED_STEPS} of them`, async () => {
    const r = await benchStep({
      backends: ['wasm'],
      batches: [2],
      preset: 'tiny',
      steps: 50,
      warmup: 1,
      maxSeconds: 1e-6,
    });
    expect(r.rows[0].steps).toBe(MIN_TIMED_STEPS);
    expect(r.maxSeconds).toBe(1e-6);
  });

  it("marks a software adapter's rows as CPU figures in the table", () => {
    const row = {
      threads: 0,
      batch: 16,
      firstStepMs: 1400,
      stepMsMedian: 1280,
      stepMsMin: 1070,
      steps: 7,
      imagesPerSec: 12.5,
      ratioToFirst: 1,
      tensorsPerStep: 0,
      bytesPerStep: 0,
      rssGrowthMB: 1,
    };
    const report: StepBenchReport = {
      model: { latent: 100, filters: 16, imageSize: 32 },
      preset: 'tiny',
      batches: [16],
      steps: 7,
      warmup: 1,
      rows: [
        { ...row, backend: 'webgpu', device: 'software llvmpipe (WebGPU, Dawn)', softwareAdapter: true },
        {
          ...row,
          backend: 'wasm',
          device: 'CPU (wasm)',
          softwareAdapter: false,
          imagesPerSec: 280,
          ratioToFirst: 22.4,
        },
      ],
    };
    const lines = formatStepBench(report).split('\n');
    expect(lines.find((l) => l.trimStart().startsWith('webgpu*'))).toMatch(/1,400 +1,280/);
    expect(lines.find((l) => l.includes('webgpu: software'))).toMatch(/software adapter: CPU figures, not GPU ones/);
    expect(lines.find((l) => l.includes('wasm: CPU'))).not.toMatch(/software adapter/);
    expect(lines.find((l) => l.trimStart().startsWith('wasm '))).toMatch(/22\.400x/);
  });
});
