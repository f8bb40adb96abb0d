import { afterEach, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { createClientHandshake } from '../../protocol/wire/handshake.ts';
import { modelConfigOf, resolveConfig, type TrainConfig } from '../../protocol/config.ts';
import type { Coordinator } from '../../coordinator/coordinator.ts';
import type { GanDistError } from '../../protocol/errors.ts';
import {
  decodeMessage,
  encodeMessage,
  frameLimitFor,
  paramTableHash,
  type FrameLimits,
  type GradientsMessage,
  type Message,
  type ShardMessage,
  type WeightsMessage,
} from '../../protocol/wire/protocol.ts';
import {
  decodeBfloat16,
  decodeFloat16,
  encodeBfloat16,
  encodeFloat16,
  float16Scale,
  isValidFloat16Scale,
  parseWireDtype,
} from '../../protocol/wire/wire-dtype.ts';
import { Rng } from '../../protocol/rng.ts';
import { parameterTable } from '../../protocol/model/architecture.ts';
import { runWorker } from '../../worker/client.ts';
import { startCoordinator } from '../support/harness.ts';
import { train } from '../../coordinator/train/train.ts';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { expectProtocolError } from '../support/expect-error.ts';

const LIMITS: FrameLimits = frameLimitFor(100_000, 8, 8);

/** Values spread over many binades, both signs, with exact zeros mixed in. */
function spread(n: number, seed: number, minExp = -30, maxExp = 10): Float32Array {
  const rng = new Rng(seed);
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    const e = minExp + Math.floor(rng.uniform() * (maxExp - minExp));
    a[i] = i % 97 === 0 ? 0 : (rng.uniform() < 0.5 ? -1 : 1) * (1 + rng.uniform()) * 2 ** e;
  }
  return a;
}

function fromBits(b: number): number {
  return new Float32Array(Uint32Array.of(b).buffer)[0];
}

function roundTripBf16(x: Float32Array): Float32Array {
  const h = new Uint16Array(x.length);
  expect(encodeBfloat16(x, h)).toBe(-1);
  const out = new Float32Array(x.length);
  expect(decodeBfloat16(h, out)).toBe(-1);
  return out;
}

function roundTripF16(x: Float32Array, scale = float16Scale(x)): Float32Array {
  const h = new Uint16Array(x.length);
  encodeFloat16(x, scale, h);
  const out = new Float32Array(x.length);
  expect(decodeFloat16(h, scale, out)).toBe(-1);
  return out;
}

function gradients(tensors: Record<string, Float32Array>): GradientsMessage {
  const shapes: Record<string, number[]> = {};
  for (const [k, a] of Object.entries(tensors)) shapes[k] = [a.length];
  return {
    type: 'gradients',
    iteration: 3,
    shardId: 0,
    weightsVersion: 2,
    n: 4,
    scoreG: 0.5,
    scoreD: 0.5,
    lossG: 1,
    lossD: 1,
    timings: { computeMs: 1 },
    tensors,
    shapes,
  };
}

/** Rewrites a frame's JSON header to forge a bad one; the tensor bytes move along unchanged. */
/** A one-row shard of an 8x8 image and a 5-long latent: a message that must travel exactly. */
function oneRowShard(): ShardMessage {
  return {
    type: 'shard',
    iteration: 1,
    weightsVersion: 0,
    shardId: 0,
    rowStart: 0,
    rowCount: 1,
    tensors: { images: new Uint8Array(8 * 8 * 3), z: new Float32Array(5), flip: new Uint8Array(1) },
    shapes: { images: [1, 8, 8, 3], z: [1, 5], flip: [1] },
  };
}

function editHeader(frame: Buffer, edit: (h: { tensors: Record<string, unknown>[] }) => void): Buffer {
  const len = frame.readUInt32LE(8);
  const header = JSON.parse(frame.subarray(12, 12 + len).toString('utf8'));
  const oldStart = Math.ceil((12 + len) / 8) * 8;
  const newStart = oldStart + 1024;
  for (const t of header.tensors) t.byteOffset = (t.byteOffset as number) + 1024;
  edit(header);
  const json = Buffer.from(JSON.stringify(header), 'utf8');
  if (12 + json.length > newStart) throw new Error('edited header is too long');
  const out = Buffer.alloc(newStart + frame.length - oldStart);
  frame.copy(out, 0, 0, 12);
  out.writeUInt32LE(json.length, 8);
  json.copy(out, 12);
  frame.copy(out, newStart, oldStart);
  return out;
}

describe('bfloat16', () => {
  it('round-trips within a relative 2^-8 and keeps values that are already bfloat16 exact', () => {
    const x = spread(100_000, 1, -120, 120);
    const y = roundTripBf16(x);
    for (let i = 0; i < x.length; i++) {
      if (x[i] === 0) expect(y[i]).toBe(0);
      else expect(Math.abs(y[i] - x[i]) / Math.abs(x[i])).toBeLessThanOrEqual(2 ** -8);
    }
    // Once rounded, a second trip changes nothing.
    expect(roundTripBf16(y)).toEqual(y);
  });

  it('rounds to nearest, ties to even', () => {
    const x = Float32Array.of(fromBits(0x3f808000), fromBits(0x3f818000), fromBits(0x3f808001), fromBits(0xbf807fff));
    const h = new Uint16Array(4);
    encodeBfloat16(x, h);
    expect([...h]).toEqual([0x3f80, 0x3f82, 0x3f81, 0xbf80]);
  });

  it('refuses NaN, infinities and values beyond its range, naming the index', () => {
    for (const bad of [NaN, Infinity, -Infinity, fromBits(0x7f7fffff)]) {
      const x = Float32Array.of(1, 2, bad);
      expect(encodeBfloat16(x, new Uint16Array(3))).toBe(2);
    }
    expect(decodeBfloat16(Uint16Array.of(0x3f80, 0x7f80), new Float32Array(2))).toBe(1);
    expect(decodeBfloat16(Uint16Array.of(0xffc1), new Float32Array(1))).toBe(0);
  });
});

describe('float16 with a per-tensor scale', () => {
  it('maps the largest |x| into [2^14, 2^15): a power of two the receiver accepts', () => {
    for (const max of [1e-9, 3e-4, 0.02, 1, 7.5, 1e20, fromBits(0x7f7fffff), fromBits(0x00000001)]) {
      const s = float16Scale(Float32Array.of(0, -max / 3, max));
      expect(isValidFloat16Scale(s), String(max)).toBe(true);
      expect(max / s).toBeGreaterThanOrEqual(2 ** 14);
      expect(max / s).toBeLessThan(2 ** 15);
    }
    expect(float16Scale(new Float32Array(5))).toBe(1);
    expect(float16Scale(Float32Array.of(1, NaN))).toBeNaN();
    expect(float16Scale(Float32Array.of(1, -Infinity))).toBeNaN();
  });

  it('round-trips within a relative 2^-11 above the scaled denormal range, and an absolute 2^-25 x scale below it', () => {
    const x = spread(100_000, 2, -40, 4);
    const s = float16Scale(x);
    const y = roundTripF16(x, s);
    for (let i = 0; i < x.length; i++) {
      const a = Math.abs(x[i]);
      if (a >= 2 ** -14 * s) expect(Math.abs(y[i] - x[i]) / a).toBeLessThanOrEqual(2 ** -11);
      else expect(Math.abs(y[i] - x[i])).toBeLessThanOrEqual(2 ** -25 * s);
    }
    expect(roundTripF16(y, s)).toEqual(y);
  });

  it('keeps tiny gradients that plain float16 would flush to zero', () => {
    // Typical late-training gradients: 1e-10 .. 1e-7, below plain float16's smallest denormal (6e-8).
    const g = spread(10_000, 3, -33, -23);
    const y = roundTripF16(g);
    let nonZero = 0;
    for (let i = 0; i < g.length; i++) {
      if (g[i] === 0) continue;
      nonZero++;
      expect(Math.abs(y[i] - g[i]) / Math.abs(g[i])).toBeLessThanOrEqual(2 ** -11);
    }
    expect(nonZero).toBeGreaterThan(9000);
    // Without the scale (scale 1) nearly all of them would be lost.
    const h = new Uint16Array(g.length);
    encodeFloat16(g, 1, h);
    expect(h.filter((v) => (v & 0x7fff) === 0).length).toBeGreaterThan(g.length / 2);
  });

  it('gives every finite float16 pattern back exactly, at tiny, unit and huge scales', () => {
    const all = Uint16Array.from({ length: 65536 }, (_, i) => i).filter((h) => (h & 0x7c00) !== 0x7c00);
    // From 2^-125 up to 2^112 every float16 value times the scale is a float32 (below, the
    // smallest ones fall under float32's denormal step); 2^-125 takes the path for tiny tensors.
    for (const s of [2 ** -125, 2 ** -40, 1, 2 ** 60, 2 ** 112]) {
      const x = new Float32Array(all.length);
      expect(decodeFloat16(all, s, x)).toBe(-1);
      const back = new Uint16Array(all.length);
      encodeFloat16(x, s, back);
      expect(back, `scale 2^${Math.log2(s)}`).toEqual(all);
    }
  });

  it('refuses NaN and infinity patterns, and products beyond float32 at the largest scale', () => {
    expect(decodeFloat16(Uint16Array.of(0x3c00, 0x7c00), 1, new Float32Array(2))).toBe(1);
    expect(decodeFloat16(Uint16Array.of(0xfe01), 1, new Float32Array(1))).toBe(0);
    // 65504 x 2^113 overflows float32.
    expect(decodeFloat16(Uint16Array.of(0x3c00, 0x7bff), 2 ** 113, new Float32Array(2))).toBe(1);
  });

  it('accepts only powers of two from 2^-163 to 2^113 as a scale', () => {
    for (const ok of [1, 0.5, 2 ** -163, 2 ** 113, 2 ** -20]) expect(isValidFloat16Scale(ok), String(ok)).toBe(true);
    for (const bad of [0, -1, 3, 0.3, 2 ** 114, 2 ** -164, NaN, Infinity, '1', null, undefined]) {
      expect(isValidFloat16Scale(bad), String(bad)).toBe(false);
    }
  });
});

describe('wire dtypes in messages', () => {
  const big = () => ({
    'G/proj/w': spread(4000, 4, -12, 2),
    'D/conv1/w': spread(1000, 5, -30, -20),
    'bn/G/bn1/sum': Float32Array.of(1 / 3, 2 / 3, 1e-9),
  });
  const exact = (name: string) => name.startsWith('bn/');

  it('sends float32 exactly by default: the same bytes as before, values bit for bit', () => {
    const msg = gradients(big());
    const plain = encodeMessage(msg);
    expect(encodeMessage(msg, { wireDtype: 'float32' })).toEqual(plain);
    const back = decodeMessage(plain, LIMITS) as GradientsMessage;
    for (const [k, a] of Object.entries(msg.tensors)) expect(back.tensors[k]).toEqual(a);
    expect(plain.includes(Buffer.from('bfloat16'))).toBe(false);
  });

  for (const [dtype, bound] of [
    ['bfloat16', 2 ** -8],
    ['float16', 2 ** -11],
  ] as const) {
    it(`sends gradients as ${dtype} in about half the bytes, float32 back, the exact ones untouched`, () => {
      const msg = gradients(big());
      const frame = encodeMessage(msg, { wireDtype: dtype, exact });
      expect(frame.length).toBeLessThan(0.55 * encodeMessage(msg).length);
      const back = decodeMessage(frame, LIMITS) as GradientsMessage;
      expect(back.tensors['bn/G/bn1/sum']).toEqual(msg.tensors['bn/G/bn1/sum']);
      for (const name of ['G/proj/w', 'D/conv1/w']) {
        const [x, y] = [msg.tensors[name], back.tensors[name]];
        expect(y).toBeInstanceOf(Float32Array);
        expect(y).not.toEqual(x);
        for (let i = 0; i < x.length; i++) {
          if (x[i] === 0) expect(y[i]).toBe(0);
          else expect(Math.abs(y[i] - x[i]) / Math.abs(x[i])).toBeLessThanOrEqual(bound);
        }
      }
    });

    it(`refuses to send a non-finite value as ${dtype}, naming the tensor`, () => {
      const t = big();
      t['G/proj/w'][17] = NaN;
      expectProtocolError(
        () => encodeMessage(gradients(t), { wireDtype: dtype, exact }),
        /gradients: tensor 'G\/proj\/w' holds a non-finite value \(NaN\) at index 17/,
      );
    });
  }

  it('sends shards, samples and handshakes exactly: a 16-bit wireDtype for them is a sender error', () => {
    const shard = oneRowShard();
    expectProtocolError(() => encodeMessage(shard, { wireDtype: 'bfloat16' }), /shard message travels exactly/);
    expect(() => encodeMessage(shard, { wireDtype: 'float32' })).not.toThrow();
  });

  it('rejects a 16-bit tensor whose byteLength does not match its shape', () => {
    const frame = encodeMessage(gradients({ 'G/proj/w': spread(64, 6) }), { wireDtype: 'bfloat16' });
    // 4 bytes an element: what a float32 tensor of that shape would take, not a bfloat16 one.
    const bad = editHeader(frame, (h) => {
      h.tensors[0].byteLength = 64 * 4;
    });
    expectProtocolError(
      () => decodeMessage(bad, LIMITS),
      /tensor 'G\/proj\/w' byteLength is 256 but bfloat16 \[64\] needs 128/,
    );
    const short = editHeader(frame, (h) => {
      h.tensors[0].shape = [65];
    });
    expectProtocolError(() => decodeMessage(short, LIMITS), /byteLength is 128 but bfloat16 \[65\] needs 130/);
  });

  it('rejects a float16 tensor with a missing or invalid scale, and a scale on any other dtype', () => {
    const frame = encodeMessage(gradients({ 'G/proj/w': spread(64, 7) }), { wireDtype: 'float16' });
    expect(() => decodeMessage(frame, LIMITS)).not.toThrow();
    for (const scale of [undefined, 0, -0.5, 3, '0.5', 2 ** 200]) {
      const bad = editHeader(frame, (h) => {
        h.tensors[0].scale = scale;
      });
      expectProtocolError(
        () => decodeMessage(bad, LIMITS),
        /tensor 'G\/proj\/w' is float16, so its scale must be a power of two/,
      );
    }
    const bf = encodeMessage(gradients({ 'G/proj/w': spread(64, 7) }), { wireDtype: 'bfloat16' });
    const scaled = editHeader(bf, (h) => {
      h.tensors[0].scale = 1;
    });
    expectProtocolError(() => decodeMessage(scaled, LIMITS), /is bfloat16; only float16 tensors carry a scale/);
  });

  it('rejects NaN or infinity hidden in a 16-bit payload', () => {
    const frame = encodeMessage(gradients({ 'G/proj/w': Float32Array.of(1, 2, 3, 4) }), { wireDtype: 'bfloat16' });
    const len = frame.readUInt32LE(8);
    const off = (JSON.parse(frame.subarray(12, 12 + len).toString()).tensors[0] as { byteOffset: number }).byteOffset;
    const bad = Buffer.from(frame);
    bad.writeUInt16LE(0x7f80, off + 4);
    expectProtocolError(
      () => decodeMessage(bad, LIMITS),
      /tensor 'G\/proj\/w' holds a non-finite bfloat16 value at index 2/,
    );
  });

  it("rejects 16-bit tensors in messages that travel exactly (a shard's z)", () => {
    const shard = encodeMessage(oneRowShard());
    const forged = editHeader(shard, (h) => {
      const z = h.tensors.find((t) => t.name === 'z')!;
      z.dtype = 'bfloat16';
      z.byteLength = 10;
    });
    expectProtocolError(() => decodeMessage(forged, LIMITS), /shard: tensor 'z' must be float32, got bfloat16/);
  });

  it('carries welcome.wireDtype, leaves it out by default, and refuses an unknown one', () => {
    const base = {
      type: 'welcome',
      runId: 'r',
      workerId: 1,
      modelConfig: { latent: 8, filters: 4, imageSize: 32, batchSize: 16 },
      seed: 0,
    } as const;
    const back = decodeMessage(encodeMessage({ ...base, wireDtype: 'float16' }), LIMITS);
    expect(back).toEqual({ ...base, wireDtype: 'float16' });
    expect(decodeMessage(encodeMessage(base), LIMITS)).toEqual(base);
    expectProtocolError(
      () => encodeMessage({ ...base, wireDtype: 'int8' } as unknown as Message),
      /welcome.wireDtype must be one of float32, bfloat16, float16, got "int8"/,
    );
  });

  it('names --wire-dtype and its choices for a bad value', () => {
    expect(parseWireDtype('bfloat16')).toBe('bfloat16');
    expect(() => parseWireDtype('fp8')).toThrow(/--wire-dtype: "fp8" is not a wire dtype/);
    let thrown: unknown;
    try {
      parseWireDtype(16, 'config.json: wireDtype');
    } catch (err) {
      thrown = err;
    }
    expect((thrown as GanDistError).code).toBe('GAN_DIST_E_CONFIG');
    expect((thrown as GanDistError).message).toMatch(/^config.json: wireDtype: 16/);
    expect((thrown as GanDistError).hint).toMatch(/float32, bfloat16, float16/);
  });

  it('sends the weights of the full model as float16 in half the bytes', () => {
    const table = parameterTable(modelConfigOf(resolveConfig({ preset: 'tiny' })));
    const tensors: Record<string, Float32Array> = {};
    const shapes: Record<string, number[]> = {};
    table.forEach((s, i) => {
      tensors[s.name] = spread(
        s.shape.reduce((a, b) => a * b, 1),
        10 + i,
        -12,
        0,
      );
      shapes[s.name] = s.shape;
    });
    const msg: WeightsMessage = { type: 'weights', version: 1, iteration: 1, tensors, shapes };
    const limits = frameLimitFor(
      table.reduce((n, s) => n + s.shape.reduce((a, b) => a * b, 1), 0),
      16,
      32,
    );
    const f32 = encodeMessage(msg);
    const f16 = encodeMessage(msg, { wireDtype: 'float16' });
    expect(f16.length / f32.length).toBeGreaterThan(0.45);
    expect(f16.length / f32.length).toBeLessThan(0.55);
    const back = decodeMessage(f16, limits) as WeightsMessage;
    for (const s of table) expect(back.tensors[s.name].length).toBe(tensors[s.name].length);
  });
});

const tiny = (over: Partial<TrainConfig> = {}) =>
  resolveConfig({ preset: 'tiny', flags: { seed: 11, validationFrequency: 1e6, ...over } });
const running: Coordinator[] = [];
afterEach(() => {
  for (const c of running.splice(0)) if (c.state !== 'finished' && c.state !== 'failed') c.requestStop('test over');
});

describe('wire dtypes between a coordinator and its workers', () => {
  it('tells workers the wire dtype, and drops a worker whose float16 tensor has no scale', async () => {
    const h = await startCoordinator(tiny({ iterations: 1 }), { minWorkers: 1, wireDtype: 'float16' });
    running.push(h.coordinator);
    const ws = new WebSocket(`ws://${h.endpoint}`, { perMessageDeflate: false });
    ws.on('error', () => {});
    const closed = new Promise<void>((resolve) => ws.on('close', () => resolve()));
    const hs = createClientHandshake({
      token: h.token,
      role: 'worker',
      ganDistVersion: 'test',
      backend: 'none',
      device: 'test',
    });
    const welcome = new Promise<Extract<Message, { type: 'welcome' }>>((resolve) => {
      ws.on('message', (d) => {
        const step = hs.onMessage(
          decodeMessage(d as Buffer, { maxFrameBytes: 1 << 30, maxHeaderBytes: 1 << 20, maxTensors: 4096 }),
        );
        if (step.send) ws.send(encodeMessage(step.send));
        if (step.welcome) {
          ws.send(encodeMessage(hs.ready(paramTableHash(parameterTable(modelConfigOf(tiny())))).send!));
          resolve(step.welcome);
        }
      });
    });
    await new Promise<void>((resolve) => ws.once('open', () => resolve()));
    ws.send(encodeMessage(hs.start().send!));
    expect((await welcome).wireDtype).toBe('float16');
    const frame = encodeMessage(gradients({ 'G/proj/w': spread(64, 8) }), { wireDtype: 'float16' });
    ws.send(editHeader(frame, (hd) => void delete hd.tensors[0].scale));
    await closed;
    const left = h.events.find((e) => e.event === 'worker-left');
    expect(String(left?.fields.reason)).toMatch(
      /tensor 'G\/proj\/w' is float16, so its scale must be a power of two from .* got nothing/,
    );
  });

  it("keeps the run's wire dtype in config.json: a resume uses it unless --wire-dtype is given again", async () => {
    const cwd = mkdtempSync(path.join(os.tmpdir(), 'gan-dist-wire-'));
    const common = {
      data: 'synthetic',
      listen: '127.0.0.1:0',
      workers: 1,
      simulateStepMs: 1,
      backend: 'wasm',
      checkpointEvery: 0,
      keepCheckpoints: 1,
      cwd,
      transport: 'socket' as const,
    };
    const configEvent = (runDir: string) =>
      readFileSync(path.join(runDir, 'train.log'), 'utf8')
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l))
        .filter((l) => l.event === 'config')
        .at(-1);
    const first = await train({ ...common, config: tiny({ iterations: 1 }), runDir: 'run', wireDtype: 'float16' });
    expect(JSON.parse(readFileSync(path.join(first.runDir, 'config.json'), 'utf8')).wireDtype).toBe('float16');
    const resumed = await train({
      ...common,
      config: tiny({ iterations: 2 }),
      overrides: { iterations: 2 },
      resume: first.runDir,
    });
    expect(resumed.iteration).toBe(2);
    expect(configEvent(resumed.runDir).wireDtype).toBe('float16');
    const changed = await train({
      ...common,
      config: tiny({ iterations: 3 }),
      overrides: { iterations: 3 },
      resume: first.runDir,
      wireDtype: 'bfloat16',
    });
    expect(changed.iteration).toBe(3);
    expect(JSON.parse(readFileSync(path.join(first.runDir, 'config.json'), 'utf8')).wireDtype).toBe('bfloat16');
    // A config.json edited by hand to something unknown is named, not guessed at.
    const cfgPath = path.join(first.runDir, 'config.json');
    writeFileSync(cfgPath, JSON.stringify({ ...JSON.parse(readFileSync(cfgPath, 'utf8')), wireDtype: 'fp8' }));
    await expect(
      train({ ...common, config: tiny({ iterations: 4 }), overrides: { iterations: 4 }, resume: first.runDir }),
    ).rejects.toThrow(/config.json: wireDtype: "fp8" is not a wire dtype/);
  });

  it("trains at bfloat16 with losses close to float32's, yet not bit-identical (the wire really is 16-bit)", async () => {
    const runs: { lossD: number[]; lossG: number[] }[] = [];
    for (const wireDtype of ['float32', 'bfloat16'] as const) {
      const h = await startCoordinator(tiny({ iterations: 6 }), { minWorkers: 1, wireDtype });
      running.push(h.coordinator);
      const worker = runWorker({
        url: `ws://${h.endpoint}`,
        token: h.token,
        backend: 'wasm',
        threads: 1,
        ganDistVersion: 'test',
      });
      await h.coordinator.run();
      expect((await worker).exitCode).toBe(0);
      runs.push({ lossD: h.records.map((r) => r.lossD), lossG: h.records.map((r) => r.lossG) });
    }
    const [f32, bf16] = runs;
    expect(bf16.lossD).not.toEqual(f32.lossD);
    for (const key of ['lossD', 'lossG'] as const) {
      for (let i = 0; i < f32[key].length; i++) {
        expect(Math.abs(bf16[key][i] - f32[key][i]) / f32[key][i], `${key} at iteration ${i + 1}`).toBeLessThan(0.02);
      }
    }
  });
});
