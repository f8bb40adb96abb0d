// The dashboard's HTTP server holds the line the coordinator's socket does (coordinator/
// server.ts): connections that have not shown a session are capped per address
// (more are refused) and over all addresses (the oldest goes, so strangers holding sockets open
// cannot keep a logged-in page out), each must make an authenticated request within a deadline,
// headers are capped at 8 KB and must arrive in time, and a request body is capped before any of
// it is buffered. The caps and the deadline are protocol/wire/admission.ts's, which the
// coordinator's socket uses too; the numbers are the coordinator's, and a test holds them equal.

import type { IncomingMessage, ServerOptions } from 'node:http';

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
