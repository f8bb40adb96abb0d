// The shared-memory transport for workers on the coordinator's machine: tensor frames travel
// through files under /dev/shm (memory-mapped where the optional addon built, shm-map.ts, else
// written and read with positioned fs calls; into reused buffers either way), and only small
// control messages cross the socket.
//
// Node has neither mmap nor cross-process SharedArrayBuffer of its own, hence files. Per run one
// directory `/dev/shm/gan-dist-<pid>-<random>` holds `weights` (the coordinator writes each
// version once, every local worker reads it) and `grads-<workerId>` (each worker writes its own).
// The frames are the protocol's own frames, decoded and validated as if they had come over the
// socket.
//
// Each file holds one frame behind a seqlock header (shm-file.ts); this file chooses the transport,
// and holds the region of a run: the coordinator's side and a worker's.

import { existsSync, mkdirSync, readdirSync, rmSync, statfsSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { GanDistError } from '../errors.ts';
import type { FrameChunks } from './framing.ts';
import { arenaMemory } from './receive-memory.ts';
import { SHM_HEADER_BYTES, ShmFile, shmError } from './shm-file.ts';

export const SHM_ROOT = '/dev/shm';
export const SHM_PREFIX = 'gan-dist-';
/** The environment variable that hands a launched worker its coordinator's region. */
export const SHM_ENV = 'GAN_DIST_SHM_REGION';
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

  /**
   * readGradients, its copy on libuv's thread pool where the file is read with fs calls (the main
   * thread works on meanwhile); out of a map it is a memcpy on this thread, twice as fast.
   */
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
  /** Whether the weights read last are a view of the mapped file (checked again once taken). */
  private viewed = false;

  constructor(region: string, weightsFile: string, gradientsFile: string) {
    for (const f of [weightsFile, gradientsFile]) {
      if (path.dirname(f) !== path.resolve(region))
        throw shmError(`the coordinator named ${f}, which lies outside the region ${region}`);
    }
    this.weights = new ShmFile(weightsFile, 'open');
    this.gradients = new ShmFile(gradientsFile, 'open');
  }

  /**
   * The weights frame: where the file is mapped, a view of it (no copy: the trainer's tensors are
   * made straight from the region), which `weightsTaken` then checks was not rewritten while it
   * was used; else a copy in a receive buffer of its own.
   */
  readWeights(seq: number, byteLength: number): Buffer {
    const view = this.weights.view(seq, byteLength);
    this.viewed = view !== undefined;
    if (view) return view;
    const buf = this.weights.read(seq, byteLength);
    this.held.push(buf);
    if (this.held.length > 2) this.weights.release(this.held.splice(0, 1));
    return buf;
  }

  /**
   * The weights read last were used (copied into tensors): a view of the region must still show
   * the frame it was, else what was copied may be torn. A copy was checked when it was made.
   */
  weightsTaken(seq: number, byteLength: number): void {
    if (this.viewed && !this.weights.holds(seq, byteLength))
      throw shmError(`the weights file was rewritten while frame ${seq} was taken from it: torn weights, discarded`);
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
