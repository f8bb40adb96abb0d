import { link, mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { GanDistError } from '../../protocol/errors.ts';
import { listImages } from '../../data/listing.ts';

let root: string;
let png: Buffer;

beforeAll(async () => {
  root = await mkdtemp(path.join(tmpdir(), 'gan-dist-listing-'));
  png = await sharp({ create: { width: 4, height: 4, channels: 3, background: '#808080' } })
    .png()
    .toBuffer();
  await mkdir(path.join(root, 'tulips', 'nested'), { recursive: true });
  await mkdir(path.join(root, 'daisy'));
  await mkdir(path.join(root, '.hidden'));
  await writeFile(path.join(root, 'daisy', 'b.PNG'), png);
  await writeFile(path.join(root, 'daisy', 'a.png'), png);
  await writeFile(path.join(root, 'daisy', 'Z.Jpeg'), png); // content wins over the extension at decode time
  await writeFile(path.join(root, 'daisy', 'no-extension'), png);
  await writeFile(path.join(root, 'daisy', '._a.png'), Buffer.from([0x00, 0x05, 0x16, 0x07, 0, 0, 0, 0]));
  await writeFile(path.join(root, 'daisy', 'icon.bmp'), Buffer.from('BM....'));
  await writeFile(path.join(root, 'daisy', 'notes.txt'), 'hello');
  await writeFile(path.join(root, 'tulips', 'nested', 'c.webp'), png);
  await writeFile(path.join(root, '.hidden', 'd.png'), png);
  await writeFile(path.join(root, 'LICENSE.txt'), 'text');
  // Loops and second paths to the same files.
  await symlink('..', path.join(root, 'tulips', 'up'));
  await symlink(path.join(root, 'daisy'), path.join(root, 'zz-daisy-again'));
  await link(path.join(root, 'daisy', 'a.png'), path.join(root, 'tulips', 'hardlink.png'));
});

afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

describe('listImages', () => {
  it('lists images by extension in any case and by content, in code-point order of their paths', async () => {
    const listing = await listImages(root);
    expect(listing.files.map((f) => f.rel)).toEqual([
      'daisy/Z.Jpeg',
      'daisy/a.png',
      'daisy/b.PNG',
      'daisy/no-extension',
      'tulips/nested/c.webp',
    ]);
  });

  it('labels each image with the folder that holds it', async () => {
    const listing = await listImages(root);
    expect(listing.files.map((f) => f.label)).toEqual(['daisy', 'daisy', 'daisy', 'daisy', 'nested']);
  });

  it('follows a symlink to a parent folder without looping or counting a file twice', async () => {
    const listing = await listImages(root);
    const rels = listing.files.map((f) => f.rel);
    expect(new Set(rels).size).toBe(rels.length);
    expect(rels.some((r) => r.includes('up/') || r.startsWith('zz-daisy-again/') || r.includes('hardlink'))).toBe(
      false,
    );
  });

  it('reports AppleDouble junk and unsupported formats with reasons, and ignores plain non-images', async () => {
    const listing = await listImages(root);
    expect(listing.skipped).toEqual([
      { rel: 'daisy/._a.png', kind: 'junk', reason: expect.stringMatching(/AppleDouble/) },
      {
        rel: 'daisy/icon.bmp',
        kind: 'unsupported',
        reason: expect.stringMatching(/BMP images are not decodable by sharp/),
      },
    ]);
    expect(listing.ignored).toBe(2); // notes.txt, LICENSE.txt
  });

  it('keeps the size and mtime of each file for the cache key', async () => {
    const listing = await listImages(root);
    expect(listing.files[1]).toMatchObject({ size: png.length, path: path.join(root, 'daisy', 'a.png') });
    expect(listing.files[1].mtimeMs).toBeGreaterThan(0);
  });

  it('stops with a data error naming a missing folder', async () => {
    const missing = path.join(root, 'nope');
    await expect(listImages(missing)).rejects.toThrow(GanDistError);
    await expect(listImages(missing)).rejects.toThrow(`data folder ${missing} does not exist`);
  });
});
