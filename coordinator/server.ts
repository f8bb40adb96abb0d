// The coordinator's WebSocket endpoint: authenticates each peer with the token handshake, then
// hands validated messages to the coordinator. A peer that breaks the protocol loses its own
// connection, never the run.

import { EventEmitter } from 'node:events';
import { createServer as createHttpsServer, type Server as HttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { WebSocketServer, type WebSocket } from 'ws';
import { HANDSHAKE_TIMEOUT_MS, createServerHandshake, type WelcomeFields } from '../protocol/wire/auth.ts';
import { GanDistError } from '../protocol/errors.ts';
import {
  PRE_AUTH_LIMITS,
  decodeMessage,
  encodeMessage,
  type FrameLimits,
  type HelloMessage,
  type Message,
} from '../protocol/wire/protocol.ts';

export interface Peer {
  id: number;
  role: 'worker' | 'monitor';
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
  token: string;
  paramTableHash: string;
  /** Limits for authenticated peers, fitted to the model (frameLimitFor). */
  limits: FrameLimits;
  welcome: (hello: HelloMessage, id: number) => WelcomeFields;
  /** Serve wss with this certificate; plain ws (loopback only) without. */
  tls?: { cert: string; key: string };
  /** Ping every this many ms; a peer that misses two pongs is dropped, unless it is computing a shard. */
  heartbeatMs?: number;
}

/**
 * Events: 'peer' (Peer) once authenticated; 'message' (Peer, Message); 'gone' (Peer, reason);
 * 'rejected' ({address, reason}) for a peer turned away or dropped for a bad message.
 */
export class PeerServer extends EventEmitter {
  private wss!: WebSocketServer;
  private nextId = 1;
  private readonly sockets = new Set<WebSocket>();
  private https?: HttpsServer;
  private heartbeat?: NodeJS.Timeout;
  /** Sockets of peers computing a shard (Peer.setComputing). */
  private readonly computing = new WeakSet<WebSocket>();

  constructor(private readonly opts: PeerServerOptions) {
    super();
  }

  async listen(): Promise<AddressInfo> {
    // ws enforces maxPayload before our decoder sees anything; the handshake's own cap is smaller.
    const common = { maxPayload: this.opts.limits.maxFrameBytes, perMessageDeflate: false } as const;
    if (this.opts.tls) {
      this.https = createHttpsServer({ cert: this.opts.tls.cert, key: this.opts.tls.key });
      // A client that fails the TLS handshake never becomes a peer; say who and why.
      this.https.on('tlsClientError', (err, socket) =>
        this.emit('rejected', {
          address: `${socket.remoteAddress}:${socket.remotePort}`,
          reason: `TLS: ${err.message}`,
        }),
      );
      this.wss = new WebSocketServer({ server: this.https, ...common });
      await new Promise<void>((resolve, reject) => {
        this.https!.once('error', reject);
        this.https!.listen(this.opts.port, this.opts.host, () => resolve());
      });
    } else {
      this.wss = new WebSocketServer({ host: this.opts.host, port: this.opts.port, ...common });
      await new Promise<void>((resolve, reject) => {
        this.wss.once('listening', resolve);
        this.wss.once('error', reject);
      });
    }
    this.wss.on('connection', (ws, req) => this.accept(ws, `${req.socket.remoteAddress}:${req.socket.remotePort}`));
    this.wss.on('error', (err) => this.emit('rejected', { address: 'server', reason: err.message }));
    this.startHeartbeat();
    return (this.https ?? this.wss).address() as AddressInfo;
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
    this.sockets.add(ws);
    const id = this.nextId++;
    let peer: Peer | undefined;
    let closed = false;
    const drop = (reason: string) => {
      if (closed) return;
      closed = true;
      clearTimeout(timer);
      if (peer) this.emit('gone', peer, reason);
      else this.emit('rejected', { address, reason });
      ws.terminate();
    };
    // Without an 'error' handler ws would crash the whole process on an oversized frame.
    ws.on('error', (err) => drop(`socket error: ${err.message}`));
    ws.on('close', () => {
      this.sockets.delete(ws);
      drop('connection closed');
    });
    const timer = setTimeout(
      () => drop(`handshake not finished within ${HANDSHAKE_TIMEOUT_MS} ms`),
      HANDSHAKE_TIMEOUT_MS,
    );

    const handshake = createServerHandshake({
      token: this.opts.token,
      paramTableHash: this.opts.paramTableHash,
      welcome: (hello) => this.opts.welcome(hello, id),
    });
    ws.on('message', (data, isBinary) => {
      if (closed) return;
      if (!isBinary) return drop('sent a text frame; the protocol is binary');
      const buf = data as Buffer;
      let msg: Message;
      try {
        msg = decodeMessage(buf, peer ? this.opts.limits : PRE_AUTH_LIMITS);
      } catch (err) {
        return drop(err instanceof GanDistError ? err.message : `undecodable frame: ${(err as Error).message}`);
      }
      if (peer) {
        this.emit('message', peer, msg);
        return;
      }
      const step = handshake.onMessage(msg);
      if (step.send) ws.send(encodeMessage(step.send));
      if (step.error) {
        // Let the reject reach the peer before the socket goes.
        closed = true;
        clearTimeout(timer);
        this.emit('rejected', { address, reason: step.error.message });
        ws.close(4001, step.error.code);
        setTimeout(() => ws.terminate(), 1000).unref();
        return;
      }
      if (step.done) {
        clearTimeout(timer);
        // Sends not yet written out, and who waits for them to be.
        let unwritten = 0;
        const waiting = new Set<() => void>();
        const written = () => {
          if (--unwritten > 0) return;
          for (const w of waiting) w();
          waiting.clear();
        };
        peer = {
          id,
          role: step.done.role,
          address,
          hello: step.done.hello,
          send: (m) => {
            if (ws.readyState !== ws.OPEN) return;
            unwritten++;
            // ws calls back once the frame is written, or with an error when the socket went first.
            ws.send(Buffer.isBuffer(m) ? m : encodeMessage(m), written);
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
          close: (reason) => {
            drop(reason);
          },
        };
        this.emit('peer', peer);
      }
    });
  }

  async close(): Promise<void> {
    clearInterval(this.heartbeat);
    for (const ws of this.sockets) ws.terminate();
    await new Promise<void>((resolve) => (this.wss ? this.wss.close(() => resolve()) : resolve()));
    if (this.https) await new Promise<void>((resolve) => this.https!.close(() => resolve()));
  }
}
