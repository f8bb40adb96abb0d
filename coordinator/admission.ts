// Connections that have not authenticated yet, from TCP accept on: a cap per address (more are
// refused as they arrive), a cap over all addresses (the oldest goes to make room, so strangers
// holding sockets open cannot keep a worker out: its handshake takes milliseconds) and a deadline
// for the WebSocket upgrade, TLS and HTTP headers included.

import type { Socket } from 'node:net';
import type { RejectionKind } from './rejections.ts';

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
export type Drop = (kind: RejectionKind, reason: string) => void;

interface Pending {
  socket: Socket;
  host: string;
  timer?: NodeJS.Timeout;
  drop: Drop;
}

export class Admission {
  /** By "host:port"; a Map iterates in insertion order, so the first entry is the oldest. */
  private readonly pending = new Map<string, Pending>();
  private readonly perHost = new Map<string, number>();

  constructor(
    private readonly limits: AdmissionLimits,
    private readonly reject: (address: string, kind: RejectionKind, reason: string) => void,
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
    const key = `${host}:${socket.remotePort}`;
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
    const entry: Pending = {
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
  upgraded(key: string, drop: Drop): boolean {
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
