// The shared-memory transport for workers on the coordinator's machine: tensor frames travel
// through files under /dev/shm (written and read with positioned fs calls into reused buffers,
// one copy each way at memory speed), and only small control messages cross the socket.
//
// Node has neither mmap nor cross-process SharedArrayBuffer, hence files. Per run one directory
// `/dev/shm/gan-dist-<pid>-<random>` holds `weights` (the coordinator writes each version once,
// every local worker reads it) and `grads-<workerId>` (each worker writes its own). The frames are
// the protocol's own frames, decoded and validated as if they had come over the socket.
//
// Each file starts with a 64-byte header; the frame follows at byte 64:
//
//   0  4 bytes  magic 'GDSM'
//   4  u32      reserved: 0
//   8  f64      sequence number of the frame below; 0 while a write is in progress
//  16  f64      frame length in bytes
//
// A writer first zeroes the sequence, then writes the frame, then the header (a seqlock). A reader
// is told (sequence, length) in the control message; it reads the header, the frame, and the
// header again, and accepts only when both headers carry that sequence and length. A writer that
// dies mid-write leaves sequence 0, so no torn frame is ever decoded. A checksum would catch the
// same, at a cost: zlib.crc32 runs at about 4 GB/s here (9 ms per 37.8 MB frame, per worker, per
// direction), the seqlock costs two 32-byte reads.

import {
  closeSync,
  existsSync,
  ftruncateSync,
  mkdirSync,
  openSync,
  read as fsRead,
  readdirSync,
  readSync,
  rmSync,
  statfsSync,
  writeSync,
  writevSync,
} from 'node:fs';
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { GanDistError } from '../errors.ts';
import type { FrameChunks } from './framing.ts';
import { simdArena, type ArenaBlock } from '../arena/simd.ts';

export const SHM_ROOT = '/dev/shm';
export const SHM_PREFIX = 'gan-dist-';
/** The environment variable that hands a launched worker its coordinator's region. */
export const SHM_ENV = 'GAN_DIST_SHM_REGION';
export const SHM_HEADER_BYTES = 64;
const MAGIC = 0x4d534447; // 'GDSM' little-endian
/** Room kept free beyond what the files need, so the run never fills /dev/shm to the last page. */
export const SHM_HEADROOM = 1.25;

export type TransportChoice = 'auto' | 'socket' | 'shm';
export const TRANSPORTS: readonly TransportChoice[] = ['auto', 'socket', 'shm'];

export function parseTransport(raw: string): TransportChoice {
  if (!(TRANSPORTS as readonly string[]).includes(raw)) {
    throw new GanDistError(
      'GAN_DIST_E_CONFIG',
      `--transport: "${raw}" is not one of ${TRANSPORTS.join(', ')}`,
      'auto picks shm for local workers when /dev/shm has room',
    );
  }
  return raw as TransportChoice;
}

function shmError(message: string): GanDistError {
  return new GanDistError('GAN_DIST_E_PROTOCOL', `shared memory: ${message}`);
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    // EPERM: it exists but belongs to someone else.
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Removes regions left by coordinators that no longer run (a kill -9 leaves its region behind):
 * every `gan-dist-<pid>-*` directory under `root` whose pid is not alive. Returns what it removed.
 */
export function removeStaleRegions(root = SHM_ROOT): string[] {
  let names: string[];
  try {
    names = readdirSync(root);
  } catch {
    return [];
  }
  const removed: string[] = [];
  for (const name of names) {
    const m = /^gan-dist-(\d+)-[0-9a-f]+$/.exec(name);
    if (!m || Number(m[1]) === process.pid || alive(Number(m[1]))) continue;
    const dir = path.join(root, name);
    try {
      rmSync(dir, { recursive: true, force: true });
      removed.push(dir);
    } catch {
      // Someone else's files: not ours to force.
    }
  }
  return removed;
}

/** Free bytes under `root` (statfs), or undefined where it cannot be asked. */
export function freeBytes(root = SHM_ROOT): number | undefined {
  try {
    const s = statfsSync(root);
    return s.bavail * s.bsize;
  } catch {
    return undefined;
  }
}

export type ShmDecision = { use: true; needBytes: number; freeBytes: number } | { use: false; reason: string };

/**
 * Whether local workers get shared memory: not when the socket is forced, when no worker is
 * local, or when `root` lacks room for the weights and every local worker's gradients (plus
 * headroom). `free` overrides the statfs figure (tests).
 */
export function decideTransport(opts: {
  transport: TransportChoice;
  localWorkers: number;
  weightsBytes: number;
  gradientsBytes: number;
  root?: string;
  free?: number;
}): ShmDecision {
  const root = opts.root ?? SHM_ROOT;
  if (opts.transport === 'socket') return { use: false, reason: '--transport socket' };
  if (opts.localWorkers === 0) return { use: false, reason: 'no local workers (remote workers always use the socket)' };
  if (!existsSync(root)) return { use: false, reason: `${root} does not exist` };
  const needBytes = Math.ceil(
    SHM_HEADROOM *
      (opts.weightsBytes + opts.localWorkers * opts.gradientsBytes + (opts.localWorkers + 1) * SHM_HEADER_BYTES),
  );
  const free = opts.free ?? freeBytes(root);
  if (free === undefined) return { use: false, reason: `cannot read the free space of ${root}` };
  if (free < needBytes) {
    const mb = (b: number) => `${(b / 2 ** 20).toFixed(0)} MiB`;
    return {
      use: false,
      reason: `${root} has ${mb(free)} free, ${opts.localWorkers} local worker(s) need ${mb(needBytes)} (Docker: --shm-size=${Math.ceil(needBytes / 2 ** 20 / 64) * 64}m)`,
    };
  }
  return { use: true, needBytes, freeBytes: free };
}

/** Where read frames land. Each buffer starts 8-byte aligned, so decoded tensors are views. */
export interface ReceiveMemory {
  alloc(bytes: number): Buffer;
  /** `buf` is a buffer alloc returned; nothing uses it any more. */
  free(buf: Buffer): void;
}

/** Plain memory: each buffer its own ArrayBuffer at offset 0, never Node's shared pool. */
export const PLAIN_MEMORY: ReceiveMemory = {
  alloc: (bytes) => Buffer.from(new ArrayBuffer(bytes)),
  free: () => undefined,
};

/**
 * The coordinator's SIMD arena (simd.ts): gradients read there are checked and added by the wasm
 * kernels in place, without another copy. Plain memory when the arena cannot grow.
 */
export function arenaMemory(): ReceiveMemory {
  const blocks = new WeakMap<Buffer, ArenaBlock>();
  return {
    alloc(bytes) {
      const arena = simdArena();
      const block = arena.alloc(bytes);
      if (!block) return PLAIN_MEMORY.alloc(bytes);
      const buf = arena.buffer(block, bytes);
      blocks.set(buf, block);
      return buf;
    },
    free(buf) {
      const block = blocks.get(buf);
      if (block) simdArena().free(block);
      blocks.delete(buf);
    },
  };
}

/** Receive buffers are sized in steps of this, so frames a few bytes longer still fit. */
const RECEIVE_SLACK = 64 * 1024;
/** Receive buffers kept per file for reuse. */
const MAX_SPARE = 2;

/** At most this many pieces per writev call (Linux's IOV_MAX is 1024). */
const MAX_IOV = 1024;

/** Writes `chunks` back to back at `position`, however the kernel splits the writes. */
function writeAllChunks(fd: number, chunks: readonly Uint8Array[], position: number): void {
  let pending = chunks.filter((c) => c.byteLength > 0);
  while (pending.length > 0) {
    const batch = pending.slice(0, MAX_IOV);
    let written = writevSync(fd, batch, position);
    if (written <= 0) throw shmError(`a write at byte ${position} made no progress`);
    position += written;
    // Drop what went out; a piece written in part continues from where it stopped.
    let i = 0;
    while (i < batch.length && written >= batch[i].byteLength) written -= batch[i++].byteLength;
    pending = pending.slice(i);
    if (written > 0) pending[0] = pending[0].subarray(written);
  }
}

/** One region file: positioned writes and reads of whole frames behind the seqlock header. */
export class ShmFile {
  private readonly fd: number;
  // Header buffers of this file's own: every use is synchronous, so reads in flight never share
  // one, and no small pooled Buffer is made per read.
  private readonly header = Buffer.alloc(SHM_HEADER_BYTES);
  private readonly check = Buffer.alloc(SHM_HEADER_BYTES);
  /** Receive buffers, reused: allocating 38 MB afresh per read costs as much as the read. */
  private spare: Buffer[] = [];
  /** Buffers handed out by read(), each mapped to the whole buffer it is the start of. */
  private readonly lent = new Map<Buffer, Buffer>();
  /** readAsync calls in flight, and what close or dispose left to do when they end. */
  private reading = 0;
  private afterReads?: () => void;

  constructor(
    readonly file: string,
    mode: 'create' | 'open',
    private readonly memory: ReceiveMemory = PLAIN_MEMORY,
  ) {
    this.fd = openSync(file, mode === 'create' ? 'w+' : 'r+', 0o600);
    if (mode === 'create') {
      this.header.writeUInt32LE(MAGIC, 0);
      writeSync(this.fd, this.header, 0, SHM_HEADER_BYTES, 0);
    }
  }

  /** Sets the file's size up front (tmpfs allocates pages as they are written). */
  reserve(frameBytes: number): void {
    ftruncateSync(this.fd, SHM_HEADER_BYTES + frameBytes);
  }

  /**
   * Writes `frame` as sequence `seq` (>= 1): invalidate, frame, then the header that commits it.
   * A frame in pieces goes in one vectored write straight from the tensors' memory.
   */
  write(frame: Uint8Array | FrameChunks, seq: number): void {
    if (!(Number.isSafeInteger(seq) && seq >= 1))
      throw new Error(`ShmFile.write: sequence must be a positive integer, got ${seq}`);
    this.header.writeUInt32LE(MAGIC, 0);
    this.header.writeDoubleLE(0, 8);
    this.header.writeDoubleLE(0, 16);
    writeSync(this.fd, this.header, 0, 24, 0);
    if (frame instanceof Uint8Array) {
      for (let off = 0; off < frame.byteLength; )
        off += writeSync(this.fd, frame, off, frame.byteLength - off, SHM_HEADER_BYTES + off);
    } else {
      writeAllChunks(this.fd, frame.chunks, SHM_HEADER_BYTES);
    }
    this.header.writeDoubleLE(seq, 8);
    this.header.writeDoubleLE(frame.byteLength, 16);
    writeSync(this.fd, this.header, 0, 24, 0);
  }

  private readHeader(into: Buffer): { seq: number; length: number } {
    if (readSync(this.fd, into, 0, 24, 0) !== 24 || into.readUInt32LE(0) !== MAGIC)
      throw shmError(`${path.basename(this.file)} has no valid header`);
    return { seq: into.readDoubleLE(8), length: into.readDoubleLE(16) };
  }

  /**
   * Reads the frame committed as (`seq`, `length`) into a buffer of its own (8-byte aligned, so
   * decoded tensors are views). Throws when the file holds another frame or one is being written.
   * The buffer is reused by a later read only after `release`.
   */
  read(seq: number, length: number): Buffer {
    const { buf, out } = this.startRead(seq, length);
    for (let off = 0; off < length; ) {
      const got = readSync(this.fd, out, off, length - off, SHM_HEADER_BYTES + off);
      if (got === 0) return this.shortRead(buf, length - off);
      off += got;
    }
    return this.endRead(seq, length, buf, out);
  }

  /**
   * read(), with the frame's bytes copied on libuv's thread pool: the coordinator checks and adds
   * one worker's gradients while the next worker's are read. The file stays open until it ends.
   */
  async readAsync(seq: number, length: number): Promise<Buffer> {
    this.reading++;
    try {
      const { buf, out } = this.startRead(seq, length);
      for (let off = 0; off < length; ) {
        const got = await new Promise<number>((resolve, reject) =>
          fsRead(this.fd, out, off, length - off, SHM_HEADER_BYTES + off, (err, n) => (err ? reject(err) : resolve(n))),
        );
        if (got === 0) return this.shortRead(buf, length - off);
        off += got;
      }
      if (this.afterReads !== undefined) {
        this.spare.push(buf);
        throw shmError(`${path.basename(this.file)} was closed while it was read`);
      }
      return this.endRead(seq, length, buf, out);
    } finally {
      if (--this.reading === 0 && this.afterReads) this.afterReads();
    }
  }

  private startRead(seq: number, length: number): { buf: Buffer; out: Buffer } {
    const h = this.readHeader(this.header);
    if (h.seq !== seq || h.length !== length) {
      throw shmError(
        `${path.basename(this.file)} holds frame ${h.seq} of ${h.length} bytes, the control message announced ${seq} of ${length}${h.seq === 0 ? ' (a write was interrupted or is in progress)' : ''}`,
      );
    }
    let buf = this.spare.find((b) => b.byteLength >= length);
    if (buf) this.spare = this.spare.filter((b) => b !== buf);
    // Room to spare: a frame's header varies by a few bytes (its numbers' digits), and a buffer
    // sized to the byte would not take the next, slightly longer frame.
    else buf = this.memory.alloc(Math.ceil((length + RECEIVE_SLACK) / RECEIVE_SLACK) * RECEIVE_SLACK);
    return { buf, out: buf.subarray(0, length) };
  }

  private shortRead(buf: Buffer, missing: number): never {
    this.spare.push(buf);
    throw shmError(`${path.basename(this.file)} ends ${missing} bytes short of its frame`);
  }

  private endRead(seq: number, length: number, buf: Buffer, out: Buffer): Buffer {
    const again = this.readHeader(this.check);
    if (again.seq !== seq || again.length !== length) {
      this.spare.push(buf);
      throw shmError(
        `${path.basename(this.file)} was rewritten while it was read (frame ${seq} became ${again.seq}): a torn read, discarded`,
      );
    }
    this.lent.set(out, buf);
    return out;
  }

  /** Hands read buffers back for reuse; their tensors must no longer be in use. */
  release(bufs: Iterable<Buffer>): void {
    for (const b of bufs) {
      const whole = this.lent.get(b);
      if (!whole) continue;
      this.lent.delete(b);
      this.spare.push(whole);
    }
    // The largest few are kept; more would only hold memory a grown frame made obsolete.
    if (this.spare.length > MAX_SPARE) {
      this.spare.sort((a, b) => b.byteLength - a.byteLength);
      for (const extra of this.spare.splice(MAX_SPARE)) this.memory.free(extra);
    }
  }

  /** Closes the file; with reads in flight, once they end (they then fail). */
  close(): void {
    if (this.reading > 0) {
      this.afterReads ??= () => this.closeNow();
      return;
    }
    this.closeNow();
  }

  /**
   * Closes the file and frees its receive buffers, lent ones included: none may be in use. With
   * reads in flight, once they end: their buffers are never freed under them.
   */
  dispose(): void {
    if (this.reading > 0) {
      this.afterReads = () => this.dispose();
      return;
    }
    this.closeNow();
    this.release([...this.lent.keys()]);
    for (const b of this.spare) this.memory.free(b);
    this.spare = [];
  }

  private closeNow(): void {
    try {
      closeSync(this.fd);
    } catch {
      // already closed
    }
  }
}

/** The coordinator's side: the run's region, the weights file and one gradients file per worker. */
export class ShmRegion {
  readonly dir: string;
  readonly weights: ShmFile;
  private readonly gradients = new Map<number, ShmFile>();
  /** Receive buffers handed out this round, per file, released together at the next round. */
  private readonly inUse = new Map<ShmFile, Buffer[]>();
  /** Files of detached workers: their gradients may still be summed this round; freed at the next. */
  private readonly retired = new Set<ShmFile>();
  /** Where gradients are read to: the SIMD arena, so the wasm kernels check and add them in place. */
  private readonly memory = arenaMemory();
  private weightsSeq = 0;
  private closed = false;
  private readonly onExit = () => this.close();

  private constructor(dir: string) {
    this.dir = dir;
    this.weights = new ShmFile(path.join(dir, 'weights'), 'create');
    // A normal exit, process.exit included, removes the region; only kill -9 leaves it (and the
    // next start removes it).
    process.once('exit', this.onExit);
  }

  /** A new region under `root`, after removing stale ones; `removed` names what was cleaned. */
  static create(root = SHM_ROOT): { region: ShmRegion; removed: string[] } {
    const removed = removeStaleRegions(root);
    const dir = path.join(root, `${SHM_PREFIX}${process.pid}-${randomBytes(6).toString('hex')}`);
    mkdirSync(dir, { mode: 0o700 });
    return { region: new ShmRegion(dir), removed };
  }

  gradientsFile(workerId: number): string {
    return path.join(this.dir, `grads-${workerId}`);
  }

  /** Creates worker `workerId`'s gradients file, sized for `frameBytes`; returns its path. */
  attach(workerId: number, frameBytes: number): string {
    this.detach(workerId);
    const f = new ShmFile(this.gradientsFile(workerId), 'create', this.memory);
    f.reserve(frameBytes);
    this.gradients.set(workerId, f);
    return f.file;
  }

  attached(workerId: number): boolean {
    return this.gradients.has(workerId);
  }

  detach(workerId: number): void {
    const f = this.gradients.get(workerId);
    if (!f) return;
    f.close();
    this.retired.add(f);
    this.gradients.delete(workerId);
    rmSync(f.file, { force: true });
  }

  /** Writes a weights frame (whole, or in pieces); returns the (sequence, length) the control message announces. */
  writeWeights(frame: Uint8Array | FrameChunks): { seq: number; byteLength: number } {
    this.weightsSeq++;
    this.weights.write(frame, this.weightsSeq);
    return { seq: this.weightsSeq, byteLength: frame.byteLength };
  }

  /** Reads worker `workerId`'s committed gradients frame (a buffer held until `newRound`). */
  readGradients(workerId: number, seq: number, byteLength: number): Buffer {
    const f = this.gradientsOf(workerId);
    return this.hold(f, f.read(seq, byteLength));
  }

  /** readGradients on libuv's thread pool, so the main thread works on while the bytes copy. */
  async readGradientsAsync(workerId: number, seq: number, byteLength: number): Promise<Buffer> {
    const f = this.gradientsOf(workerId);
    return this.hold(f, await f.readAsync(seq, byteLength));
  }

  private gradientsOf(workerId: number): ShmFile {
    const f = this.gradients.get(workerId);
    if (!f) throw shmError(`worker ${workerId} announced gradients in shared memory but is not attached`);
    return f;
  }

  private hold(f: ShmFile, buf: Buffer): Buffer {
    const held = this.inUse.get(f) ?? [];
    held.push(buf);
    this.inUse.set(f, held);
    return buf;
  }

  /** The previous round's gradients are reduced and dropped: their buffers are reused from now. */
  newRound(): void {
    for (const [f, bufs] of this.inUse) f.release(bufs);
    this.inUse.clear();
    for (const f of this.retired) f.dispose();
    this.retired.clear();
  }

  /** Removes the region (idempotent). */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    process.off('exit', this.onExit);
    this.weights.close();
    for (const f of [...this.gradients.values(), ...this.retired]) f.dispose();
    this.gradients.clear();
    this.retired.clear();
    this.inUse.clear();
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/** A worker's side: reads the weights file, writes its own gradients file. */
export class ShmWorkerFiles {
  private readonly weights: ShmFile;
  private readonly gradients: ShmFile;
  private seq = 0;
  /** Two receive buffers in turn: the tensors made from one stay valid while the next is read. */
  private held: Buffer[] = [];

  constructor(region: string, weightsFile: string, gradientsFile: string) {
    for (const f of [weightsFile, gradientsFile]) {
      if (path.dirname(f) !== path.resolve(region))
        throw shmError(`the coordinator named ${f}, which lies outside the region ${region}`);
    }
    this.weights = new ShmFile(weightsFile, 'open');
    this.gradients = new ShmFile(gradientsFile, 'open');
  }

  readWeights(seq: number, byteLength: number): Buffer {
    const buf = this.weights.read(seq, byteLength);
    this.held.push(buf);
    if (this.held.length > 2) this.weights.release(this.held.splice(0, 1));
    return buf;
  }

  /** Writes a gradients frame (whole, or in pieces); returns what the control message announces. */
  writeGradients(frame: Uint8Array | FrameChunks): { seq: number; byteLength: number } {
    this.seq++;
    this.gradients.write(frame, this.seq);
    return { seq: this.seq, byteLength: frame.byteLength };
  }

  /** Closes the files and frees the receive buffers: no tensor made from them may be in use. */
  close(): void {
    this.held = [];
    this.weights.dispose();
    this.gradients.dispose();
  }
}
