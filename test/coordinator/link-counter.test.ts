// The coordinator's peer-link count: the exact bytes of every frame sent to and received from an
// authenticated worker, none of a monitor's or of the handshake, and per-iteration takes that add up.

import { once } from 'node:events';
import { afterEach, describe, expect, it } from 'vitest';
import { LinkCounter } from '../../coordinator/link-counter.ts';
import type { Peer, PeerServer } from '../../coordinator/server.ts';
import { encodeMessage, type Message } from '../../protocol/wire/protocol.ts';
import { authenticated, testPeerServer } from '../support/peer-server.ts';
import { waitFor } from '../support/wait.ts';

const servers: PeerServer[] = [];
afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => s.close()));
});

/** A small frame a peer may send: 25 RGB images of 2x2. */
const sampleFrame = () =>
  encodeMessage({
    type: 'sample',
    iteration: 1,
    tensors: { images: new Float32Array(300) },
    shapes: { images: [25, 2, 2, 3] },
  });

describe('LinkCounter', () => {
  it('takes what was counted since the last take, and keeps the totals', () => {
    const c = new LinkCounter();
    c.sent(100);
    c.received(7);
    expect(c.take()).toEqual({ sentBytes: 100, receivedBytes: 7 });
    c.sent(5);
    expect(c.take()).toEqual({ sentBytes: 5, receivedBytes: 0 });
    expect(c.take()).toEqual({ sentBytes: 0, receivedBytes: 0 });
    expect(c.totals()).toEqual({ sentBytes: 105, receivedBytes: 7 });
  });
});

describe("the peer server's link count", () => {
  it("counts the exact bytes of a worker's frames both ways, and neither the handshake nor a monitor's", async () => {
    const server = testPeerServer();
    servers.push(server);
    const peers: Peer[] = [];
    const messages: Message[] = [];
    server.on('peer', (p: Peer) => peers.push(p));
    server.on('message', (_p: Peer, m: Message) => messages.push(m));
    const { port } = await server.listen();
    const worker = await authenticated(port);
    const monitor = await authenticated(port, 'monitor');
    await waitFor(() => peers.length === 2, 'both peers', 5000);
    expect(server.link.take()).toEqual({ sentBytes: 0, receivedBytes: 0 });

    const [toWorker, toMonitor] = [peers.find((p) => p.role === 'worker')!, peers.find((p) => p.role === 'monitor')!];
    const stop: Message = { type: 'stop', reason: 'counted' };
    const arrived = once(worker, 'message');
    toWorker.send(stop);
    toWorker.send(sampleFrame());
    toMonitor.send(sampleFrame());
    await arrived;
    const frame = sampleFrame();
    worker.send(frame);
    monitor.send(encodeMessage(stop));
    await waitFor(() => messages.length === 2, 'the two frames', 5000);

    expect(server.link.take()).toEqual({
      sentBytes: encodeMessage(stop).length + frame.length,
      receivedBytes: frame.length,
    });
    worker.close();
    monitor.close();
  });
});
