import { once } from 'node:events';
import { describe, expect, it } from 'vitest';
import { WebSocket, WebSocketServer } from 'ws';
import { decodeMessage, encodeMessage, frameLimitFor, type GradientsMessage } from '../../protocol/wire/protocol.ts';
import { fragmentsOf, Uplink } from '../../worker/uplink.ts';

const f32 = (n: number, k: number) => Float32Array.from({ length: n }, (_, i) => Math.sin(i + k));

function gradients(): GradientsMessage {
  const tensors = {
    'G/proj/w': f32(300_000, 1),
    'G/bn1/sum': f32(8, 2),
    'G/bn1/sumSq': f32(8, 3),
    'D/w': f32(50_000, 4),
  };
  const shapes: Record<string, number[]> = {};
  for (const [k, a] of Object.entries(tensors)) shapes[k] = [a.length];
  return {
    type: 'gradients',
    iteration: 3,
    shardId: 1,
    weightsVersion: 2,
    n: 4,
    scoreG: 0.5,
    scoreD: 0.5,
    lossG: 0.7,
    lossD: 1.4,
    timings: { computeMs: 3 },
    tensors,
    shapes,
  };
}

describe('fragmentsOf', () => {
  it('sends large pieces as they are and joins runs of small ones, in order', () => {
    const big = new Uint8Array(70_000).fill(1);
    const pieces = [
      Uint8Array.of(1, 2),
      Uint8Array.of(3),
      big,
      new Uint8Array(0),
      Uint8Array.of(4),
      Uint8Array.of(5, 6),
    ];
    const out = fragmentsOf(pieces);
    expect(out).toHaveLength(3);
    expect([...out[0]]).toEqual([1, 2, 3]);
    expect(out[1]).toBe(big);
    expect([...out[2]]).toEqual([4, 5, 6]);
    expect(Buffer.concat(out).equals(Buffer.concat(pieces))).toBe(true);
  });
});

describe('Uplink over a socket', () => {
  it('sends float32 gradients as fragments straight from their arrays, received as the one frame encodeMessage makes, and says when they may change', async () => {
    const wss = new WebSocketServer({ port: 0 });
    await once(wss, 'listening');
    const port = (wss.address() as { port: number }).port;
    const received = new Promise<Buffer>((resolve) =>
      wss.once('connection', (s) => s.once('message', (data) => resolve(data as Buffer))),
    );
    const ws = new WebSocket(`ws://127.0.0.1:${port}`, { generateMask: (m: Buffer) => m.fill(0) });
    await once(ws, 'open');
    try {
      const g = gradients();
      let sent = 0;
      new Uplink(ws, 'float32').sendGradients(g, () => sent++);
      const frame = await received;
      expect(frame.equals(encodeMessage(g))).toBe(true);
      expect(decodeMessage(frame, frameLimitFor(1e6, 4, 8))).toEqual(g);
      expect(sent).toBe(1);
    } finally {
      ws.terminate();
      wss.close();
    }
  });
});
