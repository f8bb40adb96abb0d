// The run's credentials against a live coordinator: what a worker token may not do over the wire,
// a peer that keeps sending frames nobody asked for, and an older run's one token doing everything.

import { afterEach, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { LogBroadcaster } from '../../coordinator/broadcast.ts';
import type { Coordinator } from '../../coordinator/coordinator.ts';
import { connectMonitor } from '../../monitor/remote.ts';
import { modelConfigOf, resolveConfig, type TrainConfig } from '../../protocol/config.ts';
import { parameterTable } from '../../protocol/model/architecture.ts';
import { newRoleTokens, newToken } from '../../protocol/wire/auth.ts';
import { createClientHandshake } from '../../protocol/wire/handshake.ts';
import { decodeMessage, encodeMessage, paramTableHash, type Message } from '../../protocol/wire/protocol.ts';
import { runWorker } from '../../worker/client.ts';
import { WorkerExit } from '../../worker/session-options.ts';
import { startCoordinator, type Harness } from '../support/harness.ts';
import { waitFor } from '../support/wait.ts';

const tiny = (over: Partial<TrainConfig> = {}) =>
  resolveConfig({ preset: 'tiny', flags: { seed: 9, validationFrequency: 1e6, ...over } });
const paramHash = paramTableHash(parameterTable(modelConfigOf(tiny())));
const running: Coordinator[] = [];
afterEach(() => {
  for (const c of running.splice(0)) if (c.state !== 'finished' && c.state !== 'failed') c.requestStop('test over');
});

async function coordinator(opts: Parameters<typeof startCoordinator>[1], config = tiny()): Promise<Harness> {
  const h = await startCoordinator(config, opts);
  running.push(h.coordinator);
  return h;
}

/** A worker that completes the handshake with `token`, then sends what the test says; resolves once joined. */
async function rawWorker(endpoint: string, token: string, capacity?: number) {
  const ws = new WebSocket(`ws://${endpoint}`, { perMessageDeflate: false });
  const closed = new Promise<void>((resolve) => ws.on('close', () => resolve()));
  ws.on('error', () => {});
  const hs = createClientHandshake({
    token,
    role: 'worker',
    ganDistVersion: 'test',
    backend: 'none',
    device: 'test',
    capacity,
  });
  await new Promise<void>((resolve, reject) => {
    ws.once('open', () => ws.send(encodeMessage(hs.start().send!)));
    ws.on('message', (d) => {
      if (hs.state === 'done') return;
      const step = hs.onMessage(
        decodeMessage(d as Buffer, { maxFrameBytes: 1 << 20, maxHeaderBytes: 1 << 16, maxTensors: 0 }),
      );
      if (step.error) return reject(step.error);
      if (step.send) ws.send(encodeMessage(step.send));
      if (step.welcome) {
        ws.send(encodeMessage(hs.ready(paramHash).send!));
        resolve();
      }
    });
  });
  return { send: (m: Message) => ws.send(encodeMessage(m)), closed };
}

const leftReason = (h: Harness) => h.events.find((e) => e.event === 'worker-left')?.fields.reason as string | undefined;

describe('run roles on a live coordinator', () => {
  it('drops a worker-token peer that sends Stop, and the run is not stopped', async () => {
    const tokens = newRoleTokens();
    const h = await coordinator({ minWorkers: 2, tokens, monitors: new LogBroadcaster() });
    const w = await rawWorker(h.endpoint, tokens.worker);
    await waitFor(() => h.events.some((e) => e.event === 'worker-joined'), 'the worker to join', 10_000);
    expect(h.events.find((e) => e.event === 'worker-joined')?.fields).toMatchObject({ credential: 'worker' });
    w.send({ type: 'stop', reason: 'let me stop it' });
    await w.closed;
    await waitFor(() => leftReason(h) !== undefined, 'the worker to be dropped', 10_000);
    expect(leftReason(h)).toMatch(/unexpected 'stop' from a worker/);
    expect(h.events.some((e) => e.event === 'stop-requested')).toBe(false);
  });

  it("logs a node's report of its local workers, and drops a single worker that sends one", async () => {
    const tokens = newRoleTokens();
    const h = await coordinator({ minWorkers: 3, tokens });
    const report: Message = {
      type: 'nodeWorkers',
      workers: [{ rank: 0, device: 'CPU', backend: 'wasm', state: 'joined', imagesPerSec: 10 }],
    };
    const node = await rawWorker(h.endpoint, tokens.worker, 2);
    node.send(report);
    await waitFor(() => h.events.some((e) => e.event === 'node-workers'), 'the report to be logged', 10_000);
    expect(h.events.find((e) => e.event === 'node-workers')?.fields).toMatchObject({ workers: report.workers });
    const single = await rawWorker(h.endpoint, tokens.worker);
    single.send(report);
    await single.closed;
    await waitFor(() => leftReason(h) !== undefined, 'the single worker to be dropped', 10_000);
    expect(leftReason(h)).toMatch(/sent 'nodeWorkers' but joined as a single worker/);
    // A burst of reports: the first after a pause is logged, the rest are strikes, and past the bound the node goes.
    for (let i = 0; i < 20; i++) node.send(report);
    await node.closed;
    const reasons = () => h.events.filter((e) => e.event === 'worker-left').map((e) => String(e.fields.reason));
    await waitFor(() => reasons().length === 2, 'the node to be dropped', 10_000);
    expect(reasons()[1]).toMatch(/stale or unsolicited frames .*node reports faster than two a second/);
    expect(h.events.filter((e) => e.event === 'node-workers').length).toBeLessThanOrEqual(2);
  });

  it('disconnects a worker that keeps sending stale results and samples nobody asked for', async () => {
    const h = await coordinator({ minWorkers: 2, tokens: newRoleTokens() });
    const w = await rawWorker(h.endpoint, h.token);
    const stale: Message = {
      type: 'gradientsNonFinite',
      iteration: 999,
      shardId: 0,
      weightsVersion: 0,
      n: 1,
      tensorNames: ['x'],
    };
    const sample: Message = {
      type: 'sample',
      iteration: 1,
      tensors: { images: new Float32Array(12) },
      shapes: { images: [1, 2, 2, 3] },
    };
    for (let i = 0; i < 10; i++) w.send(stale);
    for (let i = 0; i < 10; i++) w.send(sample);
    await w.closed;
    await waitFor(() => leftReason(h) !== undefined, 'the worker to be dropped', 10_000);
    expect(leftReason(h)).toMatch(/^sent 17 stale or unsolicited frames within 60 s \(the last: a sample nobody asked/);
    // Each strike before the bound was logged once: 10 stale results, and no more lines after the drop.
    expect(h.events.filter((e) => e.event === 'stale-result')).toHaveLength(10);
  });

  it("lets an older run's one token join, watch and Stop", async () => {
    const token = newToken();
    const monitors = new LogBroadcaster();
    const h = await coordinator({ minWorkers: 1, tokens: token, monitors }, tiny({ iterations: 100000 }));
    const worker = runWorker({
      url: `ws://${h.endpoint}`,
      token,
      backend: 'wasm',
      ganDistVersion: 'test',
      simulateStepMs: 1,
    });
    const done = h.coordinator.run();
    await waitFor(() => h.records.length >= 2, 'two iterations', 30_000);
    const conn = await connectMonitor({
      url: `ws://${h.endpoint}`,
      token,
      ganDistVersion: 'test',
      onLine: () => {},
      onClose: () => {},
    });
    conn.requestStop('q pressed');
    expect(await done).toBe('finished');
    expect(h.events.find((e) => e.event === 'stop-requested')?.fields.reason).toMatch(/by the monitor/);
    const joined = h.events.filter((e) => e.event === 'worker-joined').map((e) => e.fields);
    expect(joined).toEqual([
      expect.objectContaining({ role: 'worker', credential: 'run' }),
      expect.objectContaining({ role: 'monitor', credential: 'run' }),
    ]);
    expect((await worker).exitCode).toBe(WorkerExit.DONE);
  });
});
