// When a local worker that failed is started again (--max-restarts): per rank, a restart count
// with exponential backoff, given back to a worker that stayed up long enough. Pure: the clock is injected.

/** --max-restarts when none is given. */
export const DEFAULT_MAX_RESTARTS = 3;
/** A worker up this long before it fails has proved itself: its count starts again from 0. */
export const RESTART_WINDOW_MS = 10 * 60_000;
const BASE_DELAY_MS = 1_000;
const MAX_DELAY_MS = 30_000;

export type RestartDecision =
  /** Start it again after `delayMs`; this is its restart number `count` within the window. */
  | { restart: true; count: number; delayMs: number }
  /** `count` restarts already within the window: leave it down. */
  | { restart: false; count: number };

export interface RestartPolicyOptions {
  maxRestarts: number;
  windowMs?: number;
  baseDelayMs?: number;
  maxDelayMs?: number;
  /** Milliseconds on a monotonic clock (tests: a fake one). */
  now?: () => number;
}

export class RestartPolicy {
  private readonly ranks = new Map<number, { count: number; startedAt: number }>();
  private readonly now: () => number;

  constructor(private readonly opts: RestartPolicyOptions) {
    if (!Number.isInteger(opts.maxRestarts) || opts.maxRestarts < 0)
      throw new RangeError('options.maxRestarts must be a non-negative integer');
    this.now = opts.now ?? (() => performance.now());
  }

  /** A process of this rank was just started (first launch or restart). */
  started(rank: number): void {
    const r = this.ranks.get(rank);
    if (r) r.startedAt = this.now();
    else this.ranks.set(rank, { count: 0, startedAt: this.now() });
  }

  /** The process of this rank just failed: whether, and after how long, to start it again. */
  failed(rank: number): RestartDecision {
    const r = this.ranks.get(rank) ?? { count: 0, startedAt: this.now() };
    this.ranks.set(rank, r);
    if (this.now() - r.startedAt >= (this.opts.windowMs ?? RESTART_WINDOW_MS)) r.count = 0;
    if (r.count >= this.opts.maxRestarts) return { restart: false, count: r.count };
    r.count++;
    const base = this.opts.baseDelayMs ?? BASE_DELAY_MS;
    return {
      restart: true,
      count: r.count,
      delayMs: Math.min(base * 2 ** (r.count - 1), this.opts.maxDelayMs ?? MAX_DELAY_MS),
    };
  }
}
