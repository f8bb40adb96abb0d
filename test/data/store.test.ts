import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BatchIterator } from '../../data/batches.ts';
import { FileStore, MemoryStore } from '../../data/store.ts';

const BYTES = 2 * 2 * 3;
const COUNT = 50;
let dir: string;
let file: string;
const pixels = Uint8Array.from({ length: COUNT * BYTES }, (_, i) => (i * 31) & 255);

beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'gan-dist-store-'));
  file = path.join(dir, 'images.bin');
  // 16 bytes of something else first: the store reads from an offset.
  await writeFile(file, Buffer.concat([Buffer.alloc(16, 0xee), pixels]));
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('FileStore', () => {
  it('reads the same images as a memory store of the same bytes', () => {
    const streamed = new FileStore(file, COUNT, BYTES, 16);
    const memory = new MemoryStore(pixels, BYTES);
    for (const i of [0, 1, 17, COUNT - 1]) expect(streamed.image(i)).toEqual(memory.image(i));
    streamed.close();
  });

  it('draws the same batches as a memory store, with and without its read-ahead finished', async () => {
    const streamed = new FileStore(file, COUNT, BYTES, 16);
    const fromDisk = new BatchIterator(streamed, 2, { batchSize: 8, seed: 3 });
    const fromMemory = new BatchIterator(new MemoryStore(pixels, BYTES), 2, { batchSize: 8, seed: 3 });
    for (let k = 0; k < 14; k++) {
      expect(fromDisk.next().images).toEqual(fromMemory.next().images);
      // Every other step, let the read-ahead of the next batch land before drawing it.
      if (k % 2 === 0) await streamed.prefetched();
    }
    streamed.close();
  });

  it('refuses indices outside the store and use after close', () => {
    const streamed = new FileStore(file, COUNT, BYTES, 16);
    expect(() => streamed.image(COUNT)).toThrow(/outside \[0, 50\)/);
    streamed.close();
    expect(() => streamed.image(0)).toThrow(/closed/);
  });
});

describe('MemoryStore', () => {
  it('hands out views, not copies', () => {
    const store = new MemoryStore(pixels.slice(), BYTES);
    expect(store.image(2).buffer).toBe(store.image(3).buffer);
  });
});
