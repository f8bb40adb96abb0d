// The image pipeline of the coordinator: list, decode, resize, cache, shuffle, flip, batch.
//
// API (everything the trainer needs is here):
//
//   const dataset = await openDataset({
//     data: 'synthetic' | 'flowers' | '/path/to/folder',
//     imageSize: 64,            // output height = width; 32 for the tiny preset
//     resize: 'stretch',        // default, as MATLAB's augmentedImageDatastore: aspect ratio NOT kept;
//                               // 'cover' scales the short side and crops the centre
//     count,                    // synthetic: pictures to draw (2048 by default); folder: use at most
//                               // the first `count` files in listing order
//     seed: 0,                  // draws the synthetic set (folders ignore it)
//     threads,                  // decode threads: 0 = main thread with sharp's own threads (default,
//                               // the faster here, see bench/data.ts), N = a piscina pool of N
//     cacheDir,                 // cache root: option > $GAN_DIST_CACHE > $XDG_CACHE_HOME/gan-dist > ~/.cache/gan-dist
//     cache: true,              // false: decode every time, write nothing
//     memoryBudgetBytes,        // images beyond this are streamed from the cache file (1 GiB default)
//     maxInputPixels,           // decompression-bomb guard: larger images are skipped (100 MP default)
//     maxFileBytes,             // image files larger than this are skipped unread (64 MiB default)
//     miniBatchSize,            // when given, fewer usable images than one batch is an error now
//     log: (event) => {},       // structured DataEvent objects (data/events.ts); by default
//                               // stderrLog(): a progress bar on a TTY, plain lines otherwise
//   });
//   dataset.size, dataset.imageSize, dataset.labels[i], dataset.classes, dataset.files[i],
//   dataset.skipped            // { files: [{ rel, kind, reason }], byKind, ignored }
//   dataset.image(i)           // Uint8Array, imageSize*imageSize*3, HWC RGB
//   const it = dataset.createBatchIterator({ batchSize: 128, seed, state? });
//   const batch = it.next();   // { images: Uint8Array (B*H*W*3, HWC per image), batchSize, imageSize,
//                              //   epoch (from 1), iteration (within the epoch, from 1),
//                              //   iterationsPerEpoch, indices, flipped }
//   const saved = it.state();  // JSON-serialisable; createBatchIterator({ ..., state: saved })
//                              // continues with exactly the batches `it` would have drawn
//   dataset.close();
//
// Folders: every file sharp decodes (JPEG, PNG, GIF first frame, WebP, TIFF, AVIF, SVG),
// recognised by extension (any case) or content, under the folder and its subfolders, in
// code-point order of their paths; the label is the folder holding the file. EXIF orientation is
// applied, transparency composited on white, grayscale and CMYK converted to sRGB. A file that
// cannot be used is skipped with a `data-skip` warning naming it and why. 'flowers' is the folder
// `gan-dist data fetch flowers` writes (<cache root>/datasets/flower_photos).
//
// Batches: a seeded shuffle per epoch (epoch e's order depends only on seed and e), each image
// mirrored left-right with p = 0.5 when its batch is drawn, the partial last batch dropped.
//
// Errors are GanDistError with code GAN_DIST_E_DATA (GAN_DIST_E_NETWORK for downloads).

import { GanDistError } from '../protocol/errors.ts';
import { cacheEntry, loadOrBuild, pathTag, type BuildPlan } from './cache.ts';
import { Dataset } from './dataset.ts';
import { DEFAULT_MAX_FILE_BYTES, DEFAULT_MAX_INPUT_PIXELS, type ResizeMode } from './decode/decode.ts';
import { decodeListed, DEFAULT_THREADS, validateThreads } from './decode/decoder.ts';
import type { DataLog } from './events.ts';
import { listImages } from './listing.ts';
import { decodedCacheDir, resolveDataFolder } from './locations.ts';
import { ProgressTracker, stderrLog } from './progress.ts';
import { describeSkips, summariseSkips } from './skips.ts';
import { DEFAULT_SYNTHETIC_COUNT, drawSyntheticSet, SYNTHETIC_VERSION } from './synthetic/synthetic.ts';

export interface OpenDatasetOptions {
  data: string;
  imageSize: number;
  resize?: ResizeMode;
  count?: number;
  seed: number;
  threads?: number;
  cacheDir?: string;
  cache?: boolean;
  memoryBudgetBytes?: number;
  maxInputPixels?: number;
  maxFileBytes?: number;
  miniBatchSize?: number;
  log?: DataLog;
}

export const DEFAULT_MEMORY_BUDGET_BYTES = 1024 ** 3;

export async function openDataset(options: OpenDatasetOptions): Promise<Dataset> {
  const { imageSize, seed } = options;
  if (!Number.isInteger(imageSize) || imageSize < 4 || imageSize > 1024) {
    throw new RangeError('options.imageSize must be an integer in [4, 1024]');
  }
  if (!Number.isSafeInteger(seed) || seed < 0) throw new RangeError('options.seed must be a non-negative integer');
  if (options.count !== undefined && (!Number.isInteger(options.count) || options.count < 1)) {
    throw new RangeError('options.count must be a positive integer');
  }
  const resize = options.resize ?? 'stretch';
  if (resize !== 'stretch' && resize !== 'cover') throw new RangeError("options.resize must be 'stretch' or 'cover'");
  const threads = options.threads ?? DEFAULT_THREADS;
  validateThreads(threads);
  const log = options.log ?? stderrLog();
  const plan: Plan = {
    imageSize,
    memoryBudgetBytes: options.memoryBudgetBytes ?? DEFAULT_MEMORY_BUDGET_BYTES,
    log,
  };
  const cacheDir = options.cache === false ? undefined : decodedCacheDir(options.cacheDir);
  const dataset =
    options.data === 'synthetic'
      ? await openSynthetic(options, plan, cacheDir)
      : await openFolder({ ...options, resize, threads }, plan, cacheDir);

  if (options.miniBatchSize !== undefined && dataset.size < options.miniBatchSize) {
    dataset.close();
    throw new GanDistError(
      'GAN_DIST_E_DATA',
      `${dataset.source} has ${dataset.size} usable images (${describeSkips(dataset.skipped)}), fewer than one mini-batch of ${options.miniBatchSize}`,
      'add images, lower --batch-size, or use --data synthetic',
    );
  }
  log({
    event: 'data-ready',
    level: 'info',
    source: dataset.source,
    images: dataset.size,
    imageSize,
    storage: dataset.storage,
    bytes: dataset.size * dataset.bytesPerImage,
  });
  return dataset;
}

type Plan = Omit<BuildPlan, 'entry' | 'maxImages'>;

async function openSynthetic(options: OpenDatasetOptions, plan: Plan, cacheDir: string | undefined): Promise<Dataset> {
  const { imageSize, seed } = options;
  const count = options.count ?? DEFAULT_SYNTHETIC_COUNT;
  const entry = cacheDir
    ? cacheEntry(cacheDir, `synthetic-s${seed}-${imageSize}`, { synthetic: SYNTHETIC_VERSION, seed, count, imageSize })
    : undefined;
  const { store, header } = await loadOrBuild({ ...plan, entry, maxImages: count }, async (sink, groupSize) => {
    const started = performance.now();
    const progress = new ProgressTracker(plan.log, 'draw', 'images', count);
    const step = groupSize ?? 64;
    for (let from = 0; from < count; from += step) {
      await sink(drawSyntheticSet(Math.min(step, count - from), { imageSize, seed }, from));
      progress.update(Math.min(count, from + step));
    }
    plan.log({
      event: 'data-synthetic',
      level: 'info',
      images: count,
      imageSize,
      seconds: (performance.now() - started) / 1000,
    });
    const files = Array.from({ length: count }, (_, i) => `synthetic/${String(i).padStart(6, '0')}`);
    return { imageSize, files, labels: files.map(() => 'synthetic'), failures: [] };
  });
  return new Dataset(store, {
    source: 'synthetic',
    imageSize,
    files: header.files,
    labels: header.labels,
    skipped: summariseSkips([], 0),
  });
}

async function openFolder(
  options: OpenDatasetOptions & { resize: ResizeMode; threads: number },
  plan: Plan,
  cacheDir: string | undefined,
): Promise<Dataset> {
  const { imageSize, resize, threads } = options;
  const log = plan.log;
  const listing = await listImages(resolveDataFolder(options.data, options.cacheDir));
  const candidates = options.count === undefined ? listing.files : listing.files.slice(0, options.count);
  log({
    event: 'data-listed',
    level: 'info',
    root: listing.root,
    candidates: candidates.length,
    skipped: listing.skipped.length,
    ignored: listing.ignored,
  });
  const decodeOptions = {
    imageSize,
    resize,
    maxInputPixels: options.maxInputPixels ?? DEFAULT_MAX_INPUT_PIXELS,
    maxFileBytes: options.maxFileBytes ?? DEFAULT_MAX_FILE_BYTES,
  };
  // Keyed by every file's path, size and mtime and by the decode options: any change rebuilds.
  const entry = cacheDir
    ? cacheEntry(cacheDir, `${pathTag(listing.root)}-${imageSize}-${resize}`, {
        root: listing.root,
        decodeOptions,
        files: candidates.map((f) => [f.rel, f.size, f.mtimeMs]),
      })
    : undefined;
  const { store, header } = await loadOrBuild(
    { ...plan, entry, maxImages: candidates.length },
    async (sink, groupSize) => {
      const { decoded, failures } = await decodeListed(
        candidates,
        { ...decodeOptions, threads, groupSize },
        log,
        (group) => sink(group.pixels),
      );
      return { imageSize, files: decoded.map((f) => f.rel), labels: decoded.map((f) => f.label), failures };
    },
  );
  const skipped = summariseSkips([...listing.skipped, ...header.failures], listing.ignored);
  for (const s of skipped.files)
    log({ event: 'data-skip', level: 'warn', file: s.rel, kind: s.kind, reason: s.reason });
  const dataset = new Dataset(store, {
    source: listing.root,
    imageSize,
    files: header.files,
    labels: header.labels,
    skipped,
  });
  if (dataset.size === 0) {
    dataset.close();
    throw new GanDistError(
      'GAN_DIST_E_DATA',
      `no decodable image in ${listing.root}: ${candidates.length + listing.skipped.length} image files found, ${describeSkips(skipped)}; ${listing.ignored} other files ignored`,
      'point --data at a folder of JPEG, PNG, WebP, GIF or TIFF images (subfolders are searched), or use --data synthetic',
    );
  }
  return dataset;
}

export { Dataset } from './dataset.ts';
export type { Batch, BatchIterator, BatchIteratorOptions, IteratorState } from './batches.ts';
export type { DataEvent, DataLog } from './events.ts';
export type { SkippedFile, SkippedSummary, SkipKind } from './skips.ts';
export type { ResizeMode } from './decode/decode.ts';
export { stderrLog } from './progress.ts';
export { silentLog } from './events.ts';
export { cacheRoot, flowersDir } from './locations.ts';
