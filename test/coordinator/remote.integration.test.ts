import { afterEach, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { newNonce } from '../../protocol/wire/auth.ts';
import { createClientHandshake } from '../../protocol/wire/handshake.ts';
import { modelConfigOf, resolveConfig, type TrainConfig } from '../../protocol/config.ts';
import type { Coordinator } from '../../coordinator/coordinator.ts';
import {
  decodeMessage,
  encodeMessage,
  paramTableHash,
  PRE_AUTH_LIMITS,
  PROTOCOL_VERSION,
  type Message,
} from '../../protocol/wire/protocol.ts';
import { parameterTable } from '../../protocol/model/architecture.ts';
import { runTlsIdentity } from '../../protocol/wire/tls.ts';
import { Rng } from '../../protocol/rng.ts';
import { runWorker } from '../../worker/client.ts';
import { WorkerExit } from '../../worker/session-options.ts';
import { mkdtempSync } from 'node:fs';
import os from 'node:os';
import { spawn } from 'node:child_process';
import path from 'node:path';
import { startCoordinator, type Harness } from '../support/harness.ts';
import { deadline, waitFor } from '../support/wait.ts';

const tiny = (over: Partial<TrainConfig> = {}) =>
  resolveConfig({ preset: 'tiny', flags: { seed: 9, validationFrequency: 1e6, ...over } });
// The parameter table hash of the tiny model, as an honest worker computes it.
const paramHash = paramTableHash(parameterTable(modelConfigOf(tiny())));
const running: Coordinator[] = [];
afterEach(() => {
  for (const c of running.splice(0)) if (c.state !== 'finished' && c.state !== 'failed') c.requestStop('test over');
});

async function coordinator(config: TrainConfig, opts: Parameters<typeof startCoordinator>[1]): Promise<Harness> {
  const h = await startCoordinator(config, opts);
  running.push(h.coordinator);
  return h;
}

import { cliPath as cli } from '../support/paths.ts';
const FZ_CONNECTIONS_MIN = Number(process.env.FZ_PRE ?? 8000) / 8;

/** `gan-dist worker` as a child process; resolves to its exit code. */
function workerProcess(url: string, token: string, extra: string[] = []): Promise<number | null> {
  const child = spawn(
    process.execPath,
    [cli, 'worker', '--join', url, '--backend', 'wasm', '--threads', '1', '--reconnect-timeout', '0', ...extra],
    {
      env: { ...process.env, GAN_DIST_TOKEN: token },
      stdio: 'ignore',
    },
  );
  return new Promise((resolve) => child.on('exit', (code) => resolve(code)));
}

/** A raw client: sends frames, collects decoded replies, reports how the connection ended. */
function rawClient(url: string) {
  const ws = new WebSocket(url, { perMessageDeflate: false });
  const received: Message[] = [];
  const closed = new Promise<void>((resolve) => ws.on('close', () => resolve()));
  ws.on('error', () => {});
  ws.on('message', (d) => {
    try {
      received.push(decodeMessage(d as Buffer, { maxFrameBytes: 1 << 30, maxHeaderBytes: 1 << 20, maxTensors: 4096 }));
    } catch {
      // a reply we cannot read is not what these tests look at
    }
  });
  const opened = new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve());
    ws.once('error', reject);
  });
  return { ws, received, closed, opened };
}

const helloOf = (over: Partial<Extract<Message, { type: 'hello' }>> = {}): Message => ({
  type: 'hello',
  protocolVersion: PROTOCOL_VERSION,
  ganDistVersion: 'test',
  backend: 'none',
  device: 'test',
  nonce: newNonce(),
  role: 'worker',
  ...over,
});

describe('remote workers: who gets in', () => {
  it('turns away a wrong token: the worker exits 10 with the reason, the coordinator logs the rejection', async () => {
    const h = await coordinator(tiny({ iterations: 1 }), { minWorkers: 1 });
    const outcome = await runWorker({
      url: `ws://${h.endpoint}`,
      token: 'not-the-token-of-this-run',
      backend: 'wasm',
      ganDistVersion: 'test',
    });
    expect(outcome.exitCode).toBe(WorkerExit.REJECTED);
    expect(outcome.reason).toMatch(/proof does not match this token/);
    // The worker found the coordinator's proof wrong first and said so before it hung up.
    await waitFor(
      () => h.events.some((e) => e.event === 'peer-rejected'),
      'the coordinator to log the rejection',
      10_000,
    );
    expect(h.events.find((e) => e.event === 'peer-rejected')?.fields.reason).toMatch(/gave up the handshake.*token/);
  });

  it('names both protocol versions when they differ', async () => {
    const h = await coordinator(tiny(), { minWorkers: 1 });
    const c = rawClient(`ws://${h.endpoint}`);
    await c.opened;
    c.ws.send(encodeMessage(helloOf({ protocolVersion: PROTOCOL_VERSION + 1 })));
    await c.closed;
    const reject = c.received.find((m) => m.type === 'reject');
    expect(reject && 'reason' in reject && reject.reason).toMatch(
      new RegExp(`version ${PROTOCOL_VERSION + 1}.*version ${PROTOCOL_VERSION}`),
    );
  });

  it('names both parameter tables when the model differs', async () => {
    const h = await coordinator(tiny(), { minWorkers: 1 });
    const c = rawClient(`ws://${h.endpoint}`);
    const hs = createClientHandshake({
      token: h.token,
      role: 'worker',
      ganDistVersion: 'test',
      backend: 'none',
      device: 'test',
    });
    await c.opened;
    c.ws.on('message', (d) => {
      const step = hs.onMessage(
        decodeMessage(d as Buffer, { maxFrameBytes: 1 << 20, maxHeaderBytes: 1 << 16, maxTensors: 0 }),
      );
      if (step.send) c.ws.send(encodeMessage(step.send));
      if (step.welcome) c.ws.send(encodeMessage(hs.ready('f'.repeat(64)).send!));
    });
    c.ws.send(encodeMessage(hs.start().send!));
    await c.closed;
    const reject = c.received.find((m) => m.type === 'reject');
    expect(reject && 'reason' in reject && reject.reason).toMatch(
      /parameter table f{64}.*coordinator has [0-9a-f]{64}/,
    );
  });

  it('trains over wss with the pinned certificate, and a worker pinning another fingerprint refuses to connect', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'gan-dist-tls-'));
    const identity = await runTlsIdentity(dir);
    const h = await coordinator(tiny({ iterations: 2 }), { minWorkers: 1, tls: identity });
    const wrong = await runWorker({
      url: `wss://${h.endpoint}`,
      token: h.token,
      backend: 'wasm',
      ganDistVersion: 'test',
      fingerprint: 'ab'.repeat(32),
    });
    expect(wrong.exitCode).toBe(WorkerExit.REJECTED);
    expect(wrong.reason).toMatch(/fingerprint .* pins abab/);
    const good = runWorker({
      url: `wss://${h.endpoint}`,
      token: h.token,
      backend: 'wasm',
      ganDistVersion: 'test',
      fingerprint: identity.fingerprint,
    });
    await h.coordinator.run();
    expect((await good).exitCode).toBe(WorkerExit.DONE);
    expect(h.records.map((r) => r.iteration)).toEqual([1, 2]);
  });
});

describe('remote workers: hostile input', () => {
  it('survives 10,000 random and mutated frames from clients while training goes on', async () => {
    const h = await coordinator(tiny({ iterations: 100000 }), { minWorkers: 1 });
    // The honest worker is a process of its own, as in real use: its compute does not hold up the coordinator's loop.
    const worker = workerProcess(`ws://${h.endpoint}`, h.token);
    const done = h.coordinator.run();
    const rng = new Rng(77);
    const valid = encodeMessage(helloOf());
    let sent = 0;
    const mutate = (): Buffer => {
      const kind = rng.nextU32() % 6;
      if (kind === 0) return Buffer.from(Array.from({ length: rng.nextU32() % 64 }, () => rng.nextU32() & 255)); // noise
      if (kind === 1) return valid.subarray(0, rng.nextU32() % valid.length); // truncated
      if (kind === 2) return Buffer.alloc(PRE_AUTH_LIMITS.maxFrameBytes + 1 + (rng.nextU32() % 5000), 7); // oversized before auth
      const b = Buffer.from(valid);
      for (let i = 0; i < 1 + (rng.nextU32() % 4); i++) b[rng.nextU32() % b.length] ^= 1 << (rng.nextU32() % 8); // bit flips
      return b;
    };
    // Pre-auth strangers: 8 frames a connection until it is dropped.
    while (sent < Number(process.env.FZ_PRE ?? 8000)) {
      const c = rawClient(`ws://${h.endpoint}`);
      await c.opened.catch(() => undefined);
      for (let i = 0; i < 8 && c.ws.readyState === c.ws.OPEN; i++, sent++) c.ws.send(mutate());
      c.ws.close();
      await c.closed;
    }
    // Authenticated peers that then misbehave: stale, malformed and non-finite gradients, replays.
    while (sent < Number(process.env.FZ_ALL ?? 10000)) {
      const c = rawClient(`ws://${h.endpoint}`);
      await c.opened;
      const hs = createClientHandshake({
        token: h.token,
        role: 'worker',
        ganDistVersion: 'test',
        backend: 'none',
        device: 'test',
      });
      const ready = new Promise<void>((resolve) => {
        c.ws.on('message', (d) => {
          try {
            const step = hs.onMessage(
              decodeMessage(d as Buffer, { maxFrameBytes: 1 << 30, maxHeaderBytes: 1 << 20, maxTensors: 4096 }),
            );
            if (step.send) c.ws.send(encodeMessage(step.send));
            if (step.welcome) {
              c.ws.send(encodeMessage(hs.ready(paramHash).send!));
              resolve();
            }
          } catch {
            resolve();
          }
        });
      });
      c.ws.send(encodeMessage(hs.start().send!));
      await ready;
      const bad: Message[] = [
        {
          type: 'gradients',
          iteration: 1,
          shardId: 0,
          weightsVersion: 0,
          n: 16,
          scoreG: 0.5,
          scoreD: 0.5,
          lossG: 1,
          lossD: 1,
          timings: { computeMs: 1 },
          tensors: { 'G/proj/w': new Float32Array(3) },
          shapes: { 'G/proj/w': [3] },
        },
        { type: 'gradientsNonFinite', iteration: 999999, shardId: 5, weightsVersion: 0, n: 1, tensorNames: ['x'] },
        { type: 'sample', iteration: 1, tensors: { images: new Float32Array(3) }, shapes: { images: [1, 1, 1, 3] } },
        helloOf(),
      ];
      for (const m of bad) {
        if (c.ws.readyState !== c.ws.OPEN) break;
        c.ws.send(encodeMessage(m));
        sent++;
        if (rng.uniform() < 0.5 && c.ws.readyState === c.ws.OPEN) {
          const f = encodeMessage(m);
          f[rng.nextU32() % f.length] ^= 0xff;
          c.ws.send(f);
          sent++;
        }
      }
      c.ws.close();
      await c.closed;
    }
    const before = h.coordinator.iteration;
    await waitFor(() => h.coordinator.iteration >= before + 2, 'two iterations after the fuzzing', 60_000, 50);
    expect(h.coordinator.state).toBe('running');
    expect(sent).toBeGreaterThanOrEqual(Number(process.env.FZ_ALL ?? 10000));
    h.coordinator.requestStop('fuzz over');
    await done;
    expect(await worker).toBe(WorkerExit.DONE);
    const its = h.records.map((r) => r.iteration);
    expect(its).toEqual(its.map((_, i) => i + 1));
    // Rejections are logged as the first of each kind a minute and a count; closing the server flushed the counts.
    const rejected = h.events
      .filter((e) => e.event === 'peers-rejected')
      .reduce((n, e) => n + Number(e.fields.count), 0);
    expect(rejected).toBeGreaterThanOrEqual(FZ_CONNECTIONS_MIN);
    expect(h.events.filter((e) => e.event === 'peer-rejected').length).toBeLessThan(FZ_CONNECTIONS_MIN);
  }, 300_000);
});

describe('remote workers: elastic', () => {
  it('keeps training while 16 simulated workers join and leave', async () => {
    const h = await coordinator(tiny({ iterations: 60 }), { minWorkers: 1 });
    const done = h.coordinator.run();
    const rng = new Rng(5);
    const live: { abort: AbortController; outcome: Promise<unknown> }[] = [];
    const join = () => {
      const abort = new AbortController();
      const outcome = runWorker({
        url: `ws://${h.endpoint}`,
        token: h.token,
        backend: 'wasm',
        ganDistVersion: 'test',
        simulateStepMs: 5 + (rng.nextU32() % 20),
        signal: abort.signal,
      });
      live.push({ abort, outcome });
    };
    for (let i = 0; i < 16; i++) join();
    let churn = 0;
    const expired = deadline('60 iterations under churn', 100_000);
    while (h.coordinator.state !== 'finished' && h.coordinator.state !== 'failed') {
      expired();
      await new Promise((r) => setTimeout(r, 30));
      if (live.length > 1 && rng.uniform() < 0.5) {
        const [gone] = live.splice(rng.nextU32() % live.length, 1);
        gone.abort.abort();
        churn++;
      }
      if (live.length < 16 && rng.uniform() < 0.5) join();
    }
    await done;
    expect(h.coordinator.state).toBe('finished');
    expect(churn).toBeGreaterThan(5);
    const its = h.records.map((r) => r.iteration);
    expect(its).toEqual(Array.from({ length: 60 }, (_, i) => i + 1));
    // The churn reached the coordinator as departures mid-run (a worker aborted inside its handshake is a rejected peer instead).
    expect(h.events.filter((e) => e.event === 'worker-left').length).toBeGreaterThan(0);
    for (const w of live) w.abort.abort();
  }, 120_000);
});
