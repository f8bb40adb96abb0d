// Chart decimation: every point below the threshold, bucket means above it, the newest kept.

import { describe, expect, it } from 'vitest';
import { decimate } from '../../../monitor/web/decimate.ts';

describe('decimate', () => {
  it('keeps every point at or below the threshold', () => {
    const cols = [
      [1, 2, 3],
      [0.1, 0.2, 0.3],
    ];
    expect(decimate(cols, 3)).toEqual({ columns: cols, bucket: 1 });
  });

  it('pools equal buckets into their means and keeps the newest point exact', () => {
    const x = Array.from({ length: 9 }, (_, i) => i + 1);
    const y = x.map((v) => v * 10);
    const { columns, bucket } = decimate([x, y], 5);
    expect(bucket).toBe(2);
    expect(columns).toEqual([
      [1.5, 3.5, 5.5, 7.5, 9],
      [15, 35, 55, 75, 90],
    ]);
  });

  it('sends at most the threshold for a 100,000-iteration run', () => {
    const x = Array.from({ length: 100_000 }, (_, i) => i + 1);
    const { columns } = decimate([x, x], 1500);
    expect(columns[0].length).toBeLessThanOrEqual(1500);
    expect(columns[0].at(-1)).toBe(100_000);
  });
});
