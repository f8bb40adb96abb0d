import { describe, expect, it } from 'vitest';
import { RESTART_WINDOW_MS, RestartPolicy } from '../../../coordinator/train/restart-policy.ts';

/** A policy on a clock the test moves by hand. */
function policy(maxRestarts: number, opts: { maxDelayMs?: number } = {}) {
  let t = 0;
  const p = new RestartPolicy({ maxRestarts, now: () => t, ...opts });
  return { p, advance: (ms: number) => (t += ms) };
}

describe('restart policy', () => {
  it('doubles the delay from 1 s with each restart, then gives up after maxRestarts', () => {
    const { p, advance } = policy(3);
    p.started(0);
    const decisions = [];
    for (let i = 0; i < 4; i++) {
      advance(5_000);
      decisions.push(p.failed(0));
      p.started(0);
    }
    expect(decisions).toEqual([
      { restart: true, count: 1, delayMs: 1_000 },
      { restart: true, count: 2, delayMs: 2_000 },
      { restart: true, count: 3, delayMs: 4_000 },
      { restart: false, count: 3 },
    ]);
  });

  it('caps the backoff', () => {
    const { p } = policy(10, { maxDelayMs: 5_000 });
    p.started(0);
    const delays = Array.from({ length: 5 }, () => {
      const d = p.failed(0);
      p.started(0);
      return d.restart ? d.delayMs : -1;
    });
    expect(delays).toEqual([1_000, 2_000, 4_000, 5_000, 5_000]);
  });

  it('gives the count back to a worker that stayed up for the window', () => {
    const { p, advance } = policy(2);
    p.started(1);
    expect(p.failed(1)).toMatchObject({ restart: true, count: 1 });
    p.started(1);
    advance(RESTART_WINDOW_MS - 1);
    expect(p.failed(1)).toMatchObject({ restart: true, count: 2 });
    p.started(1);
    // Ten minutes up since its last start: this failure is its first again.
    advance(RESTART_WINDOW_MS);
    expect(p.failed(1)).toEqual({ restart: true, count: 1, delayMs: 1_000 });
  });

  it('counts each rank on its own', () => {
    const { p } = policy(1);
    p.started(0);
    p.started(1);
    expect(p.failed(0)).toMatchObject({ restart: true, count: 1 });
    p.started(0);
    expect(p.failed(0)).toEqual({ restart: false, count: 1 });
    expect(p.failed(1)).toMatchObject({ restart: true, count: 1 });
  });

  it('never restarts with maxRestarts 0, and refuses a negative one', () => {
    const { p } = policy(0);
    p.started(0);
    expect(p.failed(0)).toEqual({ restart: false, count: 0 });
    expect(() => new RestartPolicy({ maxRestarts: -1 })).toThrow(/options.maxRestarts must be a non-negative integer/);
  });
});
