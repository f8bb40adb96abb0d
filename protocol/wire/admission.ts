// Connections that have not authenticated yet, from TCP accept on: a cap per address (more are
// refused as they arrive), a cap over all addresses (the oldest goes to make room, so strangers
// holding sockets open cannot keep a worker out: its handshake takes milliseconds) and a deadline
// for the WebSocket upgrade, TLS and HTTP headers included. The coordinator's socket
// (coordinator/server.ts) and the dashboard's HTTP server (monitor/web/server.ts) hold the same
// line with it.

import type { Socket } from 'node:net';

/** The rejections an Admission makes itself; its owner may name more (coordinator/rejections.ts). */
export type AdmissionRejection = 'address-limit' | 'pending-limit' | 'upgrade';

/** How an Admission names a connection: its remote "host:port". */
export function admissionKey(socket: Socket): string {
  return `${socket.remoteAddress ?? 'unknown'}:${socket.remotePort}`;
}

export interface AdmissionLimits {
  /** Unauthenticated connections held at once from all addresses; one more drops the oldest. */
  maxPending: number;
  /** Unauthenticated connections from one address; more are refused as they arrive. */
  maxPendingPerAddress: number;
  /** From TCP accept to the WebSocket upgrade. */
  upgradeTimeoutMs: number;
}

export const DEFAULT_ADMISSION: Readonly<AdmissionLimits> = Object.freeze({
  maxPending: 512,
  maxPendingPerAddress: 32,
  upgradeTimeoutMs: 5000,
});

/** Ends a pending connection, saying why: closes its socket and records the rejection. */
export type Drop<Kind extends string = AdmissionRejection> = (kind: Kind | AdmissionRejection, reason: string) => void;

interface Pending<Kind extends string> {
  socket: Socket;
  host: string;
  timer?: NodeJS.Timeout;
  drop: Drop<Kind>;
}

/** `Kind`: the rejection kinds its owner's drops name, beyond its own. */
export class Admission<Kind extends string = AdmissionRejection> {
  /** By "host:port"; a Map iterates in insertion order, so the first entry is the oldest. */
  private readonly pending = new Map<string, Pending<Kind>>();
  private readonly perHost = new Map<string, number>();

  constructor(
    private readonly limits: AdmissionLimits,
    private readonly reject: (address: string, kind: Kind | AdmissionRejection, reason: string) => void,
  ) {
    for (const [key, v] of Object.entries(limits)) {
      if (!Number.isSafeInteger(v) || v < 1)
        throw new RangeError(`admission.${key} must be a positive integer, got ${v}`);
    }
  }

  /** Unauthenticated connections held now. */
  get size(): number {
    return this.pending.size;
  }

  /** A new TCP connection (a net.Server's 'connection'): admitted, or refused and destroyed. */
  admit(socket: Socket): void {
    const host = socket.remoteAddress ?? 'unknown';
    const key = admissionKey(socket);
    const { maxPending, maxPendingPerAddress, upgradeTimeoutMs } = this.limits;
    if ((this.perHost.get(host) ?? 0) >= maxPendingPerAddress) {
      this.reject(key, 'address-limit', `${maxPendingPerAddress} unauthenticated connections from ${host} already`);
      socket.destroy();
      return;
    }
    if (this.pending.size >= maxPending) {
      const [oldestKey, oldest] = this.pending.entries().next().value!;
      this.release(oldestKey);
      oldest.drop('pending-limit', `dropped to make room: ${maxPending} unauthenticated connections held`);
    }
    const entry: Pending<Kind> = {
      socket,
      host,
      drop: (kind, reason) => {
        this.reject(key, kind, reason);
        socket.destroy();
      },
    };
    entry.timer = setTimeout(() => {
      this.release(key);
      entry.drop('upgrade', `no WebSocket upgrade within ${upgradeTimeoutMs} ms`);
    }, upgradeTimeoutMs);
    // A pending connection alone keeps no process alive (close() ends it anyway).
    entry.timer.unref();
    this.pending.set(key, entry);
    this.perHost.set(host, (this.perHost.get(host) ?? 0) + 1);
    socket.once('close', () => {
      if (this.pending.get(key)?.socket === socket) this.release(key);
    });
  }

  /**
   * The connection at `key` completed the WebSocket upgrade: its upgrade deadline ends and `drop`
   * ends it from now on (the gan-dist handshake has its own). False when it is no longer pending
   * (dropped meanwhile): the caller closes it.
   */
  upgraded(key: string, drop: Drop<Kind>): boolean {
    const entry = this.pending.get(key);
    if (entry === undefined) return false;
    clearTimeout(entry.timer);
    entry.drop = drop;
    return true;
  }

  /** The connection authenticated (or went): it no longer counts against either cap. */
  release(key: string): void {
    const entry = this.pending.get(key);
    if (entry === undefined) return;
    clearTimeout(entry.timer);
    this.pending.delete(key);
    const n = (this.perHost.get(entry.host) ?? 1) - 1;
    if (n > 0) this.perHost.set(entry.host, n);
    else this.perHost.delete(entry.host);
  }

  /** Destroys every pending connection, recording nothing (the server is closing). */
  close(): void {
    for (const [key, entry] of [...this.pending]) {
      this.release(key);
      entry.socket.destroy();
    }
  }
}
