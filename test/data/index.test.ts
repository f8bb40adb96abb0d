import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { crc32, deflateSync } from 'node:zlib';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DataEvent } from '../../data/events.ts';
import { openDataset, silentLog, type OpenDatasetOptions } from '../../data/index.ts';
import { drawSyntheticFlower } from '../../data/synthetic/synthetic.ts';

import { repoRoot } from '../support/paths.ts';

const flowers = path.resolve(repoRoot, '../shared/data/flowers');
const haveFlowers = existsSync(flowers);
const flowersTest = haveFlowers
  ? 'decodes all 300 photos of the shared flowers sample'
  : `decodes all 300 photos of the shared flowers sample — SKIPPED: ${flowers} is absent (it lives outside the repository)`;

let work: string;
let mixed: string;
let cacheDir: string;

/** A PNG whose IHDR claims width x height over a tiny IDAT: the header of a decompression bomb. */
function bombPng(width: number, height: number): Buffer {
  const chunk = (type: string, data: Buffer): Buffer => {
    const body = Buffer.concat([Buffer.from(type, 'latin1'), data]);
    const out = Buffer.alloc(12 + data.length);
    out.writeUInt32BE(data.length, 0);
    body.copy(out, 4);
    out.writeUInt32BE(crc32(body) >>> 0, 8 + data.length);
    return out;
  };
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr[8] = 8; // bit depth
  ihdr[9] = 2; // RGB
  const signature = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
  return Buffer.concat([
    signature,
    chunk('IHDR', ihdr),
    chunk('IDAT', deflateSync(Buffer.alloc(1024))),
    chunk('IEND', Buffer.alloc(0)),
  ]);
}

/** The awkward folder of the issue: every kind of image a user might have, and every kind of junk. */
async function makeMixedFolder(root: string): Promise<void> {
  const photos = path.join(root, 'photos');
  await mkdir(photos, { recursive: true });
  const w = 40;
  const h = 24;
  const halves = Buffer.alloc(w * h * 3);
  for (let i = 0; i < w * h; i++) halves.set(i % w < w / 2 ? [230, 20, 20] : [20, 20, 230], i * 3);
  const img = (width = w, height = h, px = halves) => sharp(px, { raw: { width, height, channels: 3 } });
  const at = (name: string): string => path.join(photos, name);
  await img().toColourspace('b-w').jpeg().toFile(at('gray.jpg'));
  await img().toColourspace('cmyk').jpeg().toFile(at('cmyk.jpg'));
  await img().ensureAlpha(0.5).png().toFile(at('alpha.png'));
  await img().toColourspace('rgb16').png().toFile(at('deep.png'));
  await img().gif().toFile(at('anim.gif'));
  await img().webp().toFile(at('pic.webp'));
  await img().jpeg({ progressive: true }).toFile(at('progressive.JPG'));
  await img().jpeg().withMetadata({ orientation: 6 }).toFile(at('rotated.jpg'));
  await sharp({ create: { width: 16, height: 16, channels: 3, background: '#3366cc' } })
    .png()
    .toFile(at('tiny.png'));
  await sharp({ create: { width: 600, height: 40, channels: 3, background: '#22aa44' } })
    .jpeg()
    .toFile(at('panorama.jpg'));
  const noise = Buffer.alloc(300 * 200 * 3);
  for (let i = 0; i < noise.length; i++) noise[i] = (i * 7919) % 251;
  const jpeg = await img(300, 200, noise).jpeg().toBuffer();
  await writeFile(at('truncated.jpg'), jpeg.subarray(0, jpeg.length >> 1));
  await writeFile(at('empty.jpg'), '');
  await writeFile(at('text.jpg'), 'plain text saved as .jpg\n');
  await writeFile(at('._foo.jpg'), Buffer.from([0x00, 0x05, 0x16, 0x07, 0, 2, 0, 0]));
  await writeFile(at('bomb.png'), bombPng(20_000, 20_000));
  await symlink('..', at('parent-again'));
}

const open = (options: Partial<OpenDatasetOptions> & { data: string }) =>
  openDataset({ imageSize: 16, seed: 0, cacheDir, log: silentLog, ...options });

beforeAll(async () => {
  work = await mkdtemp(path.join(tmpdir(), 'gan-dist-index-'));
  mixed = path.join(work, 'mixed');
  cacheDir = path.join(work, 'cache');
  await makeMixedFolder(mixed);
});

afterAll(async () => {
  await rm(work, { recursive: true, force: true });
});

describe('openDataset on a folder', () => {
  it.skipIf(!haveFlowers)(flowersTest, async () => {
    const dataset = await open({ data: flowers, imageSize: 64, cache: false });
    expect(dataset.size).toBe(300);
    expect(dataset.skipped.files).toEqual([]);
    expect(dataset.classes).toEqual(['daisy', 'dandelion', 'roses', 'sunflowers', 'tulips']);
    for (const label of dataset.classes) expect(dataset.labels.filter((l) => l === label)).toHaveLength(60);
    expect(dataset.image(299)).toHaveLength(64 * 64 * 3);
    const batch = dataset.createBatchIterator({ batchSize: 128, seed: 1 }).next();
    expect(batch.images).toHaveLength(128 * 64 * 64 * 3);
    expect(batch.iterationsPerEpoch).toBe(2);
  });

  it('counts each usable image once and names the reason for every file it skips', async () => {
    const events: DataEvent[] = [];
    const dataset = await open({ data: mixed, log: (e) => events.push(e) });
    expect([...dataset.files].sort()).toEqual(
      [
        'alpha.png',
        'anim.gif',
        'cmyk.jpg',
        'deep.png',
        'gray.jpg',
        'panorama.jpg',
        'pic.webp',
        'progressive.JPG',
        'rotated.jpg',
        'tiny.png',
      ].map((f) => `photos/${f}`),
    );
    expect(dataset.skipped.files.map((f) => [f.rel, f.kind])).toEqual([
      ['photos/._foo.jpg', 'junk'],
      ['photos/bomb.png', 'too-large'],
      ['photos/empty.jpg', 'empty'],
      ['photos/text.jpg', 'not-image'],
      ['photos/truncated.jpg', 'truncated'],
    ]);
    expect(dataset.skipped.files.find((f) => f.kind === 'too-large')?.reason).toMatch(/20000x20000 \(400 megapixels\)/);
    expect(dataset.skipped.byKind).toEqual({ junk: 1, 'too-large': 1, empty: 1, 'not-image': 1, truncated: 1 });
    const warned = events.filter((e) => e.event === 'data-skip').map((e) => (e as { file: string }).file);
    expect(warned).toEqual(dataset.skipped.files.map((f) => f.rel));
  });

  it('applies EXIF orientation: the stored left (red) half is on top', async () => {
    const dataset = await open({ data: mixed });
    const image = dataset.image(dataset.files.indexOf('photos/rotated.jpg'));
    const px = (x: number, y: number): number[] => Array.from(image.subarray((y * 16 + x) * 3, (y * 16 + x) * 3 + 3));
    expect(px(8, 1)[0]).toBeGreaterThan(180);
    expect(px(8, 14)[2]).toBeGreaterThan(180);
  });

  it('decodes the same pixels in a piscina pool as on the main thread', async () => {
    const main = await open({ data: mixed, threads: 0, cache: false });
    const pooled = await open({ data: mixed, threads: 2, cache: false });
    expect(pooled.files).toEqual(main.files);
    expect(pooled.skipped).toEqual(main.skipped);
    for (let i = 0; i < main.size; i++) expect(pooled.image(i), main.files[i]).toEqual(main.image(i));
  });

  it('streams from the cache file when the images exceed the memory budget, with the same batches', async () => {
    const inMemory = await open({ data: mixed });
    const streamed = await open({ data: mixed, memoryBudgetBytes: 1000 });
    expect([inMemory.storage, streamed.storage]).toEqual(['memory', 'stream']);
    const a = inMemory.createBatchIterator({ batchSize: 4, seed: 7 });
    const b = streamed.createBatchIterator({ batchSize: 4, seed: 7 });
    for (let k = 0; k < 6; k++) expect(b.next().images).toEqual(a.next().images);
    streamed.close();
  });

  it('skips and counts an image file over the size cap, warning with its name and the cap', async () => {
    const capped = path.join(work, 'capped', 'roses');
    await mkdir(capped, { recursive: true });
    const solid = sharp({ create: { width: 16, height: 16, channels: 3, background: '#cc3366' } }).png();
    await solid.clone().toFile(path.join(capped, 'a.png'));
    await solid.clone().toFile(path.join(capped, 'c.png'));
    // Pseudo-random pixels do not compress: about 180 KB of PNG.
    const noise = Buffer.alloc(300 * 200 * 3);
    let x = 1;
    for (let i = 0; i < noise.length; i++) {
      x = (Math.imul(x, 1103515245) + 12345) >>> 0;
      noise[i] = x >>> 24;
    }
    await sharp(noise, { raw: { width: 300, height: 200, channels: 3 } })
      .png()
      .toFile(path.join(capped, 'b.png'));
    const events: DataEvent[] = [];
    const dataset = await open({ data: path.dirname(capped), maxFileBytes: 64 * 1024, log: (e) => events.push(e) });
    expect([...dataset.files]).toEqual(['roses/a.png', 'roses/c.png']);
    expect(dataset.skipped.byKind).toEqual({ 'too-large': 1 });
    const reason = expect.stringMatching(
      /^file too large: .* \(\d+ bytes\), over the 64\.0 KB \(65536 bytes\) limit on an image file's size$/,
    );
    expect(dataset.skipped.files).toEqual([{ rel: 'roses/b.png', kind: 'too-large', reason }]);
    expect(events.filter((e) => e.event === 'data-skip')).toEqual([
      { event: 'data-skip', level: 'warn', file: 'roses/b.png', kind: 'too-large', reason },
    ]);
    dataset.close();
  });

  it('stops with a data error naming the folder, the counts and the fix when no image decodes', async () => {
    const junk = path.join(work, 'junk');
    await mkdir(junk);
    await writeFile(path.join(junk, 'a.jpg'), 'text');
    await writeFile(path.join(junk, 'README'), 'text');
    await expect(open({ data: junk })).rejects.toMatchObject({
      name: 'GanDistError',
      code: 'GAN_DIST_E_DATA',
      message: `no decodable image in ${junk}: 1 image files found, 1 skipped (1 not-image); 1 other files ignored`,
      hint: expect.stringMatching(/--data synthetic/),
    });
  });

  it('stops with a data error when there are fewer images than one mini-batch', async () => {
    await expect(open({ data: mixed, miniBatchSize: 128 })).rejects.toMatchObject({
      code: 'GAN_DIST_E_DATA',
      message: `${mixed} has 10 usable images (5 skipped (1 junk, 1 too-large, 1 empty, 1 not-image, 1 truncated)), fewer than one mini-batch of 128`,
      hint: expect.stringMatching(/lower --batch-size/),
    });
  });

  it("says how to get 'flowers' when it has not been fetched", async () => {
    await expect(open({ data: 'flowers', cacheDir: path.join(work, 'empty-cache') })).rejects.toMatchObject({
      code: 'GAN_DIST_E_DATA',
      message: `the flowers dataset is not at ${path.join(work, 'empty-cache', 'datasets', 'flower_photos')}`,
      hint: expect.stringMatching(/gan-dist data fetch flowers.*--data synthetic/),
    });
  });
});

describe('openDataset on synthetic', () => {
  it('draws as many flowers as asked and batches them through the same path', async () => {
    const dataset = await open({ data: 'synthetic', count: 40, seed: 3 });
    expect(dataset.size).toBe(40);
    expect(dataset.source).toBe('synthetic');
    const expected = new Uint8Array(16 * 16 * 3);
    drawSyntheticFlower(17, { imageSize: 16, seed: 3 }, expected);
    expect(dataset.image(17)).toEqual(expected);
    const batch = dataset.createBatchIterator({ batchSize: 16, seed: 1 }).next();
    expect([batch.batchSize, batch.iterationsPerEpoch, batch.images.length]).toEqual([16, 2, 16 * 16 * 16 * 3]);
  });
});
