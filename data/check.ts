// `gan-dist data check DIR`: what a folder holds for training — images per class, every skipped
// file with its reason, and how fast it decodes — without writing the cache.

import { decodeListed, DEFAULT_THREADS } from './decode/decoder.ts';
import { DEFAULT_MAX_FILE_BYTES, DEFAULT_MAX_INPUT_PIXELS, type ResizeMode } from './decode/decode.ts';
import { silentLog, type DataLog } from './events.ts';
import { listImages } from './listing.ts';
import { resolveDataFolder } from './locations.ts';
import { summariseSkips, type SkippedSummary } from './skips.ts';

export interface CheckOptions {
  cacheDir?: string;
  imageSize?: number;
  resize?: ResizeMode;
  threads?: number;
  maxInputPixels?: number;
  maxFileBytes?: number;
  log?: DataLog;
}

export interface CheckReport {
  root: string;
  /** Usable images. */
  images: number;
  /** Usable images per label, labels sorted. */
  classes: Record<string, number>;
  skipped: SkippedSummary;
  decode: { imageSize: number; threads: number; seconds: number; imagesPerSecond: number };
}

/** Images decoded per group: the pixels are thrown away, so memory stays small for any folder. */
const GROUP = 256;

/** `dir` is a folder, or 'flowers' for the fetched flower_photos. */
export async function checkData(dir: string, options: CheckOptions = {}): Promise<CheckReport> {
  const imageSize = options.imageSize ?? 64;
  const threads = options.threads ?? DEFAULT_THREADS;
  const listing = await listImages(resolveDataFolder(dir, options.cacheDir));
  const decodeOptions = {
    imageSize,
    resize: options.resize ?? 'stretch',
    maxInputPixels: options.maxInputPixels ?? DEFAULT_MAX_INPUT_PIXELS,
    maxFileBytes: options.maxFileBytes ?? DEFAULT_MAX_FILE_BYTES,
    threads,
    groupSize: GROUP,
  };
  // The pixels are thrown away group by group.
  const { decoded, failures, seconds } = await decodeListed(
    listing.files,
    decodeOptions,
    options.log ?? silentLog,
    () => {},
  );
  const classes: Record<string, number> = {};
  for (const label of decoded.map((f) => f.label).sort()) classes[label] = (classes[label] ?? 0) + 1;
  return {
    root: listing.root,
    images: decoded.length,
    classes,
    skipped: summariseSkips([...listing.skipped, ...failures], listing.ignored),
    decode: { imageSize, threads, seconds, imagesPerSecond: listing.files.length / Math.max(seconds, 1e-9) },
  };
}

/** The report for people: counts per class, each skipped file with its reason, throughput. */
export function formatCheckReport(report: CheckReport): string {
  const classes = Object.entries(report.classes)
    .map(([label, n]) => `${label} ${n}`)
    .join(', ');
  const { files, ignored } = report.skipped;
  const { imageSize, threads, seconds, imagesPerSecond } = report.decode;
  return [
    `${report.root}: ${report.images} images in ${Object.keys(report.classes).length} classes (${classes})`,
    `skipped ${files.length}${files.length ? ':' : ''}`,
    ...files.map((f) => `  ${f.rel}: ${f.reason}`),
    `ignored ${ignored} files that are not images`,
    `decode: ${Math.round(imagesPerSecond)} images/s to ${imageSize}x${imageSize} (${seconds.toFixed(1)} s, ${threads === 0 ? 'main thread' : `${threads} threads`})`,
  ].join('\n');
}
