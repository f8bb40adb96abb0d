// The coordinator's WebSocket endpoint: authenticates each peer with the token handshake, then
// hands validated messages to the coordinator. A peer that breaks the protocol loses its own
// connection, never the run.

import { EventEmitter } from 'node:events';
import type { AddressInfo } from 'node:net';
import { WebSocketServer, type WebSocket } from 'ws';
import { HANDSHAKE_TIMEOUT_MS, createServerHandshake, type WelcomeFields } from './auth.ts';
import { GanDistError } from './errors.ts';
import {
  PRE_AUTH_LIMITS,
  decodeMessage,
  encodeMessage,
  type FrameLimits,
  type HelloMessage,
  type Message,
} from './protocol.ts';

export interface Peer {
  id: number;
  role: 'worker' | 'monitor';
  address: string;
  hello: HelloMessage;
  send(msg: Message | Buffer): void;
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
}

/**
 * Events: 'peer' (Peer) once authenticated; 'message' (Peer, Message); 'gone' (Peer, reason);
 * 'rejected' ({address, reason}) for a peer turned away or dropped for a bad message.
 */
export class PeerServer extends EventEmitter {
  private wss!: WebSocketServer;
  private nextId = 1;
  private readonly sockets = new Set<WebSocket>();

  constructor(private readonly opts: PeerServerOptions) {
    super();
  }

  async listen(): Promise<AddressInfo> {
    this.wss = new WebSocketServer({
      host: this.opts.host,
      port: this.opts.port,
      // ws enforces this before our decoder sees anything; the handshake's own cap is smaller.
      maxPayload: this.opts.limits.maxFrameBytes,
      perMessageDeflate: false,
    });
    this.wss.on('connection', (ws, req) => this.accept(ws, `${req.socket.remoteAddress}:${req.socket.remotePort}`));
    await new Promise<void>((resolve, reject) => {
      this.wss.once('listening', resolve);
      this.wss.once('error', reject);
    });
    this.wss.on('error', (err) => this.emit('rejected', { address: 'server', reason: err.message }));
    return this.wss.address() as AddressInfo;
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
    ws.on('close', () => drop('connection closed'));
    const timer = setTimeout(() => drop(`handshake not finished within ${HANDSHAKE_TIMEOUT_MS} ms`), HANDSHAKE_TIMEOUT_MS);

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
        peer = {
          id,
          role: step.done.role,
          address,
          hello: step.done.hello,
          send: (m) => {
            if (ws.readyState === ws.OPEN) ws.send(Buffer.isBuffer(m) ? m : encodeMessage(m));
          },
          close: (reason) => {
            drop(reason);
          },
        };
        this.emit('peer', peer);
      }
    });
  }

  async close(): Promise<void> {
    for (const ws of this.sockets) ws.terminate();
    await new Promise<void>((resolve) => (this.wss ? this.wss.close(() => resolve()) : resolve()));
  }
}
