// The coordinator's WebSocket endpoint: authenticates each peer with the token handshake, then
// hands validated messages to the coordinator. A peer that breaks the protocol loses its own
// connection, never the run; a stranger costs at most a few KB until it has authenticated.

import { EventEmitter } from 'node:events';
import { createServer as createHttpServer, type Server as HttpServer, type ServerOptions } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo, Socket } from 'node:net';
import { WebSocketServer, type WebSocket } from 'ws';
import {
  HANDSHAKE_TIMEOUT_MS,
  createServerHandshake,
  type Credential,
  type WelcomeFields,
} from '../protocol/wire/handshake.ts';
import type { RoleTokens } from '../protocol/wire/auth.ts';
import { GanDistError } from '../protocol/errors.ts';
import {
  MONITOR_LIMITS,
  PRE_AUTH_LIMITS,
  decodeMessage,
  encodeMessage,
  type FrameLimits,
  type HelloMessage,
  type Message,
} from '../protocol/wire/protocol.ts';
import { Admission, DEFAULT_ADMISSION, type AdmissionLimits } from '../protocol/wire/admission.ts';
import { setFrameCap } from '../protocol/wire/frame-cap.ts';
import { PartsAssembler } from '../protocol/wire/parts.ts';
import { RejectionLog, type Rejection, type RejectionKind, type RejectionSummary } from './rejections.ts';
import { LinkCounter } from './link-counter.ts';

export interface Peer {
  id: number;
  role: 'worker' | 'monitor';
  /** The secret it proved: a monitor may Stop only with 'control' (or an older run's one token, 'run'). */
  credential: Credential;
  address: string;
  hello: HelloMessage;
  send(msg: Message | Buffer): void;
  /** Bytes queued on the socket and not yet handed to the OS. */
  bufferedBytes(): number;
  /**
   * Resolves once every frame sent so far has been handed to the OS, or the socket is gone, or
   * after `timeoutMs` (a peer that stopped reading must not hold up a shutdown).
   */
  drained(timeoutMs: number): Promise<void>;
  /**
   * The peer is computing a shard: a worker's step runs on its main thread (seconds for the
   * full model on a CPU) and cannot answer pings meanwhile, so the heartbeat leaves it alone and
   * the dispatcher's step deadline watches it instead.
   */
  setComputing(on: boolean): void;
  close(reason: string): void;
}

export interface PeerServerOptions {
  host: string;
  port: number;
  /** The run's worker, monitor and control secrets; one string: an older run's one token, for every role. */
  token: string | RoleTokens;
  paramTableHash: string;
  /** Limits for authenticated workers, fitted to the model (frameLimitFor); monitors get MONITOR_LIMITS. */
  limits: FrameLimits;
  welcome: (hello: HelloMessage, id: number) => WelcomeFields;
  /** Serve wss with this certificate; plain ws (loopback only) without. */
  tls?: { cert: string; key: string };
  /** Ping every this many ms; a peer that misses two pongs is dropped, unless it is computing a shard. */
  heartbeatMs?: number;
  /** Caps on unauthenticated connections (DEFAULT_ADMISSION where not given). */
  admission?: Partial<AdmissionLimits>;
  /** The gan-dist handshake's deadline, from the WebSocket upgrade (default HANDSHAKE_TIMEOUT_MS). */
  handshakeTimeoutMs?: number;
  /** Rejections are summarised per kind over windows of this many ms (default one minute). */
  rejectionWindowMs?: number;
}

/** The HTTP side of the upgrade: headers in time, and a plain request answered and closed. */
function httpOptions(upgradeTimeoutMs: number): ServerOptions {
  return {
    headersTimeout: upgradeTimeoutMs,
    requestTimeout: upgradeTimeoutMs,
    connectionsCheckingInterval: Math.min(1000, upgradeTimeoutMs),
    maxHeaderSize: 8 * 1024,
  };
}

/**
 * Events: 'peer' (Peer) once authenticated; 'message' (Peer, Message); 'gone' (Peer, reason);
 * 'rejected' (Rejection: address, reason, kind) for the first peer of each kind turned away in a
 * window; 'rejected-summary' (RejectionSummary) per kind when the window closes, and on close().
 */
export class PeerServer extends EventEmitter {
  private wss!: WebSocketServer;
  private http!: HttpServer;
  private nextId = 1;
  private readonly sockets = new Set<WebSocket>();
  private heartbeat?: NodeJS.Timeout;
  /** Sockets of peers computing a shard (Peer.setComputing). */
  private readonly computing = new WeakSet<WebSocket>();
  private readonly rejections: RejectionLog;
  private readonly admission: Admission<RejectionKind>;
  /** The bytes of every frame to and from authenticated worker peers (link-counter.ts says what is left out). */
  readonly link = new LinkCounter();

  constructor(private readonly opts: PeerServerOptions) {
    super();
    this.rejections = new RejectionLog(opts.rejectionWindowMs ?? 60_000, {
      first: (r) => this.emit('rejected', r),
      summary: (s: RejectionSummary) => this.emit('rejected-summary', s),
    });
    this.admission = new Admission({ ...DEFAULT_ADMISSION, ...opts.admission }, (address, kind, reason) =>
      this.reject({ address, kind, reason }),
    );
  }

  /** Connections held that have not proved the token yet. */
  pendingCount(): number {
    return this.admission.size;
  }

  private reject(r: Rejection): void {
    this.rejections.record(r);
  }

  async listen(): Promise<AddressInfo> {
    const upgradeTimeoutMs = { ...DEFAULT_ADMISSION, ...this.opts.admission }.upgradeTimeoutMs;
    const tls = this.opts.tls;
    this.http = tls
      ? createHttpsServer({ ...httpOptions(upgradeTimeoutMs), cert: tls.cert, key: tls.key })
      : createHttpServer(httpOptions(upgradeTimeoutMs));
    // Counted from TCP accept: before TLS, before HTTP, before ws buffers anything.
    this.http.on('connection', (socket: Socket) => this.admission.admit(socket));
    // A client that fails the TLS handshake never becomes a peer; say who and why.
    this.http.on('tlsClientError', (err: Error, socket: Socket) =>
      this.reject({ address: addressOf(socket), kind: 'tls', reason: `TLS: ${err.message}` }),
    );
    this.http.on('clientError', (err: NodeJS.ErrnoException, socket: Socket) => {
      const gone = err.code === 'ECONNRESET' || err.code === 'EPIPE';
      this.reject({
        address: addressOf(socket),
        kind: gone ? 'closed' : 'upgrade',
        reason: `HTTP: ${err.code ?? err.message}`,
      });
      const status = err.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? '408 Request Timeout' : '400 Bad Request';
      if (socket.writable) socket.end(`HTTP/1.1 ${status}\r\nConnection: close\r\n\r\n`);
      socket.destroy();
    });
    this.http.on('request', (req, res) => {
      this.reject({ address: addressOf(req.socket), kind: 'upgrade', reason: 'a plain HTTP request, not an upgrade' });
      res.writeHead(426, { Connection: 'close', 'Content-Type': 'text/plain' }).end('Upgrade Required');
    });
    // Every frame before authentication fits PRE_AUTH_LIMITS; ws refuses a larger one from its header.
    this.wss = new WebSocketServer({
      server: this.http,
      maxPayload: PRE_AUTH_LIMITS.maxFrameBytes,
      perMessageDeflate: false,
      clientTracking: false,
    });
    // ws passes on the HTTP server's errors; one unheard would be thrown (a port in use fails listen below).
    this.wss.on('error', (err) => this.reject({ address: 'server', kind: 'server', reason: err.message }));
    this.wss.on('wsClientError', (err, socket) => {
      this.reject({
        address: addressOf(socket as Socket),
        kind: 'upgrade',
        reason: `WebSocket upgrade: ${err.message}`,
      });
      if (socket.writable) socket.end('HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n');
      socket.destroy();
    });
    await new Promise<void>((resolve, reject) => {
      this.http.once('error', reject);
      this.http.listen(this.opts.port, this.opts.host, () => {
        this.http.off('error', reject);
        resolve();
      });
    });
    this.wss.on('connection', (ws, req) => this.accept(ws, addressOf(req.socket)));
    this.startHeartbeat();
    return this.http.address() as AddressInfo;
  }

  /** ws ping/pong: a peer that answered no ping since the last one is silent, and dropped. */
  private startHeartbeat(): void {
    const every = this.opts.heartbeatMs ?? 5000;
    const alive = new WeakMap<WebSocket, boolean>();
    this.wss.on('connection', (ws) => {
      alive.set(ws, true);
      ws.on('pong', () => alive.set(ws, true));
    });
    this.heartbeat = setInterval(() => {
      for (const ws of this.sockets) {
        if (this.computing.has(ws)) {
          alive.set(ws, true); // its answer to the last ping may be stuck behind the step
          continue;
        }
        if (alive.get(ws) === false) {
          ws.emit('error', new Error(`no heartbeat answer within ${2 * every} ms`));
          continue;
        }
        alive.set(ws, false);
        ws.ping();
      }
    }, every);
    this.heartbeat.unref();
  }

  private accept(ws: WebSocket, address: string): void {
    const id = this.nextId++;
    let peer: Peer | undefined;
    let closed = false;
    /** Made with the peer, at authentication: weights or gradients in parts reach the listeners whole. */
    let parts: PartsAssembler | undefined;
    const limitsOf = (role: Peer['role']) => (role === 'worker' ? this.opts.limits : MONITOR_LIMITS);
    const drop = (reason: string, kind: RejectionKind = 'closed') => {
      if (closed) return;
      closed = true;
      clearTimeout(timer);
      this.admission.release(address);
      if (peer) this.emit('gone', peer, reason);
      else this.reject({ address, kind, reason });
      ws.terminate();
    };
    // Dropped while upgrading (its deadline, or to make room): nothing to say to it.
    if (!this.admission.upgraded(address, (kind, reason) => drop(reason, kind))) {
      ws.terminate();
      return;
    }
    this.sockets.add(ws);
    // Without an 'error' handler ws would crash the whole process on an oversized frame.
    ws.on('error', (err: Error & { code?: string }) =>
      drop(`socket error: ${err.message}`, err.code?.startsWith('WS_ERR_') ? 'frame' : 'closed'),
    );
    ws.on('close', () => {
      this.sockets.delete(ws);
      drop('connection closed');
    });
    const handshakeMs = this.opts.handshakeTimeoutMs ?? HANDSHAKE_TIMEOUT_MS;
    const timer = setTimeout(() => drop(`handshake not finished within ${handshakeMs} ms`, 'handshake'), handshakeMs);

    const handshake = createServerHandshake({
      token: this.opts.token,
      paramTableHash: this.opts.paramTableHash,
      welcome: (hello) => this.opts.welcome(hello, id),
    });
    ws.on('message', (data, isBinary) => {
      if (closed) return;
      if (!isBinary) return drop('sent a text frame; the protocol is binary', 'frame');
      const buf = data as Buffer;
      if (peer?.role === 'worker') this.link.received(buf.length);
      const limits = peer ? limitsOf(peer.role) : PRE_AUTH_LIMITS;
      let msg: Message;
      try {
        msg = decodeMessage(buf, limits);
      } catch (err) {
        const reason = err instanceof GanDistError ? err.message : `undecodable frame: ${(err as Error).message}`;
        return drop(reason, 'frame');
      }
      if (peer && parts) {
        let whole: Message | undefined;
        try {
          whole = parts.accept(msg, buf.length);
        } catch (err) {
          return drop((err as Error).message, 'frame');
        }
        if (whole) this.emit('message', peer, whole);
        return;
      }
      const step = handshake.onMessage(msg);
      if (step.send) ws.send(encodeMessage(step.send));
      // Its proof checked out: a worker building its model before `ready` is no stranger to evict.
      if (step.send?.type === 'welcome') this.admission.release(address);
      if (step.error) {
        // Let the reject reach the peer before the socket goes.
        closed = true;
        clearTimeout(timer);
        this.reject({ address, kind: 'handshake', reason: step.error.message });
        ws.close(4001, step.error.code);
        setTimeout(() => ws.terminate(), 1000).unref();
        return;
      }
      if (step.done) {
        clearTimeout(timer);
        // Raised before ws parses the next frame's header: this listener runs inside its parse loop.
        const maxFrameBytes = limitsOf(step.done.role).maxFrameBytes;
        if (!setFrameCap(ws, maxFrameBytes)) {
          return drop('ws keeps no per-connection frame limit where this gan-dist raises it (Receiver._maxPayload)');
        }
        parts = new PartsAssembler(maxFrameBytes);
        peer = this.peerOf(ws, id, address, step.done, drop);
        this.emit('peer', peer);
      }
    });
  }

  private peerOf(
    ws: WebSocket,
    id: number,
    address: string,
    { role, credential, hello }: { role: Peer['role']; credential: Credential; hello: HelloMessage },
    drop: (reason: string) => void,
  ): Peer {
    // Sends not yet written out, and who waits for them to be.
    let unwritten = 0;
    const waiting = new Set<() => void>();
    const written = () => {
      if (--unwritten > 0) return;
      for (const w of waiting) w();
      waiting.clear();
    };
    return {
      id,
      role,
      credential,
      address,
      hello,
      send: (m) => {
        if (ws.readyState !== ws.OPEN) return;
        unwritten++;
        const frame = Buffer.isBuffer(m) ? m : encodeMessage(m);
        if (role === 'worker') this.link.sent(frame.length);
        // ws calls back once the frame is written, or with an error when the socket went first.
        ws.send(frame, written);
      },
      bufferedBytes: () => ws.bufferedAmount,
      drained: (timeoutMs) =>
        new Promise<void>((resolve) => {
          if (unwritten === 0 || ws.readyState !== ws.OPEN) return resolve();
          const done = () => {
            clearTimeout(t);
            waiting.delete(done);
            resolve();
          };
          const t = setTimeout(done, timeoutMs);
          waiting.add(done);
          ws.once('close', done);
        }),
      setComputing: (on) => void (on ? this.computing.add(ws) : this.computing.delete(ws)),
      close: (reason) => drop(reason),
    };
  }

  async close(): Promise<void> {
    clearInterval(this.heartbeat);
    for (const ws of this.sockets) ws.terminate();
    this.admission.close();
    await new Promise<void>((resolve) => (this.wss ? this.wss.close(() => resolve()) : resolve()));
    if (this.http?.listening) {
      const closed = new Promise<void>((resolve) => this.http.close(() => resolve()));
      this.http.closeAllConnections();
      await closed;
    }
    this.rejections.close();
  }
}

function addressOf(socket: Socket): string {
  return `${socket.remoteAddress}:${socket.remotePort}`;
}
