// Decodes a list of files into contiguous HWC RGB buffers, in a piscina pool of worker threads or
// on the main thread with sharp's own threads, group by group, reporting progress as it goes.

import { availableParallelism } from 'node:os';
import { createRequire } from 'node:module';
import { pathToFileURL } from 'node:url';
import { Piscina } from 'piscina';
import sharp from 'sharp';
import { decodeInto, type DecodeOptions } from './decode.ts';
import type { DataLog } from '../events.ts';
import type { ListedFile } from '../listing.ts';
import { ProgressTracker } from '../progress.ts';
import type { Skip, SkippedFile } from '../skips.ts';

/** The message sent to a pool worker; declared once, here, for both sides. */
export interface DecodeTask {
  files: string[];
  /** Output slot of each file in `shared`, in images. */
  slots: number[];
  shared: SharedArrayBuffer;
  options: DecodeOptions;
}

export interface DecodeRunOptions extends DecodeOptions {
  /** Worker threads in the pool; 0 decodes on the main thread (sharp still uses its own threads). */
  threads: number;
  /** Images per group handed to `onGroup` (all by default): bounds memory when writing to disk. */
  groupSize?: number;
  onProgress?: (done: number, total: number) => void;
}

/** Decoded images of one group, in input order, skipped ones left out. */
export interface DecodedGroup {
  /** HWC RGB images back to back. */
  pixels: Uint8Array;
  /** For each image in `pixels`, its index in the whole input list. */
  decoded: number[];
}

export interface DecodeSummary {
  decoded: number[];
  failures: { index: number; skip: Skip }[];
}

/**
 * Main thread by default: `npx tsx bench/data.ts` on the 2-core machine (300 flower photos to
 * 64x64, 5 cold passes) measured 154 images/s on the main thread against 111 images/s (0.72x) for
 * a pool of 2, whose workers each pay for loading tsx and sharp and whose sharp calls share the
 * same libuv threads anyway.
 */
export const DEFAULT_THREADS = 0;

/** Files per pool task: small enough for even load and steady progress, big enough to amortise messages. */
const CHUNK = 8;

// tsx's loader, resolved from this package so workers load TypeScript whatever the cwd is.
const TSX_LOADER = pathToFileURL(createRequire(import.meta.url).resolve('tsx')).href;

/**
 * libvips threads per image. sharp runs each image on one of libuv's threads (4 unless
 * UV_THREADPOOL_SIZE says otherwise, shared by worker threads too), so that many images decode at
 * once; giving each cores / that many threads fills the cores without oversubscribing them.
 */
function threadsPerImage(): number {
  const uvThreads = Number(process.env.UV_THREADPOOL_SIZE) || 4;
  return Math.max(1, Math.round(availableParallelism() / uvThreads));
}

export function validateThreads(threads: number): void {
  if (!Number.isInteger(threads) || threads < 0) {
    throw new RangeError('options.threads must be a non-negative integer (0 decodes on the main thread)');
  }
}

type Skips = (Skip | undefined)[];
/** Decodes files[i] into slot slots[i] of `shared`; resolves with one entry per file. */
type DecodeBatch = (
  files: string[],
  slots: number[],
  shared: SharedArrayBuffer,
  report: (n: number) => void,
) => Promise<Skips>;

export async function decodeFiles(
  files: string[],
  options: DecodeRunOptions,
  onGroup: (group: DecodedGroup) => void | Promise<void>,
): Promise<DecodeSummary> {
  validateThreads(options.threads);
  const { imageSize, resize, maxInputPixels, maxFileBytes } = options;
  const decodeOptions: DecodeOptions = { imageSize, resize, maxInputPixels, maxFileBytes };
  const bytesPerImage = imageSize * imageSize * 3;
  const groupSize = Math.max(1, Math.min(options.groupSize ?? files.length, files.length));
  const summary: DecodeSummary = { decoded: [], failures: [] };
  let done = 0;
  const report = (n: number): void => {
    done += n;
    options.onProgress?.(done, files.length);
  };

  const previousConcurrency = sharp.concurrency();
  sharp.concurrency(threadsPerImage());
  const pool = options.threads > 0 ? startPool(options.threads) : undefined;
  const decodeBatch = pool ? poolDecoder(pool, decodeOptions) : mainThreadDecoder(decodeOptions);
  try {
    for (let start = 0; start < files.length; start += groupSize) {
      const count = Math.min(groupSize, files.length - start);
      const shared = new SharedArrayBuffer(count * bytesPerImage);
      const slots = Array.from({ length: count }, (_, k) => k);
      const skips = await decodeBatch(files.slice(start, start + count), slots, shared, report);

      // Compact: decoded image k moves to slot k (k <= its slot, so nothing is overwritten early).
      const all = new Uint8Array(shared);
      const group: DecodedGroup = { pixels: all, decoded: [] };
      skips.forEach((skip, k) => {
        if (skip) {
          summary.failures.push({ index: start + k, skip });
          return;
        }
        const to = group.decoded.length;
        if (to !== k) all.copyWithin(to * bytesPerImage, k * bytesPerImage, (k + 1) * bytesPerImage);
        group.decoded.push(start + k);
      });
      // An ordinary buffer of the exact size: shared memory is not needed past this point.
      group.pixels = all.slice(0, group.decoded.length * bytesPerImage);
      summary.decoded.push(...group.decoded);
      await onGroup(group);
    }
  } finally {
    await pool?.destroy();
    sharp.concurrency(previousConcurrency);
  }
  return summary;
}

function mainThreadDecoder(options: DecodeOptions): DecodeBatch {
  const bytesPerImage = options.imageSize * options.imageSize * 3;
  // Enough requests in flight to keep libuv's threadpool (4 threads by default) busy.
  const lanes = Math.max(4, availableParallelism());
  return async (files, slots, shared, report) => {
    const out = new Uint8Array(shared);
    const skips: Skips = new Array(files.length);
    let next = 0;
    const lane = async (): Promise<void> => {
      while (next < files.length) {
        const i = next++;
        const slot = slots[i];
        skips[i] = await decodeInto(files[i], options, out.subarray(slot * bytesPerImage, (slot + 1) * bytesPerImage));
        report(1);
      }
    };
    await Promise.all(Array.from({ length: Math.min(lanes, files.length) }, lane));
    return skips;
  };
}

function startPool(threads: number): Piscina<DecodeTask, Skips> {
  return new Piscina<DecodeTask, Skips>({
    filename: new URL('./decode-worker.ts', import.meta.url).href,
    execArgv: ['--import', TSX_LOADER],
    minThreads: threads,
    maxThreads: threads,
  });
}

function poolDecoder(pool: Piscina<DecodeTask, Skips>, options: DecodeOptions): DecodeBatch {
  return async (files, slots, shared, report) => {
    const skips: Skips = new Array(files.length);
    const tasks: Promise<void>[] = [];
    for (let start = 0; start < files.length; start += CHUNK) {
      const end = Math.min(start + CHUNK, files.length);
      const task: DecodeTask = { files: files.slice(start, end), slots: slots.slice(start, end), shared, options };
      tasks.push(
        pool.run(task).then((chunk) => {
          for (const [k, skip] of chunk.entries()) skips[start + k] = skip;
          report(chunk.length);
        }),
      );
    }
    await Promise.all(tasks);
    return skips;
  };
}

export interface ListedDecodeSummary {
  /** The files that decoded, in listing order. */
  decoded: ListedFile[];
  failures: SkippedFile[];
  seconds: number;
}

/** `decodeFiles` over listed files, reporting progress and a `data-decoded` summary to `log`. */
export async function decodeListed(
  files: ListedFile[],
  options: Omit<DecodeRunOptions, 'onProgress'>,
  log: DataLog,
  onGroup: (group: DecodedGroup) => void | Promise<void>,
): Promise<ListedDecodeSummary> {
  const started = performance.now();
  const progress = new ProgressTracker(log, 'decode', 'images', files.length);
  const onProgress = (done: number, total: number): void => progress.update(done, total);
  const summary = await decodeFiles(
    files.map((f) => f.path),
    { ...options, onProgress },
    onGroup,
  );
  const seconds = (performance.now() - started) / 1000;
  log({
    event: 'data-decoded',
    level: 'info',
    images: summary.decoded.length,
    skipped: summary.failures.length,
    seconds,
    imagesPerSecond: files.length / Math.max(seconds, 1e-9),
    threads: options.threads,
  });
  return {
    decoded: summary.decoded.map((i) => files[i]),
    failures: summary.failures.map(({ index, skip }) => ({ rel: files[index].rel, ...skip })),
    seconds,
  };
}
