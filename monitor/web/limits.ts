// The dashboard's HTTP server holds the line the coordinator's socket does (coordinator/
// admission.ts, server.ts): connections that have not shown a session are capped per address
// (more are refused) and over all addresses (the oldest goes, so strangers holding sockets open
// cannot keep a logged-in page out), each must make an authenticated request within a deadline,
// headers are capped at 8 KB and must arrive in time, and a request body is capped before any of
// it is buffered. The numbers are the coordinator's; a test holds them equal.

import type { IncomingMessage, ServerOptions } from 'node:http';
import type { Socket } from 'node:net';

export interface WebLimits {
  /** Connections without a session held at once from all addresses; one more drops the oldest. */
  maxPending: number;
  /** Connections without a session from one address; more are refused as they arrive. */
  maxPendingPerAddress: number;
  /** From TCP accept to a request with a session (and the time allowed for headers). */
  pendingTimeoutMs: number;
  maxHeaderBytes: number;
  /** Request bodies (a login form, a Stop) at most. */
  maxBodyBytes: number;
  /** Every connection at once, logged-in ones included (each an open file). */
  maxConnections: number;
  /** Live update streams (one per open page) at once. */
  maxStreams: number;
}

export const WEB_LIMITS: Readonly<WebLimits> = Object.freeze({
  maxPending: 512,
  maxPendingPerAddress: 32,
  pendingTimeoutMs: 5000,
  maxHeaderBytes: 8 * 1024,
  maxBodyBytes: 4 * 1024,
  maxConnections: 1024,
  maxStreams: 256,
});

/** node:http's own limits from WebLimits. */
export function httpServerOptions(limits: WebLimits): ServerOptions {
  return {
    headersTimeout: limits.pendingTimeoutMs,
    requestTimeout: limits.pendingTimeoutMs * 2,
    keepAliveTimeout: limits.pendingTimeoutMs,
    connectionsCheckingInterval: Math.min(1000, limits.pendingTimeoutMs),
    maxHeaderSize: limits.maxHeaderBytes,
  };
}

interface Pending {
  socket: Socket;
  host: string;
  timer: NodeJS.Timeout;
}

/** Connections from accept until they show a session (pending), as coordinator/admission.ts does for peers. */
export class WebAdmission {
  private readonly pending = new Map<Socket, Pending>();
  private readonly perHost = new Map<string, number>();

  constructor(private readonly limits: WebLimits) {}

  get size(): number {
    return this.pending.size;
  }

  /** A new TCP connection: held as pending, or refused at once. */
  admit(socket: Socket): void {
    const host = socket.remoteAddress ?? 'unknown';
    const { maxPending, maxPendingPerAddress, pendingTimeoutMs } = this.limits;
    if ((this.perHost.get(host) ?? 0) >= maxPendingPerAddress) {
      socket.destroy();
      return;
    }
    if (this.pending.size >= maxPending) {
      const oldest = this.pending.keys().next().value!;
      this.release(oldest);
      oldest.destroy();
    }
    const timer = setTimeout(() => {
      this.release(socket);
      socket.destroy();
    }, pendingTimeoutMs);
    timer.unref();
    this.pending.set(socket, { socket, host, timer });
    this.perHost.set(host, (this.perHost.get(host) ?? 0) + 1);
    socket.once('close', () => this.release(socket));
  }

  /** The connection made a request with a session: it no longer counts against the caps or the deadline. */
  release(socket: Socket): void {
    const entry = this.pending.get(socket);
    if (!entry) return;
    clearTimeout(entry.timer);
    this.pending.delete(socket);
    const n = (this.perHost.get(entry.host) ?? 1) - 1;
    if (n > 0) this.perHost.set(entry.host, n);
    else this.perHost.delete(entry.host);
  }

  close(): void {
    for (const socket of [...this.pending.keys()]) {
      this.release(socket);
      socket.destroy();
    }
  }
}

/** The request's body as text, refused (undefined) once it passes `max` bytes: by its Content-Length before a byte is read, else as it streams. */
export async function readBody(req: IncomingMessage, max: number): Promise<string | undefined> {
  const declared = Number(req.headers['content-length'] ?? 0);
  if (!(declared <= max)) return undefined;
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > max) return undefined;
    chunks.push(chunk);
  }
  return Buffer.concat(chunks).toString('utf8');
}
