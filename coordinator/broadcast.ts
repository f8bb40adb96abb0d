// The coordinator's side of remote monitoring: every line written to train.log is also sent to
// each connected monitor as a `log` message, and a monitor that joins late first gets the run so
// far (a bounded backlog: the run's key events, and iteration lines at an even stride that
// doubles whenever they reach the bound), so its chart shows the whole run. A monitor may send
// `stop`, which only the control credential (or an older run's one token) can give.

import { encodeMessage, type Message } from '../protocol/wire/protocol.ts';
import { MONITOR_LIMITS } from '../protocol/wire/protocol.ts';
import { PeerStrikes } from './strikes.ts';

/** What the broadcaster needs of a connected peer (coordinator/server.ts's Peer fits). */
export interface MonitorPeer {
  id: number;
  role: string;
  /** The secret it proved (server.ts Credential): 'control' or 'run' may Stop. */
  credential: string;
  address: string;
  send(msg: Message | Buffer): void;
  /** Bytes queued for this peer and not yet sent. */
  bufferedBytes(): number;
  close(reason: string): void;
}

interface Entry {
  frame: Buffer;
  iteration: boolean;
  /** The iteration number of an iteration line. */
  number: number;
  /** Kept whatever the backlog's size: what totals and the workers table are computed from. */
  pinned: boolean;
}

const PINNED_EVENTS = new Set([
  'config',
  'data-ready',
  'listening',
  'state',
  'worker-joined',
  'worker-left',
  'run-finished',
]);

export interface BroadcasterOptions {
  /** Iteration lines kept for late monitors before the older half is thinned (default 10 000). */
  maxIterationLines?: number;
  /** Other lines kept (default 2 000; the pinned events are never dropped). */
  maxEventLines?: number;
  /**
   * A monitor with more than this many bytes queued and unsent (default 16 MiB) is dropped: a
   * stalled terminal must not grow the coordinator without bound. Reconnecting gets the backlog.
   */
  maxQueuedBytes?: number;
}

export class LogBroadcaster {
  private readonly backlog: Entry[] = [];
  private iterations = 0;
  /** Iteration lines kept: those whose number is a multiple of this, and the latest. */
  private stride = 1;
  /** Lines that may be dropped: neither iteration lines nor pinned events. */
  private events = 0;
  private readonly peers = new Map<number, MonitorPeer>();
  private readonly maxIterations: number;
  private readonly maxEvents: number;
  private readonly maxQueued: number;

  constructor(opts: BroadcasterOptions = {}) {
    this.maxIterations = opts.maxIterationLines ?? 10_000;
    this.maxEvents = opts.maxEventLines ?? 2_000;
    this.maxQueued = opts.maxQueuedBytes ?? 16 * 1024 * 1024;
  }

  get monitors(): number {
    return this.peers.size;
  }

  /**
   * One serialized log line, as pino writes it (its `hooks.streamWrite`). Never throws: a line
   * that cannot travel (not JSON, too large) is simply not forwarded.
   */
  write(text: string): void {
    let frame: Buffer;
    let line: Record<string, unknown>;
    try {
      line = JSON.parse(text) as Record<string, unknown>;
      frame = encodeMessage({ type: 'log', line });
    } catch {
      return;
    }
    if (frame.length > MONITOR_LIMITS.maxFrameBytes) return;
    // A backlog entry lives for the whole run: a copy in memory of its own, since a small frame
    // shares Node's 8 KB allocation pool, and one kept view would keep the whole 8 KB (80 MB
    // for the 10,000 iteration lines kept, measured as RSS that grew through the run).
    const own = Buffer.allocUnsafeSlow(frame.length);
    frame.copy(own);
    frame = own;
    const iteration = line.msg === 'iteration';
    const pinned = !iteration && PINNED_EVENTS.has(String(line.event));
    const number = typeof line.iteration === 'number' ? line.iteration : 0;
    if (iteration) {
      // The latest iteration is kept until the next arrives, on the stride or not.
      const last = this.backlog.findLastIndex((e) => e.iteration);
      if (last >= 0 && this.backlog[last].number % this.stride !== 0) {
        this.backlog.splice(last, 1);
        this.iterations--;
      }
      this.iterations++;
    } else if (!pinned) this.events++;
    this.backlog.push({ frame, iteration, number, pinned });
    this.trim();
    for (const peer of [...this.peers.values()]) {
      const queued = peer.bufferedBytes();
      if (queued > this.maxQueued) {
        this.peers.delete(peer.id);
        peer.close(
          `monitor fell behind: ${(queued / 1048576).toFixed(1)} MiB of log lines unsent; reconnect to catch up from the backlog`,
        );
      } else peer.send(frame);
    }
  }

  /** A monitor joined: the backlog first, then every new line. */
  add(peer: MonitorPeer): void {
    for (const e of this.backlog) peer.send(e.frame);
    this.peers.set(peer.id, peer);
  }

  remove(id: number): void {
    this.peers.delete(id);
  }

  private trim(): void {
    if (this.iterations > this.maxIterations) {
      // Keep every stride-th iteration, doubling the stride: the chart keeps the whole run's shape.
      this.stride *= 2;
      const lastIteration = this.backlog.findLastIndex((e) => e.iteration);
      const kept = this.backlog.filter((e, i) => !e.iteration || i === lastIteration || e.number % this.stride === 0);
      this.iterations = kept.filter((e) => e.iteration).length;
      this.backlog.splice(0, this.backlog.length, ...kept);
    }
    if (this.events > this.maxEvents) {
      let drop = Math.ceil(this.maxEvents / 10);
      for (let i = 0; i < this.backlog.length && drop > 0; ) {
        const e = this.backlog[i];
        if (!e.iteration && !e.pinned) {
          this.backlog.splice(i, 1);
          this.events--;
          drop--;
        } else i++;
      }
    }
  }
}

export interface MonitorServer {
  on(event: 'peer', fn: (peer: MonitorPeer) => void): unknown;
  on(event: 'gone', fn: (peer: MonitorPeer, reason: string) => void): unknown;
  on(event: 'message', fn: (peer: MonitorPeer, msg: Message) => void): unknown;
}

/** The credentials whose monitor may Stop the run. */
const MAY_STOP = new Set(['control', 'run']);

/**
 * Wires monitors on the coordinator's PeerServer: a monitor peer is added to the broadcaster
 * when it joins and removed when it goes; its `stop` calls `requestStop` when its credential is
 * control's, and is otherwise refused (an `error` back, and a strike); anything else it sends
 * costs it the connection. The coordinator's own message handler must ignore monitor peers.
 */
export function attachMonitors(
  server: MonitorServer,
  monitors: LogBroadcaster,
  requestStop: (reason: string) => void,
  strikes = new PeerStrikes(),
): void {
  server.on('peer', (peer) => {
    if (peer.role === 'monitor') monitors.add(peer);
  });
  server.on('gone', (peer) => {
    monitors.remove(peer.id);
    strikes.forget(peer.id);
  });
  server.on('message', (peer, msg) => {
    if (peer.role !== 'monitor') return;
    if (msg.type === 'stop' && MAY_STOP.has(peer.credential))
      requestStop(`stop requested by the monitor at ${peer.address}${msg.reason ? ` (${msg.reason})` : ''}`);
    else if (msg.type === 'stop') {
      if (strikes.strike(peer, 'a Stop its credential cannot give')) return;
      peer.send({
        type: 'error',
        code: 'GAN_DIST_E_AUTH',
        message:
          "Stop refused: this monitor holds the run's monitor credential, which only watches; Stop needs control.token",
      });
    } else if (msg.type !== 'heartbeat') peer.close(`a monitor may only send 'stop', not '${msg.type}'`);
  });
}
