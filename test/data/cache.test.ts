import { mkdtemp, readdir, rm, stat, truncate, utimes, writeFile } from 'node:fs/promises';
import { homedir, tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DataEvent } from '../../data/events.ts';
import { openDataset } from '../../data/index.ts';
import { cacheRoot } from '../../data/locations.ts';
import { writeSyntheticPngs } from '../../data/synthetic/synthetic.ts';

let work: string;
let photos: string;

beforeAll(async () => {
  work = await mkdtemp(path.join(tmpdir(), 'gan-dist-cache-'));
  photos = path.join(work, 'photos');
  await writeSyntheticPngs(photos, 6, { imageSize: 24, seed: 2 });
});

afterAll(async () => {
  await rm(work, { recursive: true, force: true });
});

/** Opens `photos` with its own cache root, returning the dataset and the event names seen. */
async function open(cacheDir: string) {
  const events: DataEvent[] = [];
  const dataset = await openDataset({ data: photos, imageSize: 16, seed: 0, cacheDir, log: (e) => events.push(e) });
  return { dataset, events: events.map((e) => e.event).filter((e) => e !== 'data-progress') };
}

const cacheFiles = async (cacheDir: string): Promise<string[]> => readdir(path.join(cacheDir, 'decoded'));

describe('the decoded-image cache', () => {
  it('is reused on a second open, with the same pixels and no decoding', async () => {
    const cacheDir = path.join(work, 'reuse');
    const first = await open(cacheDir);
    expect(first.events).toEqual(['data-listed', 'data-cache-miss', 'data-decoded', 'data-ready']);
    const second = await open(cacheDir);
    expect(second.events).toEqual(['data-listed', 'data-cache-hit', 'data-ready']);
    expect(second.dataset.files).toEqual(first.dataset.files);
    for (let i = 0; i < first.dataset.size; i++) expect(second.dataset.image(i)).toEqual(first.dataset.image(i));
    expect(await cacheFiles(cacheDir)).toHaveLength(1);
  });

  it('is rebuilt when a file changes, replacing the old entry', async () => {
    const cacheDir = path.join(work, 'invalidate');
    await open(cacheDir);
    const before = await cacheFiles(cacheDir);
    const changed = path.join(photos, 'flower-000003.png');
    const { mtime } = await stat(changed);
    await utimes(changed, mtime, new Date(mtime.getTime() + 5000));
    const after = await open(cacheDir);
    expect(after.events).toContain('data-cache-miss');
    expect(after.events).toContain('data-decoded');
    const files = await cacheFiles(cacheDir);
    expect(files).toHaveLength(1);
    expect(files).not.toEqual(before);
  });

  it('is keyed by the decode options too', async () => {
    const cacheDir = path.join(work, 'options');
    await open(cacheDir);
    const events: string[] = [];
    await openDataset({
      data: photos,
      imageSize: 16,
      resize: 'cover',
      seed: 0,
      cacheDir,
      log: (e) => events.push(e.event),
    });
    expect(events).toContain('data-cache-miss');
  });

  it('is rebuilt, not trusted, when its file was cut short', async () => {
    const cacheDir = path.join(work, 'damaged');
    const first = await open(cacheDir);
    const [file] = await cacheFiles(cacheDir);
    await truncate(path.join(cacheDir, 'decoded', file), 100);
    const again = await open(cacheDir);
    expect(again.events).toContain('data-cache-miss');
    expect(again.dataset.image(5)).toEqual(first.dataset.image(5));
  });

  it('warns and keeps going in memory when the cache folder cannot be written', async () => {
    const cacheDir = path.join(work, 'blocked');
    // A file where the folder should be: fails for root too, unlike permission bits.
    await writeFile(cacheDir, 'not a folder');
    const { dataset, events } = await open(cacheDir);
    expect(events).toContain('data-cache-unwritable');
    expect(dataset.size).toBe(6);
    expect(dataset.storage).toBe('memory');
  });
});

describe('cacheRoot', () => {
  it('takes the option first, then GAN_DIST_CACHE, then XDG_CACHE_HOME, then ~/.cache', () => {
    expect(cacheRoot('/opt/c', { GAN_DIST_CACHE: '/env/c' })).toBe('/opt/c');
    expect(cacheRoot(undefined, { GAN_DIST_CACHE: '/env/c', XDG_CACHE_HOME: '/xdg' })).toBe('/env/c');
    expect(cacheRoot(undefined, { XDG_CACHE_HOME: '/xdg' })).toBe('/xdg/gan-dist');
    expect(cacheRoot(undefined, {})).toBe(path.join(homedir(), '.cache', 'gan-dist'));
  });
});
