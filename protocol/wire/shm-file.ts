// One file of the shared-memory transport (shm.ts): whole frames behind a seqlock header, copied
// through a memory map of the file (shm-map.ts) or with positioned fs calls, into receive buffers
// that are reused; a worker takes its weights as a view of the map.
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
  fstatSync,
  ftruncateSync,
  openSync,
  read as fsRead,
  readSync,
  writeSync,
  writevSync,
} from 'node:fs';
import path from 'node:path';
import { GanDistError } from '../errors.ts';
import type { FrameChunks } from './framing.ts';
import { PLAIN_MEMORY, type ReceiveMemory } from './receive-memory.ts';
import { mapFile, shmAccess } from './shm-map.ts';

export const SHM_HEADER_BYTES = 64;
const MAGIC = 0x4d534447; // 'GDSM' little-endian

export function shmError(message: string): GanDistError {
  return new GanDistError('GAN_DIST_E_PROTOCOL', `shared memory: ${message}`);
}

/** Receive buffers are sized in steps of this, so frames a few bytes longer still fit. */
const RECEIVE_SLACK = 64 * 1024;
/** Receive buffers kept per file for reuse. */
const MAX_SPARE = 2;

/** A writer grows its file in steps of this, so frames a few bytes longer need no new map. */
const GROW_STEP = 2 ** 20;

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
  private closed = false;
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
  /**
   * The file mapped from byte 0 (shm-map.ts), where the addon is present: frames are copied into
   * and out of it, and only the header goes through fs calls (each a syscall, which orders the
   * frame's bytes before the header that commits them). It covers the file as it was when mapped;
   * files only grow, so every byte of it stays backed.
   */
  private map?: Buffer;
  private readonly mapping = shmAccess().mode === 'mmap';

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
   * A map of at least the first `end` bytes, or undefined (no addon; or, for a reader, a file
   * shorter than that, which the fs path then reports). A writer grows the file to fit first.
   */
  private mapped(end: number, grow: boolean): Buffer | undefined {
    if (!this.mapping) return undefined;
    if (this.map && this.map.byteLength >= end) return this.map;
    let size = fstatSync(this.fd).size;
    if (size < end) {
      if (!grow) return undefined;
      size = Math.ceil(end / GROW_STEP) * GROW_STEP;
      ftruncateSync(this.fd, size);
    }
    this.map = mapFile(this.fd, size);
    return this.map;
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
    const map = this.mapped(SHM_HEADER_BYTES + frame.byteLength, true);
    if (map) {
      let at = SHM_HEADER_BYTES;
      for (const c of frame instanceof Uint8Array ? [frame] : frame.chunks) {
        map.set(c, at);
        at += c.byteLength;
      }
    } else if (frame instanceof Uint8Array) {
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
    if (this.copyFromMap(out)) return this.endRead(seq, length, buf, out);
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
   * From a map the copy is a memcpy on this thread, at twice the speed of the pool's pread.
   */
  async readAsync(seq: number, length: number): Promise<Buffer> {
    if (this.mapping) return this.read(seq, length);
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

  /**
   * The frame committed as (`seq`, `length`) as a view of the map, without a copy; undefined
   * where there is no map of it (read() then copies). The view changes under its holder with the
   * writer's next frame: the holder copies what it needs and then asks `holds` whether the frame
   * was still this one meanwhile.
   */
  view(seq: number, length: number): Buffer | undefined {
    if (!this.mapping) return undefined;
    this.expect(seq, length);
    return this.mapped(SHM_HEADER_BYTES + length, false)?.subarray(SHM_HEADER_BYTES, SHM_HEADER_BYTES + length);
  }

  /** Whether the file still holds frame (`seq`, `length`): a view of it taken earlier was not torn. */
  holds(seq: number, length: number): boolean {
    const h = this.readHeader(this.check);
    return h.seq === seq && h.length === length;
  }

  private expect(seq: number, length: number): void {
    const h = this.readHeader(this.header);
    if (h.seq !== seq || h.length !== length) {
      throw shmError(
        `${path.basename(this.file)} holds frame ${h.seq} of ${h.length} bytes, the control message announced ${seq} of ${length}${h.seq === 0 ? ' (a write was interrupted or is in progress)' : ''}`,
      );
    }
  }

  private startRead(seq: number, length: number): { buf: Buffer; out: Buffer } {
    this.expect(seq, length);
    let buf = this.spare.find((b) => b.byteLength >= length);
    if (buf) this.spare = this.spare.filter((b) => b !== buf);
    // Room to spare: a frame's header varies by a few bytes (its numbers' digits), and a buffer
    // sized to the byte would not take the next, slightly longer frame.
    else buf = this.memory.alloc(Math.ceil((length + RECEIVE_SLACK) / RECEIVE_SLACK) * RECEIVE_SLACK);
    return { buf, out: buf.subarray(0, length) };
  }

  /** Copies the frame from the map into `out`; false where there is no map of it (the fs path reads it). */
  private copyFromMap(out: Buffer): boolean {
    const map = this.mapped(SHM_HEADER_BYTES + out.byteLength, false);
    if (!map) return false;
    out.set(map.subarray(SHM_HEADER_BYTES, SHM_HEADER_BYTES + out.byteLength));
    return true;
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
    // Once only: a second close of the number could close another file or socket that reused it
    // (a restarted worker's new gradients file, attached while the run waits for workers).
    if (this.closed) return;
    this.closed = true;
    // The map outlives the descriptor; dropping it lets the GC unmap it.
    this.map = undefined;
    closeSync(this.fd);
  }
}
