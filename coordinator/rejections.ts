// Peers turned away before they authenticated, logged as a summary: the first of each kind in a
// window in full (who and why), then one count per kind when the window closes. A flood of
// strangers writes two lines a kind a minute, not one a socket, to train.log and every monitor.

/** Why a peer was turned away before authenticating; stable, for log readers. */
export type RejectionKind =
  | 'address-limit' // too many unauthenticated connections from its address
  | 'pending-limit' // the oldest unauthenticated connection, dropped to make room
  | 'upgrade' // no valid WebSocket upgrade in time (HTTP error, plain request, timeout)
  | 'tls' // the TLS handshake failed
  | 'frame' // an oversized, text or undecodable frame before authenticating
  | 'handshake' // the gan-dist handshake failed (token, protocol version, model) or took too long
  | 'closed' // the connection went before the handshake finished
  | 'server'; // the server itself reported an error

export interface Rejection {
  address: string;
  reason: string;
  kind: RejectionKind;
}

export interface RejectionSummary {
  kind: RejectionKind;
  /** Rejections of this kind in the window, the one logged in full included. */
  count: number;
  /** Distinct source addresses among them (at most MAX_ADDRESSES are told apart). */
  addresses: number;
  windowMs: number;
}

/** Distinct addresses counted per kind and window: memory stays bounded whoever connects. */
const MAX_ADDRESSES = 1024;

export class RejectionLog {
  private readonly window = new Map<RejectionKind, { count: number; addresses: Set<string> }>();
  private timer?: NodeJS.Timeout;
  private closed = false;

  constructor(
    private readonly windowMs: number,
    private readonly out: { first: (r: Rejection) => void; summary: (s: RejectionSummary) => void },
  ) {}

  record(r: Rejection): void {
    if (this.closed) return;
    let w = this.window.get(r.kind);
    if (w === undefined) {
      w = { count: 0, addresses: new Set() };
      this.window.set(r.kind, w);
      this.out.first(r);
    }
    w.count++;
    if (w.addresses.size < MAX_ADDRESSES) w.addresses.add(hostOf(r.address));
    if (this.timer === undefined) {
      this.timer = setTimeout(() => this.flush(), this.windowMs);
      this.timer.unref();
    }
  }

  /** Ends the window now: one summary per kind seen in it. */
  flush(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    const seen = [...this.window];
    this.window.clear();
    for (const [kind, w] of seen)
      this.out.summary({ kind, count: w.count, addresses: w.addresses.size, windowMs: this.windowMs });
  }

  /** Flushes, then records nothing more (the server is closing). */
  close(): void {
    this.flush();
    this.closed = true;
  }
}

/** "1.2.3.4:5678" -> "1.2.3.4", "[::1]:80" or "::1:80" -> "::1". */
function hostOf(address: string): string {
  const i = address.lastIndexOf(':');
  return (i > 0 ? address.slice(0, i) : address).replace(/^\[|\]$/g, '');
}
