// Bytes on the coordinator's peer link: the payload of every WebSocket frame sent to or received
// from an authenticated worker peer (a node counts as one), added as they pass. Handshake frames
// before authentication, monitors' frames, WebSocket headers and pings are not counted, nor what
// local workers move through /dev/shm (only their small reference frames cross the socket).

/** Bytes sent to and received from worker peers, by the coordinator. */
export interface LinkBytes {
  sentBytes: number;
  receivedBytes: number;
}

export class LinkCounter {
  private sentTotal = 0;
  private receivedTotal = 0;
  private mark: LinkBytes = { sentBytes: 0, receivedBytes: 0 };

  sent(bytes: number): void {
    this.sentTotal += bytes;
  }

  received(bytes: number): void {
    this.receivedTotal += bytes;
  }

  /** Everything counted since the server started. */
  totals(): LinkBytes {
    return { sentBytes: this.sentTotal, receivedBytes: this.receivedTotal };
  }

  /** What was counted since the last take (the first: since the server started); the next take counts from now. */
  take(): LinkBytes {
    const now = this.totals();
    const since = {
      sentBytes: now.sentBytes - this.mark.sentBytes,
      receivedBytes: now.receivedBytes - this.mark.receivedBytes,
    };
    this.mark = now;
    return since;
  }
}
