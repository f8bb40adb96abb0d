// Where decoded images live while training: all in memory when they fit the budget, else read
// from the cache file on demand, with the next batch's images read ahead asynchronously.

import { closeSync, openSync, read, readSync } from 'node:fs';

export interface ImageStore {
  readonly count: number;
  readonly bytesPerImage: number;
  readonly storage: 'memory' | 'stream';
  /** Image i, HWC RGB: a view into memory, or a fresh copy read from disk. */
  image(i: number): Uint8Array;
  /** Copies the images at `indices` into `out`, back to back. */
  gather(indices: ArrayLike<number>, out: Uint8Array): void;
  /** A hint that `indices` are wanted next; streaming stores start reading them. */
  prefetch(indices: ArrayLike<number>): void;
  close(): void;
}

export class MemoryStore implements ImageStore {
  readonly storage = 'memory';
  readonly count: number;

  constructor(
    private readonly pixels: Uint8Array,
    readonly bytesPerImage: number,
  ) {
    this.count = pixels.length / bytesPerImage;
    if (!Number.isInteger(this.count)) throw new RangeError('store: pixel buffer is not a whole number of images');
  }

  image(i: number): Uint8Array {
    checkIndex(i, this.count);
    return this.pixels.subarray(i * this.bytesPerImage, (i + 1) * this.bytesPerImage);
  }

  gather(indices: ArrayLike<number>, out: Uint8Array): void {
    for (let k = 0; k < indices.length; k++) out.set(this.image(indices[k]), k * this.bytesPerImage);
  }

  prefetch(): void {}

  close(): void {}
}

/** Images stored back to back from byte `offset` of a file (the cache file). */
export class FileStore implements ImageStore {
  readonly storage = 'stream';
  private fd: number | undefined;
  /** Images read ahead, by index; replaced by each prefetch. */
  private ahead = new Map<number, Uint8Array>();
  private generation = 0;
  private pending: Promise<void>[] = [];

  constructor(
    file: string,
    readonly count: number,
    readonly bytesPerImage: number,
    private readonly offset = 0,
  ) {
    this.fd = openSync(file, 'r');
  }

  image(i: number): Uint8Array {
    checkIndex(i, this.count);
    const out = new Uint8Array(this.bytesPerImage);
    this.readInto(i, out);
    return out;
  }

  gather(indices: ArrayLike<number>, out: Uint8Array): void {
    for (let k = 0; k < indices.length; k++) {
      const i = indices[k];
      checkIndex(i, this.count);
      const target = out.subarray(k * this.bytesPerImage, (k + 1) * this.bytesPerImage);
      const ready = this.ahead.get(i);
      if (ready) target.set(ready);
      else this.readInto(i, target);
    }
  }

  prefetch(indices: ArrayLike<number>): void {
    const fd = this.openFd();
    const generation = ++this.generation;
    this.ahead = new Map();
    this.pending = [];
    for (let k = 0; k < indices.length; k++) {
      const i = indices[k];
      checkIndex(i, this.count);
      const buf = new Uint8Array(this.bytesPerImage);
      // Each read has its own buffer, so one landing after the batch was drawn harms nothing;
      // the generation check keeps it out of a newer prefetch's map.
      this.pending.push(
        new Promise((resolve) => {
          read(fd, buf, 0, buf.length, this.offset + i * this.bytesPerImage, (err, bytesRead) => {
            if (!err && bytesRead === buf.length && generation === this.generation) this.ahead.set(i, buf);
            resolve();
          });
        }),
      );
    }
  }

  /** Resolves once the latest read-ahead has landed (failed reads are simply read again later). */
  async prefetched(): Promise<void> {
    await Promise.all(this.pending);
  }

  close(): void {
    if (this.fd !== undefined) closeSync(this.fd);
    this.fd = undefined;
    this.generation++;
    this.ahead = new Map();
  }

  private readInto(i: number, out: Uint8Array): void {
    const n = readSync(this.openFd(), out, 0, this.bytesPerImage, this.offset + i * this.bytesPerImage);
    if (n !== this.bytesPerImage) throw new RangeError(`store: image ${i} is cut short in the cache file`);
  }

  private openFd(): number {
    if (this.fd === undefined) throw new Error('store: the dataset was closed');
    return this.fd;
  }
}

function checkIndex(i: number, count: number): void {
  if (!Number.isInteger(i) || i < 0 || i >= count) throw new RangeError(`image index ${i} is outside [0, ${count})`);
}
