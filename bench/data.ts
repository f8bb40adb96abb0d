// Benchmark of the image pipeline: cold decode + resize throughput on the main thread (sharp's own
// threads, the baseline) against a piscina pool, and the cached start against the cold one.
// Run: npx tsx bench/data.ts [dir]   (default ../shared/data/flowers, 5 passes)

import { mkdtemp, rm } from 'node:fs/promises';
import { availableParallelism, cpus, tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import sharp from 'sharp';
import { decodeFiles } from '../data/decode/decoder.ts';
import { DEFAULT_MAX_INPUT_PIXELS } from '../data/decode/decode.ts';
import { silentLog } from '../data/events.ts';
import { openDataset } from '../data/index.ts';
import { listImages } from '../data/listing.ts';

export interface DataBenchOptions {
  dir: string;
  passes?: number;
  imageSize?: number;
  /** Pool size to compare with the main thread; the core count by default. */
  poolThreads?: number;
}

export interface DataBenchResult {
  dir: string;
  images: number;
  passes: number;
  imageSize: number;
  machine: string;
  /** Decode + resize throughput, images/s over all passes; each pass is one cold decode of the folder. */
  mainThread: number;
  pool: number;
  poolThreads: number;
  /** openDataset with an empty cache (list, decode, write cache) and with a filled one, seconds. */
  coldStart: number;
  cachedStart: number;
}

export async function benchData(options: DataBenchOptions): Promise<DataBenchResult> {
  const passes = options.passes ?? 5;
  const imageSize = options.imageSize ?? 64;
  const poolThreads = options.poolThreads ?? availableParallelism();
  const files = (await listImages(options.dir)).files.map((f) => f.path);
  const decodeOptions = { imageSize, resize: 'stretch' as const, maxInputPixels: DEFAULT_MAX_INPUT_PIXELS };
  const timeDecode = async (threads: number): Promise<number> => {
    const started = performance.now();
    await decodeFiles(files, { ...decodeOptions, threads }, () => {});
    return (performance.now() - started) / 1000;
  };
  // Warm the OS file cache and the JIT, so pass 1 measures decoding, not the disk.
  await timeDecode(0);
  // Interleaved, so a change in machine load touches both alike.
  let mainSeconds = 0;
  let poolSeconds = 0;
  for (let pass = 0; pass < passes; pass++) {
    mainSeconds += await timeDecode(0);
    poolSeconds += await timeDecode(poolThreads);
  }

  const cacheDir = await mkdtemp(path.join(tmpdir(), 'gan-dist-bench-'));
  try {
    const timeOpen = async (): Promise<number> => {
      const started = performance.now();
      (await openDataset({ data: options.dir, imageSize, seed: 0, cacheDir, log: silentLog })).close();
      return (performance.now() - started) / 1000;
    };
    const coldStart = await timeOpen();
    const cached = [await timeOpen(), await timeOpen(), await timeOpen()].sort((a, b) => a - b);
    return {
      dir: options.dir,
      images: files.length,
      passes,
      imageSize,
      machine: `${cpus().length} x ${cpus()[0]?.model ?? 'cpu'}, node ${process.version}, sharp ${sharp.versions.sharp} (libvips ${sharp.versions.vips})`,
      mainThread: (files.length * passes) / mainSeconds,
      pool: (files.length * passes) / poolSeconds,
      poolThreads,
      coldStart,
      cachedStart: cached[1],
    };
  } finally {
    await rm(cacheDir, { recursive: true, force: true });
  }
}

export function formatDataBench(r: DataBenchResult): string {
  const ratio = (x: number, base: number): string => `${(x / base).toFixed(2)}x`;
  return [
    `data bench: ${r.images} images of ${r.dir}, ${r.passes} passes, to ${r.imageSize}x${r.imageSize}`,
    `machine: ${r.machine}`,
    `decode+resize, main thread (baseline):  ${r.mainThread.toFixed(0)} images/s  1.00x`,
    `decode+resize, piscina pool of ${r.poolThreads}:     ${r.pool.toFixed(0)} images/s  ${ratio(r.pool, r.mainThread)}`,
    `cold start (list + decode + write cache): ${(r.coldStart * 1000).toFixed(0)} ms  1.00x`,
    `cached start (list + read cache):         ${(r.cachedStart * 1000).toFixed(0)} ms  ${ratio(r.coldStart, r.cachedStart)} faster (target >= 20x)`,
  ].join('\n');
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
  const dir = process.argv[2] ?? path.resolve(repoRoot, '../shared/data/flowers');
  console.log(formatDataBench(await benchData({ dir })));
}
