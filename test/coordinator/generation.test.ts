import { describe, expect, it } from 'vitest';
import type { WorkerSlot } from '../../coordinator/dispatcher.ts';
import { Generation } from '../../coordinator/generation.ts';
import type { Peer } from '../../coordinator/server.ts';
import type { Message, SampleMessage } from '../../protocol/wire/protocol.ts';

/** Workers that answer sample requests after `answerMs`, or never (undefined); closing one removes it. */
function workers(answerMs: (number | undefined)[]) {
  const live = new Map<number, WorkerSlot>();
  const closed: { id: number; reason: string }[] = [];
  let generation: Generation;
  for (const [i, ms] of answerMs.entries()) {
    const id = i + 1;
    const peer = {
      id,
      send: (m: Message | Buffer) => {
        if (Buffer.isBuffer(m) || m.type !== 'sampleRequest' || ms === undefined) return;
        const k = m.shapes.z[0];
        const reply: SampleMessage = {
          type: 'sample',
          iteration: m.iteration,
          tensors: { images: new Float32Array(k * 4).fill(id) },
          shapes: { images: [k, 1, 1, 4] },
        };
        setTimeout(() => generation.onSample(peer as unknown as Peer, reply), ms);
      },
      close: (reason: string) => {
        closed.push({ id, reason });
        live.delete(id);
        generation.onGone(peer as unknown as Peer, reason);
      },
    };
    live.set(id, { peer: peer as unknown as Peer, weightsVersion: 0, shardsDone: 0, capacity: 1 });
  }
  const events: { name: string; fields: Record<string, unknown> }[] = [];
  generation = new Generation({
    dispatcher: { idleWorker: () => live.values().next().value, syncWeights: () => {} },
    latent: 2,
    deadlineMs: 200,
    event: (name, fields) => events.push({ name, fields }),
    writeSamples: async (iteration) => `iter-${iteration}.png`,
  });
  return { generation, closed, events };
}

describe('sample and evaluation requests', () => {
  it('drops a worker that ignores a sample request past the deadline and asks another', async () => {
    const { generation, closed, events } = workers([undefined, 5]);
    const t0 = performance.now();
    expect(await generation.sample(7, new Float32Array(3 * 2), 3)).toBe('iter-7.png');
    expect(performance.now() - t0).toBeGreaterThanOrEqual(190);
    expect(closed).toEqual([{ id: 1, reason: 'no answer to a sample request within 200 ms' }]);
    expect(events.map((e) => e.name)).toEqual(['sample-failed', 'sample-written']);
  });

  it('gives up, without waiting for ever, when no worker answers', async () => {
    const { generation, closed } = workers([undefined, undefined, undefined, undefined]);
    expect(await generation.sample(1, new Float32Array(2), 1)).toBeUndefined();
    // Three attempts, each on the next worker.
    expect(closed.map((c) => c.id)).toEqual([1, 2, 3]);
  });

  it('keeps a worker that answers within the deadline', async () => {
    const { generation, closed } = workers([20]);
    expect(await generation.sample(2, new Float32Array(2), 1)).toBe('iter-2.png');
    expect(closed).toEqual([]);
  });
});
