// A coordinator's PeerServer on 127.0.0.1:0 with a test token and a small model's welcome, and a
// client that completes the gan-dist handshake against it, for tests of the endpoint itself.

import { once } from 'node:events';
import { WebSocket } from 'ws';
import { createClientHandshake } from '../../protocol/wire/handshake.ts';
import { decodeMessage, encodeMessage, type Role } from '../../protocol/wire/protocol.ts';
import { PeerServer, type PeerServerOptions } from '../../coordinator/server.ts';
import { withDeadline } from './wait.ts';

export const TEST_TOKEN = 'k'.repeat(64);
export const TEST_PARAM_HASH = 'f'.repeat(64);
export const WORKER_LIMITS = { maxFrameBytes: 1 << 20, maxHeaderBytes: 1 << 16, maxTensors: 16 };
/** Limits a test client decodes the server's frames with: anything the server may send. */
export const READ_ANY = { maxFrameBytes: 1 << 30, maxHeaderBytes: 1 << 20, maxTensors: 4096 };

/** A server (not yet listening) for TEST_TOKEN with WORKER_LIMITS, `over` replacing any option. */
export function testPeerServer(over: Partial<PeerServerOptions> = {}): PeerServer {
  return new PeerServer({
    host: '127.0.0.1',
    port: 0,
    token: TEST_TOKEN,
    paramTableHash: TEST_PARAM_HASH,
    limits: WORKER_LIMITS,
    welcome: (_hello, id) => ({
      runId: 'run-1',
      workerId: id,
      modelConfig: { latent: 8, filters: 4, imageSize: 32, batchSize: 16 },
      seed: 0,
    }),
    ...over,
  });
}

/** A WebSocket that has completed the handshake as `role` (a worker: through its `ready`). */
export async function authenticated(port: number, role: Role = 'worker'): Promise<WebSocket> {
  const ws = new WebSocket(`ws://127.0.0.1:${port}`, { perMessageDeflate: false });
  ws.on('error', () => {});
  await once(ws, 'open');
  const hs = createClientHandshake({
    token: TEST_TOKEN,
    role,
    ganDistVersion: 'test',
    backend: 'none',
    device: 'test',
  });
  const done = new Promise<void>((resolve, reject) => {
    ws.on('message', (d) => {
      const step = hs.onMessage(decodeMessage(d as Buffer, READ_ANY));
      if (step.error) return reject(step.error);
      if (step.send) ws.send(encodeMessage(step.send));
      if (step.welcome) {
        ws.send(encodeMessage(hs.ready(TEST_PARAM_HASH).send!));
        resolve();
      }
      if (step.done) resolve();
    });
  });
  ws.send(encodeMessage(hs.start().send!));
  await withDeadline(done, `the ${role} handshake`, 5000);
  return ws;
}
