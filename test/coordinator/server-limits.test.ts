// What a stranger can cost the coordinator before it authenticates: a frame above the pre-auth cap
// is refused from its header, before its payload is read; connections are capped per address and
// overall, with deadlines; rejections reach the log as the first of each kind and a count.

import { once } from 'node:events';
import { connect, type Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import * as wsLib from 'ws';
import {
  MONITOR_LIMITS,
  PRE_AUTH_LIMITS,
  WS_MAX_PAYLOAD,
  encodeMessage,
  frameLimitFor,
  type Message,
} from '../../protocol/wire/protocol.ts';
import { FRAME_CAP_WORKS, wsFrameCap } from '../../protocol/wire/frame-cap.ts';
import type { PeerServer, Peer, PeerServerOptions } from '../../coordinator/server.ts';
import type { Rejection, RejectionSummary } from '../../coordinator/rejections.ts';
import { waitFor, withDeadline } from '../support/wait.ts';
import { WORKER_LIMITS, authenticated, testPeerServer } from '../support/peer-server.ts';

type ReceiverLike = NodeJS.WritableStream & { _maxPayload: number; on(e: 'error', f: (err: Error) => void): void };

interface Started {
  server: PeerServer;
  port: number;
  peers: Peer[];
  gone: { peer: Peer; reason: string }[];
  messages: Message[];
  rejected: Rejection[];
  summaries: RejectionSummary[];
}

const servers: PeerServer[] = [];
const sockets: Socket[] = [];
afterEach(async () => {
  for (const s of sockets.splice(0)) s.destroy();
  await Promise.all(servers.splice(0).map((s) => s.close()));
});

async function start(over: Partial<PeerServerOptions> = {}): Promise<Started> {
  const server = testPeerServer(over);
  servers.push(server);
  const s: Started = { server, port: 0, peers: [], gone: [], messages: [], rejected: [], summaries: [] };
  server.on('peer', (p: Peer) => s.peers.push(p));
  server.on('gone', (peer: Peer, reason: string) => s.gone.push({ peer, reason }));
  server.on('message', (_p: Peer, m: Message) => s.messages.push(m));
  server.on('rejected', (r: Rejection) => s.rejected.push(r));
  server.on('rejected-summary', (r: RejectionSummary) => s.summaries.push(r));
  s.port = (await server.listen()).port;
  return s;
}

/** A TCP connection that has sent nothing, from `localAddress`. */
async function idleSocket(port: number, localAddress = '127.0.0.1'): Promise<Socket> {
  const socket = connect({ port, host: '127.0.0.1', localAddress });
  sockets.push(socket);
  socket.on('error', () => {});
  socket.resume(); // read what the server says, so its closing is seen
  await once(socket, 'connect');
  return socket;
}

const closedWithin = (socket: Socket, ms: number) =>
  withDeadline(
    socket.closed ? Promise.resolve() : once(socket, 'close').then(() => undefined),
    'the server to close the socket',
    ms,
  );

/** A raw socket past the WebSocket upgrade, with ws's 101 answer read. */
async function upgradedSocket(port: number): Promise<Socket> {
  const socket = await idleSocket(port);
  socket.write(
    'GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n' +
      'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n',
  );
  let head = '';
  await withDeadline(
    new Promise<void>((resolve) => {
      const onData = (d: Buffer) => {
        head += d.toString('latin1');
        if (!head.includes('\r\n\r\n')) return;
        socket.off('data', onData);
        resolve();
      };
      socket.on('data', onData);
    }),
    'the upgrade answer',
    5000,
  );
  expect(head).toMatch(/^HTTP\/1.1 101/);
  return socket;
}

/** The header of a masked binary frame (mask key zero: the payload goes as it is) of `length` bytes. */
function frameHeader(length: number): Buffer {
  const h = Buffer.alloc(14);
  h[0] = 0x82;
  h[1] = 0x80 | 127;
  h.writeBigUInt64BE(BigInt(length), 2);
  return h;
}

/** A ws client that has finished the handshake as `role`. */
/** A valid gradients-shaped frame of about `bytes` bytes. */
function bigMessage(bytes: number): Buffer {
  return encodeMessage({
    type: 'sample',
    iteration: 1,
    tensors: { images: new Float32Array(Math.ceil(bytes / 12) * 3) },
    shapes: { images: [Math.ceil(bytes / 12), 1, 1, 3] },
  });
}

const canBind127002 = await new Promise<boolean>((resolve) => {
  const s = connect({ port: 9, host: '127.0.0.1', localAddress: '127.0.0.2' });
  s.on('error', (err: NodeJS.ErrnoException) => resolve(err.code !== 'EADDRNOTAVAIL'));
  s.on('connect', () => {
    s.destroy();
    resolve(true);
  });
});

describe('frame limits', () => {
  it('refuses a frame above the pre-auth cap from its header, before any of its payload is sent', async () => {
    const s = await start();
    const socket = await upgradedSocket(s.port);
    // 40 MB announced, not one byte of it written: only the header can have been checked.
    socket.write(frameHeader(40 * 1024 * 1024));
    await closedWithin(socket, 5000);
    await waitFor(() => s.rejected.length > 0, 'the rejection', 5000);
    expect(s.rejected[0]).toMatchObject({ kind: 'frame', reason: expect.stringMatching(/Max payload size exceeded/) });
  });

  it("raises a worker's cap to the model's once it has authenticated, for that connection only", async () => {
    const s = await start();
    const worker = await authenticated(s.port);
    const stranger = await upgradedSocket(s.port);
    worker.send(bigMessage(64 * 1024));
    await waitFor(() => s.messages.length === 1, 'the 64 KB message from the worker', 5000);
    stranger.write(frameHeader(64 * 1024));
    await closedWithin(stranger, 5000);
    // Above the model's limit: refused by ws as well, the worker's connection with it.
    worker.send(bigMessage(WORKER_LIMITS.maxFrameBytes + 1024));
    await waitFor(() => s.gone.length === 1, 'the worker to be dropped', 5000);
    expect(s.gone[0].reason).toMatch(/Max payload size exceeded/);
  });

  it("gives a monitor the monitor's cap, not the model's", async () => {
    const s = await start();
    const monitor = await authenticated(s.port, 'monitor');
    await waitFor(() => s.peers.length === 1, 'the monitor', 5000);
    monitor.send(bigMessage(MONITOR_LIMITS.maxFrameBytes + 1024));
    await waitFor(() => s.gone.length === 1, 'the monitor to be dropped', 5000);
    expect(s.gone[0].reason).toMatch(/Max payload size exceeded/);
  });

  it("relies on ws reading a connection's limit from Receiver._maxPayload at each frame header", async () => {
    // What the server's raise after authentication depends on; a ws that moves it fails here.
    expect(FRAME_CAP_WORKS).toBe(true);
    const Receiver = (wsLib as unknown as { Receiver: new (o: object) => ReceiverLike }).Receiver;
    const errors: string[] = [];
    const receiver = new Receiver({ isServer: true, maxPayload: PRE_AUTH_LIMITS.maxFrameBytes });
    receiver.on('error', (err: Error) => errors.push(err.message));
    receiver._maxPayload = 1 << 20;
    const settled = () => new Promise((r) => setImmediate(r)); // a Writable reports errors on the next tick
    receiver.write(frameHeader(64 * 1024));
    await settled();
    expect(errors).toEqual([]);
    receiver._maxPayload = PRE_AUTH_LIMITS.maxFrameBytes;
    receiver.write(Buffer.alloc(64 * 1024)); // the payload of that frame
    receiver.write(frameHeader(64 * 1024));
    await settled();
    expect(errors).toEqual(['Max payload size exceeded']);
  });

  it('clamps every limit to what ws can hold, and refuses a config whose frames would not fit', () => {
    expect(wsFrameCap(2 ** 31)).toBe(WS_MAX_PAYLOAD);
    expect(wsFrameCap(2 ** 32 + 5) | 0).toBeGreaterThan(0);
    // The largest batch the config allows, at 64 px: a sample of 65536 images is 3.2 GB.
    expect(() => frameLimitFor(3_576_704, 65536, 64)).toThrow(/--batch-size: .* would be \d+ bytes/);
    expect(() => frameLimitFor(700_000_000, 16, 64)).toThrow(/--filters/);
    expect(() => frameLimitFor(3_576_704, 16, 64, { sampleCount: 100_000 })).toThrow(/--eval-count/);
    expect(frameLimitFor(3_576_704, 128, 64).maxFrameBytes).toBeLessThan(WS_MAX_PAYLOAD);
  });
});

describe('unauthenticated connections', () => {
  it('refuses connections from one address beyond its cap; other addresses still get in', async () => {
    const s = await start({ admission: { maxPendingPerAddress: 3 } });
    const held = await Promise.all([1, 2, 3].map(() => idleSocket(s.port)));
    const extra = await idleSocket(s.port);
    await closedWithin(extra, 5000);
    expect(s.rejected[0]).toMatchObject({ kind: 'address-limit' });
    expect(held.every((h) => !h.closed)).toBe(true);
    // Once one of them goes, its address has room again.
    held[0].destroy();
    await waitFor(() => s.server.pendingCount() === 2, 'the slot to be freed', 5000);
    await authenticated(s.port);
  });

  it.skipIf(!canBind127002)('lets a worker in while another address holds its cap of idle sockets', async () => {
    const s = await start({ admission: { maxPendingPerAddress: 4 } });
    const flood = await Promise.all(Array.from({ length: 12 }, () => idleSocket(s.port, '127.0.0.2')));
    await waitFor(() => flood.filter((f) => f.closed).length === 8, 'the 8 over the cap to be refused', 5000);
    await authenticated(s.port);
    await waitFor(() => s.peers.length === 1, 'the worker to be let in', 5000);
  });

  it('drops the oldest unauthenticated connection to admit one more past the overall cap', async () => {
    const s = await start({ admission: { maxPending: 3 } });
    const held = [];
    for (let i = 0; i < 3; i++) {
      held.push(await idleSocket(s.port));
      await waitFor(() => s.server.pendingCount() === i + 1, 'the server to count it', 5000);
    }
    await authenticated(s.port);
    await closedWithin(held[0], 5000);
    expect(held[1].closed || held[2].closed).toBe(false);
    expect(s.rejected[0]).toMatchObject({ kind: 'pending-limit' });
    await waitFor(() => s.peers.length === 1, 'the worker to be let in', 5000);
  });

  it('closes a connection that sends no upgrade in time, and one that does not finish the handshake', async () => {
    const s = await start({ admission: { upgradeTimeoutMs: 200 }, handshakeTimeoutMs: 300 });
    await closedWithin(await idleSocket(s.port), 5000);
    await closedWithin(await upgradedSocket(s.port), 5000);
    await waitFor(() => s.rejected.length === 2, 'both rejections', 5000);
    expect(s.rejected.map((r) => r.kind).sort()).toEqual(['handshake', 'upgrade']);
    expect(s.rejected.find((r) => r.kind === 'handshake')?.reason).toMatch(/handshake not finished within 300 ms/);
  });

  it('keeps an authenticated worker past the header, request and upgrade deadlines', async () => {
    const s = await start({ admission: { upgradeTimeoutMs: 100 }, handshakeTimeoutMs: 100 });
    const worker = await authenticated(s.port);
    // Node checks its HTTP deadlines every 100 ms here; ten rounds of them.
    await new Promise((r) => setTimeout(r, 1000));
    worker.send(bigMessage(1024));
    await waitFor(() => s.messages.length === 1, 'the worker to be heard after the deadlines', 5000);
    expect(s.gone).toHaveLength(0);
  });
});

describe('rejection log', () => {
  it('logs the first rejection of each kind in full, then a count per kind for the window', async () => {
    const s = await start({ rejectionWindowMs: 60_000 });
    for (let i = 0; i < 5; i++) {
      const socket = await upgradedSocket(s.port);
      socket.write(frameHeader(PRE_AUTH_LIMITS.maxFrameBytes + 1));
      await closedWithin(socket, 5000);
    }
    const plain = await idleSocket(s.port);
    plain.write('GET / HTTP/1.1\r\nHost: x\r\n\r\n');
    await closedWithin(plain, 5000);
    await waitFor(() => s.rejected.length === 2, 'one rejection of each kind', 5000);
    expect(s.rejected.map((r) => r.kind)).toEqual(['frame', 'upgrade']);
    expect(s.summaries).toHaveLength(0);
    await s.server.close();
    expect(s.summaries).toEqual([
      { kind: 'frame', count: 5, addresses: 1, windowMs: 60_000 },
      { kind: 'upgrade', count: 1, addresses: 1, windowMs: 60_000 },
    ]);
  });

  it('starts a new window after the last one closed, with its own first line', async () => {
    const s = await start({ rejectionWindowMs: 200 });
    const reject = async () => {
      const socket = await upgradedSocket(s.port);
      socket.write(frameHeader(PRE_AUTH_LIMITS.maxFrameBytes + 1));
      await closedWithin(socket, 5000);
    };
    await reject();
    await reject();
    await waitFor(() => s.summaries.length === 1, 'the first window to close', 5000);
    expect(s.summaries[0]).toMatchObject({ kind: 'frame', count: 2 });
    await reject();
    await waitFor(() => s.rejected.length === 2, "the second window's first line", 5000);
  });
});
