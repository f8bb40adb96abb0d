// The dispatcher on its own, with fake peers that record what they are sent: which worker gets
// which shard, what happens to a shard whose worker leaves or fails, and the step deadline.

import { afterEach, describe, expect, it, vi } from 'vitest';
import {
  DEADLINE_FACTOR,
  Dispatcher,
  FIRST_DEADLINE_MS,
  MIN_DEADLINE_MS,
  type DispatcherHooks,
  type ShardTask,
} from '../../coordinator/dispatcher.ts';
import type { Peer } from '../../coordinator/server.ts';
import { GanDistError } from '../../protocol/errors.ts';
import type { GradientsMessage, GradientsNonFiniteMessage } from '../../protocol/wire/protocol.ts';

const WEIGHTS = Buffer.from('weights v1');

interface FakePeer extends Peer {
  sent: string[];
  closed: string[];
  computing: boolean[];
}

/** A peer that records what it is sent (frames as text), its computing flag and why it was closed. */
function fakePeer(id: number): FakePeer {
  const peer: FakePeer = {
    id,
    role: 'worker',
    credential: 'worker',
    address: `fake:${id}`,
    hello: {} as Peer['hello'],
    sent: [],
    closed: [],
    computing: [],
    send: (m) => peer.sent.push(Buffer.isBuffer(m) ? m.toString() : m.type),
    bufferedBytes: () => 0,
    drained: async () => {},
    setComputing: (on) => peer.computing.push(on),
    close: (reason) => peer.closed.push(reason),
  };
  return peer;
}

const shards = (rows: number[]): ShardTask[] => {
  let rowStart = 0;
  return rows.map((rowCount, shardId) => {
    const task = {
      shardId,
      rowStart,
      rowCount,
      frame: Buffer.from(`shard ${shardId}`),
      done: false,
      nonFiniteFrom: new Set<number>(),
    };
    rowStart += rowCount;
    return task;
  });
};

const gradients = (iteration: number, shardId: number, n: number): GradientsMessage => ({
  type: 'gradients',
  iteration,
  shardId,
  weightsVersion: 1,
  n,
  scoreG: 0.5,
  scoreD: 0.5,
  lossG: 1,
  lossD: 1,
  timings: { computeMs: 2 },
  tensors: {},
  shapes: {},
});

const nonFinite = (iteration: number, shardId: number, n: number): GradientsNonFiniteMessage => ({
  type: 'gradientsNonFinite',
  iteration,
  shardId,
  weightsVersion: 1,
  n,
  tensorNames: ['D/conv1/w'],
});

const dispatchers: Dispatcher[] = [];
afterEach(() => {
  for (const d of dispatchers.splice(0)) d.stop();
  vi.useRealTimers();
});

function setup(validate: DispatcherHooks['validate'] = () => undefined) {
  const events: { name: string; fields: Record<string, unknown>; level?: string }[] = [];
  const d = new Dispatcher({
    weights: () => ({ version: 1, frames: [WEIGHTS] }),
    validate,
    event: (name, fields, level) => events.push({ name, fields, level }),
  });
  dispatchers.push(d);
  return { d, events, named: (name: string) => events.filter((e) => e.name === name) };
}

describe('dispatcher', () => {
  it('gives each idle worker the weights and one shard, queues the rest, and resolves with every result', async () => {
    const { d } = setup();
    const [a, b] = [fakePeer(1), fakePeer(2)];
    d.add(a);
    d.add(b);
    const accepted: number[] = [];
    const round = d.run(1, shards([4, 4, 4]), (r) => accepted.push(r.task.shardId));
    expect(a.sent).toEqual(['weights v1', 'shard 0']);
    expect(b.sent).toEqual(['weights v1', 'shard 1']);
    expect([a.computing, b.computing]).toEqual([[true], [true]]);

    d.onGradients(a, gradients(1, 0, 4));
    // It holds the current weights already: only the next shard goes out.
    expect(a.sent).toEqual(['weights v1', 'shard 0', 'shard 2']);
    expect(a.computing).toEqual([true, false, true]);
    d.onGradients(b, gradients(1, 1, 4));
    d.onGradients(a, gradients(1, 2, 4));
    const results = await round;
    expect(results.map((r) => [r.task.shardId, r.workerId])).toEqual([
      [0, 1],
      [1, 2],
      [2, 1],
    ]);
    expect(accepted).toEqual([0, 1, 2]);
    expect(d.workers.get(1)?.shardsDone).toBe(2);
    expect(d.idleWorker()?.peer.id).toBe(1);
  });

  it('gives the shard of a worker that leaves to another worker within the same iteration', async () => {
    const { d, named } = setup();
    const [a, b] = [fakePeer(1), fakePeer(2)];
    d.add(a);
    d.add(b);
    const round = d.run(7, shards([4, 4]));
    d.remove(1, 'connection closed');
    expect(named('shard-reassigned').map((e) => e.fields)).toEqual([
      { iteration: 7, shardId: 0, fromWorker: 1, reason: 'connection closed' },
    ]);
    d.onGradients(b, gradients(7, 1, 4));
    expect(b.sent).toEqual(['weights v1', 'shard 1', 'shard 0']);
    d.onGradients(b, gradients(7, 0, 4));
    expect((await round).map((r) => [r.task.shardId, r.workerId])).toEqual([
      [1, 2],
      [0, 2],
    ]);
  });

  it('waits for a new worker when the last one leaves mid-shard, then gives it the shard', async () => {
    const { d, named } = setup();
    d.add(fakePeer(1));
    const round = d.run(3, shards([4]));
    d.remove(1, 'missed the step deadline');
    expect(named('waiting-for-workers')).toEqual([
      { name: 'waiting-for-workers', fields: { iteration: 3 }, level: 'warn' },
    ]);
    const late = fakePeer(2);
    d.add(late);
    expect(late.sent).toEqual(['weights v1', 'shard 0']);
    d.onGradients(late, gradients(3, 0, 4));
    expect((await round).map((r) => r.workerId)).toEqual([2]);
  });

  it('drops as stale an answer for another iteration, for a shard the sender does not hold, or a repeat', async () => {
    const { d, named } = setup();
    const [a, b] = [fakePeer(1), fakePeer(2)];
    d.add(a);
    d.add(b);
    const round = d.run(5, shards([4, 4]));
    d.onGradients(a, gradients(4, 0, 4)); // an iteration already closed
    d.onGradients(b, gradients(5, 0, 4)); // shard 0 is a's
    d.onGradients(a, gradients(5, 0, 4));
    d.onGradients(a, gradients(5, 0, 4)); // the same answer again
    expect(named('stale-result').map((e) => e.fields)).toEqual([
      { worker: 1, iteration: 4, shardId: 0 },
      { worker: 2, iteration: 5, shardId: 0 },
      { worker: 1, iteration: 5, shardId: 0 },
    ]);
    d.onGradients(b, gradients(5, 1, 4));
    expect((await round).map((r) => [r.task.shardId, r.workerId])).toEqual([
      [0, 1],
      [1, 2],
    ]);
    // After the round closed, a late answer counts for nothing.
    d.onGradients(b, gradients(5, 1, 4));
    expect(named('stale-result')).toHaveLength(4);
    expect(d.workers.get(2)?.shardsDone).toBe(1);
  });

  it('closes a worker that answers for the wrong number of rows or with bad gradients, and recomputes the shard', async () => {
    let corrupt = true;
    const { d } = setup((msg) => (corrupt && msg.shardId === 1 ? 'G/proj/w has 3 values, expected 4096' : undefined));
    const [a, b] = [fakePeer(1), fakePeer(2)];
    d.add(a);
    d.add(b);
    const round = d.run(2, shards([4, 4]));
    d.onGradients(a, gradients(2, 0, 3));
    expect(a.closed).toEqual(['returned n=3 for a shard of 4 rows']);
    d.onGradients(b, gradients(2, 1, 4));
    expect(b.closed).toEqual(['bad gradients: G/proj/w has 3 values, expected 4096']);
    // The server reports both as gone; a third worker computes both shards.
    d.remove(2, b.closed[0]);
    d.remove(1, a.closed[0]);
    corrupt = false;
    const c = fakePeer(3);
    d.add(c);
    expect(c.sent).toEqual(['weights v1', 'shard 0']);
    d.onGradients(c, gradients(2, 0, 4));
    expect(c.sent.at(-1)).toBe('shard 1');
    d.onGradients(c, gradients(2, 1, 4));
    expect((await round).map((r) => [r.task.shardId, r.workerId])).toEqual([
      [0, 3],
      [1, 3],
    ]);
  });

  it('recomputes a non-finite shard on another worker, and rejects with GAN_DIST_E_DIVERGED when that one fails too', async () => {
    const { d, named } = setup();
    const [a, b] = [fakePeer(1), fakePeer(2)];
    d.add(a);
    d.add(b);
    const round = d.run(9, shards([4]));
    d.onGradients(a, nonFinite(9, 0, 4));
    expect(named('shard-nonfinite').map((e) => e.fields)).toEqual([{ iteration: 9, shardId: 0, worker: 1 }]);
    expect(a.sent).toEqual(['weights v1', 'shard 0']); // not back to the worker that failed it
    expect(b.sent).toEqual(['weights v1', 'shard 0']);
    d.onGradients(b, nonFinite(9, 0, 4));
    await expect(round).rejects.toBeInstanceOf(GanDistError);
    await expect(round).rejects.toMatchObject({
      code: 'GAN_DIST_E_DIVERGED',
      message: expect.stringMatching(/iteration 9: shard 0 gave non-finite gradients \(D\/conv1\/w\) on 2 worker/),
      hint: expect.stringMatching(/lower --lr/),
    });
  });

  it('with a single worker, takes one non-finite shard as divergence', async () => {
    const { d } = setup();
    const a = fakePeer(1);
    d.add(a);
    const round = d.run(1, shards([4, 4]));
    d.onGradients(a, nonFinite(1, 0, 4));
    await expect(round).rejects.toMatchObject({ code: 'GAN_DIST_E_DIVERGED' });
  });

  it(`allows ${FIRST_DEADLINE_MS} ms until a round trip is measured, then ${DEADLINE_FACTOR}x the time per row, never under ${MIN_DEADLINE_MS} ms`, async () => {
    vi.useFakeTimers({ toFake: ['setInterval', 'clearInterval', 'performance'] });
    const { d } = setup();
    const a = fakePeer(1);
    d.add(a);
    expect(d.deadlineMs(4)).toBe(FIRST_DEADLINE_MS);
    const round = d.run(1, shards([4]));
    vi.advanceTimersByTime(400); // 100 ms a row
    d.onGradients(a, gradients(1, 0, 4));
    await round;
    expect(d.deadlineMs(100)).toBeCloseTo(DEADLINE_FACTOR * 100 * 100);
    expect(d.deadlineMs(4)).toBe(MIN_DEADLINE_MS);
  });

  it('closes a worker that holds its shard past the deadline, not before, and the shard moves on', () => {
    vi.useFakeTimers({ toFake: ['setInterval', 'clearInterval', 'performance'] });
    const { d, named } = setup();
    const [a, b] = [fakePeer(1), fakePeer(2)];
    // As the server does: closing a peer reports it gone.
    a.close = (reason) => {
      a.closed.push(reason);
      d.remove(a.id, reason);
    };
    d.add(a);
    void d.run(4, shards([4]));
    d.add(b); // joins while a computes, so idle
    vi.advanceTimersByTime(FIRST_DEADLINE_MS - 1000);
    expect(a.closed).toEqual([]);
    vi.advanceTimersByTime(2000);
    expect(a.closed).toEqual([`missed the step deadline: shard 0 of iteration 4 took over ${FIRST_DEADLINE_MS} ms`]);
    expect(named('shard-reassigned').map((e) => e.fields.fromWorker)).toEqual([1]);
    expect(b.sent).toEqual(['weights v1', 'shard 0']);
    expect(b.closed).toEqual([]);
  });

  it('waitForWorkers resolves when the n-th worker joins, and throws GAN_DIST_E_WORKER once stopped', async () => {
    const { d } = setup();
    d.add(fakePeer(1));
    let joined = false;
    const two = d.waitForWorkers(2).then(() => {
      joined = true;
    });
    await Promise.resolve();
    expect(joined).toBe(false);
    d.add(fakePeer(2));
    await two;
    expect(joined).toBe(true);

    const stop = new AbortController();
    const three = d.waitForWorkers(3, stop.signal);
    stop.abort();
    await expect(three).rejects.toMatchObject({
      code: 'GAN_DIST_E_WORKER',
      message: 'stopped while waiting for workers',
    });
  });
});
