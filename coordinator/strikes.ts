// Strikes against a peer that sends frames nobody asked for: stale results, samples with no
// request, a worker's `error` lines, a monitor's Stop its credential cannot give. Each is cheap
// alone and legitimate now and then (a result that lost the race to a reassigned shard), but
// repeated they fill the log and the coordinator's time, so past a bound the peer is dropped.

/** What a strike needs of a peer (server.ts's Peer fits). */
export interface StruckPeer {
  id: number;
  close(reason: string): void;
}

export interface StrikeLimits {
  /** Strikes a peer may collect within `windowMs` before it is disconnected (default 16). */
  max: number;
  windowMs: number;
}

export const DEFAULT_STRIKES: StrikeLimits = { max: 16, windowMs: 60_000 };

export class PeerStrikes {
  /** Per peer: when each strike still inside the window was given. */
  private readonly times = new Map<number, number[]>();

  constructor(
    private readonly limits: StrikeLimits = DEFAULT_STRIKES,
    private readonly now: () => number = () => performance.now(),
  ) {}

  /** One stale or unsolicited frame from `peer` (`what` names it); returns whether the peer was dropped. */
  strike(peer: StruckPeer, what: string): boolean {
    const t = this.now();
    const kept = (this.times.get(peer.id) ?? []).filter((at) => t - at < this.limits.windowMs);
    kept.push(t);
    this.times.set(peer.id, kept);
    if (kept.length <= this.limits.max) return false;
    this.times.delete(peer.id);
    peer.close(
      `sent ${kept.length} stale or unsolicited frames within ${Math.round(this.limits.windowMs / 1000)} s (the last: ${what})`,
    );
    return true;
  }

  forget(id: number): void {
    this.times.delete(id);
  }
}
