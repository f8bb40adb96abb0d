import { spawn } from 'node:child_process';
import {
  closeSync,
  existsSync,
  mkdtempSync,
  openSync,
  readFileSync,
  readSync,
  readdirSync,
  rmSync,
  writeSync,
} from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { resolveConfig } from '../../protocol/config.ts';
import {
  decodeMessage,
  encodeMessage,
  encodeMessageChunks,
  frameLimitFor,
  type Message,
} from '../../protocol/wire/protocol.ts';
import { decideTransport, removeStaleRegions, ShmRegion, ShmWorkerFiles } from '../../protocol/wire/shm.ts';
import { ShmFile, SHM_HEADER_BYTES } from '../../protocol/wire/shm-file.ts';
import { SHM_MMAP_ENV, shmAccess } from '../../protocol/wire/shm-map.ts';
import { train } from '../../coordinator/train/train.ts';
import { Rng } from '../../protocol/rng.ts';

import { repoRoot as root } from '../support/paths.ts';
// Test regions live in a folder of their own, so no test touches another run's region.
const shmRoot = mkdtempSync(path.join(existsSync('/dev/shm') ? '/dev/shm' : os.tmpdir(), 'gan-dist-test-'));
afterAll(() => rmSync(shmRoot, { recursive: true, force: true }));

const LIMITS = frameLimitFor(1000, 4, 8);
const f32 = (n: number, k: number) => Float32Array.from({ length: n }, (_, i) => Math.sin(i + k));

function weights(version: number): Message {
  return {
    type: 'weights',
    version,
    iteration: version,
    tensors: { 'G/proj/w': f32(600, version), 'G/bn1/mean': f32(3, -version) },
    shapes: { 'G/proj/w': [20, 30], 'G/bn1/mean': [3] },
  };
}

function gradients(shardId: number): Message {
  return {
    type: 'gradients',
    iteration: 7,
    shardId,
    weightsVersion: 6,
    n: 4,
    scoreG: 0.5,
    scoreD: 0.5,
    lossG: 0.7,
    lossD: 1.4,
    timings: { computeMs: 3 },
    tensors: { 'G/proj/w': f32(600, shardId) },
    shapes: { 'G/proj/w': [20, 30] },
  };
}

/** Runs `code` (ESM, TypeScript through tsx) in a child process; resolves with it once it prints `ready`. */
function child(code: string) {
  const p = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', code], {
    cwd: root,
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  let out = '';
  const ready = new Promise<string>((resolve, reject) => {
    p.stdout!.on('data', (d) => {
      out += d;
      const m = /ready (.*)\n/.exec(out);
      if (m) resolve(m[1]);
    });
    p.on('exit', (code) => reject(new Error(`child exited with ${code} before it was ready: ${out}`)));
  });
  const exited = new Promise<void>((resolve) => p.on('exit', () => resolve()));
  return { p, ready, exited };
}

// Every transport test runs on both ways of moving the bytes: the memory maps (the native addon,
// built at npm ci; CI requires it) and the positioned fs calls used without it.
const mapped = shmAccess();
const requireMmap = process.env.GAN_DIST_REQUIRE_MMAP === '1';
if (mapped.mode === 'fs' && requireMmap) throw new Error(`GAN_DIST_REQUIRE_MMAP=1, but ${mapped.reason}`);
const ACCESS = mapped.mode === 'mmap' ? ['mmap', 'fs'] : ['fs'];
if (mapped.mode === 'fs') console.warn(`shm tests: the memory-map variant is skipped: ${mapped.reason}`);

describe.each(ACCESS)('shared-memory transport (%s)', (access) => {
  const before = process.env[SHM_MMAP_ENV];
  beforeAll(() => {
    process.env[SHM_MMAP_ENV] = access === 'fs' ? '0' : '1';
  });
  afterAll(() => {
    if (before === undefined) delete process.env[SHM_MMAP_ENV];
    else process.env[SHM_MMAP_ENV] = before;
  });

  it('moves the bytes the way it is asked to', () => {
    expect(shmAccess().mode).toBe(access);
  });

  it('round-trips weights to a worker and gradients back as the frames the socket would carry', () => {
    const { region } = ShmRegion.create(shmRoot);
    try {
      const gradFile = region.attach(3, 64 * 1024);
      const worker = new ShmWorkerFiles(region.dir, region.weights.file, gradFile);
      for (const version of [1, 2]) {
        const ref = region.writeWeights(encodeMessage(weights(version)));
        expect(decodeMessage(worker.readWeights(ref.seq, ref.byteLength), LIMITS)).toEqual(weights(version));
      }
      const g = worker.writeGradients(encodeMessage(gradients(1)));
      expect(decodeMessage(region.readGradients(3, g.seq, g.byteLength), LIMITS)).toEqual(gradients(1));
      worker.close();
    } finally {
      region.close();
    }
    expect(existsSync(region.dir)).toBe(false);
  });

  it('writes frames in pieces straight from the tensors, read back as the whole frames', () => {
    const { region } = ShmRegion.create(shmRoot);
    try {
      const gradFile = region.attach(4, 64 * 1024);
      const worker = new ShmWorkerFiles(region.dir, region.weights.file, gradFile);
      const ref = region.writeWeights(encodeMessageChunks(weights(5)));
      expect(decodeMessage(worker.readWeights(ref.seq, ref.byteLength), LIMITS)).toEqual(weights(5));
      const g = worker.writeGradients(encodeMessageChunks(gradients(2)));
      expect(decodeMessage(region.readGradients(4, g.seq, g.byteLength), LIMITS)).toEqual(gradients(2));
      worker.close();
      // More pieces than one writev takes (IOV_MAX 1024), of odd sizes.
      const pieces = Array.from({ length: 2500 }, (_, i) => new Uint8Array(1 + (i % 7)).fill(i & 255));
      const whole = Buffer.concat(pieces);
      region.weights.write({ chunks: pieces, byteLength: whole.byteLength }, 9);
      const back = new ShmFile(region.weights.file, 'open').read(9, whole.byteLength);
      expect(back.equals(whole)).toBe(true);
    } finally {
      region.close();
    }
  });

  it('grows a file, and its readers follow, when a frame outgrows it', () => {
    const { region } = ShmRegion.create(shmRoot);
    try {
      const reader = new ShmFile(region.weights.file, 'open');
      for (const [seq, bytes] of [
        [1, 1000],
        [2, 3 * 2 ** 20 + 5],
        [3, 64],
        [4, 9 * 2 ** 20],
      ]) {
        const frame = Buffer.alloc(bytes, seq);
        region.weights.write(frame, seq);
        expect(reader.read(seq, bytes).equals(frame)).toBe(true);
      }
      reader.close();
    } finally {
      region.close();
    }
  });

  it('hands a worker the weights without a copy where mapped, and finds them torn if rewritten while taken', () => {
    const { region } = ShmRegion.create(shmRoot);
    try {
      const worker = new ShmWorkerFiles(region.dir, region.weights.file, region.attach(6, 64 * 1024));
      const first = region.writeWeights(encodeMessage(weights(1)));
      const buf = worker.readWeights(first.seq, first.byteLength);
      worker.weightsTaken(first.seq, first.byteLength);
      region.writeWeights(encodeMessage(weights(2)));
      if (access === 'mmap') {
        // A view of the region: the next version shows through it, and taking it now is refused.
        expect(decodeMessage(buf, LIMITS)).toEqual(weights(2));
        expect(() => worker.weightsTaken(first.seq, first.byteLength)).toThrow(/rewritten while frame 1 was taken/);
      } else {
        // A copy of its own: still version 1, whatever the file holds now.
        expect(decodeMessage(buf, LIMITS)).toEqual(weights(1));
        worker.weightsTaken(first.seq, first.byteLength);
      }
      worker.close();
    } finally {
      region.close();
    }
  });

  it("keeps a round's gradient buffers until the next round, then reuses them", () => {
    const { region } = ShmRegion.create(shmRoot);
    try {
      const worker = new ShmWorkerFiles(region.dir, region.weights.file, region.attach(1, 64 * 1024));
      const a = worker.writeGradients(encodeMessage(gradients(0)));
      const first = decodeMessage(region.readGradients(1, a.seq, a.byteLength), LIMITS) as Extract<
        Message,
        { type: 'gradients' }
      >;
      // The same worker answers a second shard of the same round: the first stays intact.
      const b = worker.writeGradients(encodeMessage(gradients(1)));
      const bufB = region.readGradients(1, b.seq, b.byteLength);
      expect(first.tensors['G/proj/w']).toEqual(f32(600, 0));
      region.newRound();
      const c = worker.writeGradients(encodeMessage(gradients(2)));
      const bufC = region.readGradients(1, c.seq, c.byteLength);
      expect(bufC.buffer === bufB.buffer || bufC.buffer === first.tensors['G/proj/w'].buffer).toBe(true);
      worker.close();
    } finally {
      region.close();
    }
  });

  it('refuses a frame whose write was interrupted, or that another write replaced, instead of decoding it', () => {
    const { region } = ShmRegion.create(shmRoot);
    try {
      const file = region.attach(2, 64 * 1024);
      const writer = new ShmFile(file, 'open');
      const frame = encodeMessage(gradients(0));
      writer.write(frame, 1);
      // Another frame replaced the announced one before it was read.
      const other = new ShmFile(file, 'open');
      other.write(frame.subarray(0, 10), 2);
      expect(() => region.readGradients(2, 1, frame.byteLength)).toThrow(/holds frame 2 of 10 bytes/);
      // A writer that died after invalidating the header: sequence 0, a write in progress.
      const torn = Buffer.alloc(24);
      torn.writeUInt32LE(0x4d534447, 0);
      const fd = openSync(file, 'r+');
      writeSync(fd, torn, 0, 24, 0);
      closeSync(fd);
      expect(() => region.readGradients(2, 2, 10)).toThrow(/interrupted or is in progress/);
      writer.close();
      other.close();
    } finally {
      region.close();
    }
  });

  // Seeds the moment of the kill; the title names it, so a failing run can be replayed.
  const KILL_SEED = 0x5eed;
  it(`never hands out a torn frame when the writer is killed -9 mid-write (seed ${KILL_SEED})`, async () => {
    const { region } = ShmRegion.create(shmRoot);
    try {
      const file = region.attach(5, 8 * 2 ** 20);
      // The child writes 8 MB frames, each filled with its own sequence number, as fast as it can.
      const c = child(`
        import { ShmFile } from './protocol/wire/shm-file.ts';
        const f = new ShmFile(${JSON.stringify(file)}, 'open');
        const frame = Buffer.alloc(8 * 2 ** 20);
        console.log('ready go');
        for (let seq = 1; ; seq++) { frame.fill(seq % 251); f.write(frame, seq); }
      `);
      await c.ready;
      await new Promise((r) => setTimeout(r, 150 + new Rng(KILL_SEED).uniform() * 100));
      c.p.kill('SIGKILL');
      await c.exited;
      const header = Buffer.alloc(SHM_HEADER_BYTES);
      const fd = openSync(file, 'r');
      readSync(fd, header, 0, SHM_HEADER_BYTES, 0);
      closeSync(fd);
      const seq = header.readDoubleLE(8);
      if (seq === 0) {
        // Killed mid-frame: nothing may be read.
        expect(() => region.readGradients(5, 1, 8 * 2 ** 20)).toThrow(/interrupted/);
      } else {
        // Killed between frames: the committed one is whole.
        const buf = region.readGradients(5, seq, 8 * 2 ** 20);
        expect(buf.every((b) => b === seq % 251)).toBe(true);
      }
    } finally {
      region.close();
    }
  });

  it('removes the region of a coordinator killed -9 at the next start, and keeps live ones', async () => {
    const c = child(`
      import { ShmRegion } from './protocol/wire/shm.ts';
      const { region } = ShmRegion.create(${JSON.stringify(shmRoot)});
      region.writeWeights(Buffer.alloc(4096, 1));
      console.log('ready ' + region.dir);
      setInterval(() => {}, 1000);
    `);
    const dir = await c.ready;
    expect(existsSync(path.join(dir, 'weights'))).toBe(true);
    // While it runs, its region is not stale.
    expect(removeStaleRegions(shmRoot)).not.toContain(dir);
    c.p.kill('SIGKILL');
    await c.exited;
    expect(existsSync(dir)).toBe(true);
    const { region, removed } = ShmRegion.create(shmRoot);
    expect(removed).toEqual([dir]);
    expect(existsSync(dir)).toBe(false);
    region.close();
  });

  it('falls back to the socket when /dev/shm lacks room, naming the sizes', () => {
    const common = {
      transport: 'auto' as const,
      localWorkers: 4,
      weightsBytes: 37.8e6,
      gradientsBytes: 37.8e6,
      root: shmRoot,
    };
    const small = decideTransport({ ...common, free: 64 * 2 ** 20 });
    expect(small.use).toBe(false);
    expect(!small.use && small.reason).toMatch(/has 64 MiB free, 4 local worker\(s\) need 225 MiB.*--shm-size=256m/);
    expect(decideTransport({ ...common, free: 2 ** 30 }).use).toBe(true);
    expect(decideTransport({ ...common, transport: 'socket', free: 2 ** 30 })).toEqual({
      use: false,
      reason: '--transport socket',
    });
    expect(decideTransport({ ...common, localWorkers: 0, free: 2 ** 30 }).use).toBe(false);
  });
});

describe('train with --transport', () => {
  const config = () => resolveConfig({ preset: 'tiny', flags: { seed: 2, iterations: 6, validationFrequency: 1000 } });
  const events = (runDir: string) =>
    readFileSync(path.join(runDir, 'train.log'), 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l))
      .filter((l) => l.msg === 'event');
  const common = {
    data: 'synthetic',
    listen: '127.0.0.1:0',
    backend: 'wasm',
    checkpointEvery: 0,
    keepCheckpoints: 1,
    simulateStepMs: 30,
    skipFinalCheckpoint: true,
    shmRoot,
  };

  it('logs the fallback to the socket when /dev/shm lacks room, and trains on', async () => {
    const cwd = mkdtempSync(path.join(os.tmpdir(), 'gan-dist-shm-'));
    const r = await train({ ...common, config: config(), workers: 2, cwd, transport: 'shm', shmFreeBytes: 1024 });
    expect(r.iteration).toBe(6);
    const t = events(r.runDir).find((e) => e.event === 'transport');
    expect(t).toMatchObject({ local: 'socket', level: 'warn' });
    expect(t.reason).toMatch(/has 0 MiB free/);
    expect(events(r.runDir).some((e) => e.event === 'shm-attached')).toBe(false);
  });

  it('survives a local worker killed -9 mid-run and leaves nothing in /dev/shm', async () => {
    const cwd = mkdtempSync(path.join(os.tmpdir(), 'gan-dist-shm-'));
    let killed = false;
    const r = await train({
      ...common,
      config: resolveConfig({ preset: 'tiny', flags: { seed: 2, iterations: 12, validationFrequency: 1000 } }),
      workers: 3,
      minWorkers: 2,
      cwd,
      transport: 'shm',
      onCoordinator: (c) =>
        c.watchIterations((rec) => {
          if (rec.iteration !== 3 || killed) return;
          // One of our worker processes (children of this one, by /proc), killed without warning.
          const kids = readdirSync('/proc')
            .filter((p) => /^\d+$/.test(p))
            .filter((p) => {
              try {
                const stat = readFileSync(`/proc/${p}/stat`, 'utf8');
                return (
                  Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]) === process.pid &&
                  readFileSync(`/proc/${p}/cmdline`, 'utf8').includes('worker')
                );
              } catch {
                return false;
              }
            });
          expect(kids.length).toBe(3);
          process.kill(Number(kids[0]), 'SIGKILL');
          killed = true;
        }),
    });
    expect(killed).toBe(true);
    expect(r.iteration).toBe(12);
    const ev = events(r.runDir);
    const t = ev.find((e) => e.event === 'transport');
    expect(t.local).toBe('shm');
    expect(ev.filter((e) => e.event === 'shm-attached')).toHaveLength(3);
    expect(ev.some((e) => e.event === 'worker-left')).toBe(true);
    expect(existsSync(t.region)).toBe(false);
    expect(readdirSync(shmRoot)).toEqual([]);
  });
});
