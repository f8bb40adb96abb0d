// The decoded-image cache: one file per (folder, file list with sizes and mtimes, decode options),
// or per synthetic set, so a second start reads pixels instead of decoding or drawing them.
//
// File layout: the pixels (count x H x W x 3 bytes, HWC RGB) from byte 0, then a JSON trailer
// (the header below), then its length as uint32 LE and the magic "GDCACHE1". Pixels first, so
// they can be written group by group while decoding; written to a temporary name, renamed when whole.

import { createHash } from 'node:crypto';
import { mkdir, open, readdir, rename, rm, type FileHandle } from 'node:fs/promises';
import path from 'node:path';
import sharp from 'sharp';
import { GanDistError } from '../protocol/errors.ts';
import type { DataLog } from './events.ts';
import { formatBytes } from './progress.ts';
import type { SkippedFile } from './skips.ts';
import { FileStore, MemoryStore, type ImageStore } from './store.ts';

const MAGIC = 'GDCACHE1';
const TAIL_BYTES = 4 + MAGIC.length;
/** Bump when the decode pipeline changes what pixels it produces. */
const CACHE_FORMAT = 1;

export interface CacheHeader {
  format: number;
  key: string;
  imageSize: number;
  /** Per decoded image: its path relative to the data folder, and its label. */
  files: string[];
  labels: string[];
  /** Files the decoder refused, kept so a cached start reports the same skips. */
  failures: SkippedFile[];
}

export interface CacheEntry {
  file: string;
  key: string;
  /** File-name prefix shared by entries of the same folder and options: a new one replaces the old. */
  family: string;
}

/**
 * The cache file for a set of images identified by `identity` (for a folder: its path, every
 * file's path, size and mtime, and the decode options). `family` names the entries that a new
 * one replaces, e.g. the same folder at the same size, so changed folders do not pile up.
 */
export function cacheEntry(dir: string, family: string, identity: unknown): CacheEntry {
  const key = createHash('sha256')
    .update(JSON.stringify({ format: CACHE_FORMAT, sharp: sharp.versions.sharp, identity }))
    .digest('hex');
  const prefix = `${family.replace(/[^\w.-]/g, '_').slice(0, 80)}-`;
  return { file: path.join(dir, `${prefix}${key.slice(0, 32)}.gdc`), key, family: prefix };
}

/** A short stable tag for a path, for cache file names. */
export function pathTag(p: string): string {
  return `${path.basename(p).slice(0, 40)}-${createHash('sha256').update(p).digest('hex').slice(0, 12)}`;
}

/**
 * Reads the header of a cache file and checks it matches `key` and is whole; undefined when the
 * file is absent, stale or damaged (it is then rebuilt). Returns where the pixels are.
 */
export async function readCacheHeader(
  entry: CacheEntry,
): Promise<{ header: CacheHeader; pixelBytes: number } | undefined> {
  let handle: FileHandle;
  try {
    handle = await open(entry.file, 'r');
  } catch {
    return undefined;
  }
  try {
    const { size } = await handle.stat();
    if (size < TAIL_BYTES) return undefined;
    const tail = Buffer.alloc(TAIL_BYTES);
    await handle.read(tail, 0, TAIL_BYTES, size - TAIL_BYTES);
    if (tail.toString('latin1', 4) !== MAGIC) return undefined;
    const headerBytes = tail.readUInt32LE(0);
    const pixelBytes = size - TAIL_BYTES - headerBytes;
    if (pixelBytes < 0) return undefined;
    const json = Buffer.alloc(headerBytes);
    await handle.read(json, 0, headerBytes, pixelBytes);
    const header = JSON.parse(json.toString('utf8')) as CacheHeader;
    const bytesPerImage = header.imageSize * header.imageSize * 3;
    if (
      header.format !== CACHE_FORMAT ||
      header.key !== entry.key ||
      header.files.length * bytesPerImage !== pixelBytes
    ) {
      return undefined;
    }
    return { header, pixelBytes };
  } catch {
    return undefined;
  } finally {
    await handle.close();
  }
}

/** Reads the pixel part of a cache file whose header `readCacheHeader` accepted. */
export async function readCachePixels(entry: CacheEntry, pixelBytes: number): Promise<Uint8Array> {
  const handle = await open(entry.file, 'r');
  try {
    const pixels = new Uint8Array(pixelBytes);
    const { bytesRead } = await handle.read(pixels, 0, pixelBytes, 0);
    if (bytesRead !== pixelBytes) throw new Error(`cache file ${entry.file} was cut short while reading`);
    return pixels;
  } finally {
    await handle.close();
  }
}

/** Writes a cache file: pixels appended group by group, then the header; visible only once whole. */
export class CacheWriter {
  private constructor(
    private readonly entry: CacheEntry,
    private readonly temp: string,
    private readonly handle: FileHandle,
  ) {}

  static async create(entry: CacheEntry): Promise<CacheWriter> {
    await mkdir(path.dirname(entry.file), { recursive: true });
    const temp = `${entry.file}.${process.pid}-${Date.now()}.partial`;
    return new CacheWriter(entry, temp, await open(temp, 'w'));
  }

  async append(pixels: Uint8Array): Promise<void> {
    await this.handle.write(pixels);
  }

  /** Writes the header, renames into place and removes older entries of the same folder and options. */
  async finish(header: Omit<CacheHeader, 'format' | 'key'>): Promise<void> {
    const json = Buffer.from(JSON.stringify({ format: CACHE_FORMAT, key: this.entry.key, ...header }), 'utf8');
    const tail = Buffer.alloc(TAIL_BYTES);
    tail.writeUInt32LE(json.length, 0);
    tail.write(MAGIC, 4, 'latin1');
    await this.handle.write(Buffer.concat([json, tail]));
    await this.handle.close();
    await rename(this.temp, this.entry.file);
    const dir = path.dirname(this.entry.file);
    const name = path.basename(this.entry.file);
    for (const other of await readdir(dir)) {
      if (other !== name && other.startsWith(this.entry.family) && other.endsWith('.gdc')) {
        await rm(path.join(dir, other), { force: true });
      }
    }
  }

  /** Drops the partial file (decode failed, or the cache cannot be completed). */
  async abort(): Promise<void> {
    await this.handle.close().catch(() => {});
    await rm(this.temp, { force: true });
  }
}

/** Images per group when a set is too big for memory and is built straight into the cache file. */
const STREAM_GROUP = 1024;

export interface BuildPlan {
  /** Where to cache; undefined builds in memory only. */
  entry: CacheEntry | undefined;
  /** Images the build may produce at most, to decide memory or stream before building. */
  maxImages: number;
  imageSize: number;
  memoryBudgetBytes: number;
  log: DataLog;
}

/** Produces the images group by group (`groupSize` each, all at once when undefined), handing each to `sink`. */
export type Build = (
  sink: (pixels: Uint8Array) => Promise<void>,
  groupSize: number | undefined,
) => Promise<Omit<CacheHeader, 'format' | 'key'>>;

/**
 * The cached images when the entry is there and whole, else builds them, writing the cache as it
 * goes. Held in memory when they fit the budget, else streamed from the cache file.
 */
export async function loadOrBuild(
  plan: BuildPlan,
  build: Build,
): Promise<{ store: ImageStore; header: Omit<CacheHeader, 'format' | 'key'> }> {
  const { entry, log } = plan;
  const bytesPerImage = plan.imageSize * plan.imageSize * 3;
  if (entry) {
    const started = performance.now();
    const hit = await readCacheHeader(entry);
    if (hit) {
      const fits = hit.pixelBytes <= plan.memoryBudgetBytes;
      const store = fits
        ? new MemoryStore(await readCachePixels(entry, hit.pixelBytes), bytesPerImage)
        : new FileStore(entry.file, hit.header.files.length, bytesPerImage);
      const seconds = (performance.now() - started) / 1000;
      log({ event: 'data-cache-hit', level: 'info', file: entry.file, images: store.count, seconds });
      return { store, header: hit.header };
    }
    log({ event: 'data-cache-miss', level: 'info', file: entry.file });
  }

  const fits = plan.maxImages * bytesPerImage <= plan.memoryBudgetBytes;
  let writer: CacheWriter | undefined;
  const dropWriter = async (err: unknown): Promise<void> => {
    await writer?.abort();
    writer = undefined;
    if (!entry) return;
    log({
      event: 'data-cache-unwritable',
      level: 'warn',
      file: entry.file,
      reason: err instanceof Error ? err.message : String(err),
    });
    if (!fits) {
      throw new GanDistError(
        'GAN_DIST_E_DATA',
        `${plan.maxImages} images of ${plan.imageSize}x${plan.imageSize} need ${formatBytes(plan.maxImages * bytesPerImage)}, over the ${formatBytes(plan.memoryBudgetBytes)} memory budget, and the cache file ${entry.file} that would stream them cannot be written`,
        'set GAN_DIST_CACHE (or the cache-dir option) to a writable folder with room, or raise the memory budget',
      );
    }
  };
  if (entry) {
    writer = await CacheWriter.create(entry).catch(async (err: unknown) => {
      await dropWriter(err);
      return undefined;
    });
  }
  if (!entry && !fits) {
    throw new GanDistError(
      'GAN_DIST_E_DATA',
      `${plan.maxImages} images need ${formatBytes(plan.maxImages * bytesPerImage)}, over the ${formatBytes(plan.memoryBudgetBytes)} memory budget, with the cache turned off`,
      'turn the cache on so the images can be streamed from disk, or raise the memory budget',
    );
  }

  const chunks: Uint8Array[] = [];
  const sink = async (pixels: Uint8Array): Promise<void> => {
    if (fits) chunks.push(pixels);
    try {
      await writer?.append(pixels);
    } catch (err) {
      await dropWriter(err);
    }
  };
  let header: Omit<CacheHeader, 'format' | 'key'>;
  try {
    header = await build(sink, fits ? undefined : STREAM_GROUP);
  } catch (err) {
    await writer?.abort();
    throw err;
  }
  try {
    await writer?.finish(header);
  } catch (err) {
    await dropWriter(err);
  }
  const store = fits
    ? new MemoryStore(chunks.length === 1 ? chunks[0] : concat(chunks), bytesPerImage)
    : new FileStore(entry!.file, header.files.length, bytesPerImage);
  return { store, header };
}

function concat(chunks: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.length;
  }
  return out;
}
