// `gan-dist data fetch flowers`: downloads the flower_photos archive of the seed example and
// extracts it. Each step is all-or-nothing: the archive is renamed into place only when whole, and
// the folder only once fully extracted, so an interrupted fetch is simply run again.

import { createWriteStream } from 'node:fs';
import { mkdir, mkdtemp, rename, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import { Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import * as tar from 'tar';
import { GanDistError } from '../protocol/errors.ts';
import { silentLog, type DataLog } from './events.ts';
import { datasetsDir, FLOWERS_FOLDER } from './locations.ts';
import { ProgressTracker } from './progress.ts';

/** The archive the MATLAB example downloads (218 MB). */
export const FLOWERS_URL = 'http://download.tensorflow.org/example_images/flower_photos.tgz';

export interface FetchFlowersOptions {
  /** Folder to put flower_photos/ in; <cache root>/datasets by default. */
  dir?: string;
  cacheDir?: string;
  url?: string;
  /** A stalled download fails after this long without a byte (60 s by default). */
  idleTimeoutMs?: number;
  log?: DataLog;
}

export interface FetchResult {
  /** The extracted folder: pass it to --data. */
  dir: string;
  fetched: boolean;
  bytes: number;
}

export async function fetchFlowers(options: FetchFlowersOptions = {}): Promise<FetchResult> {
  const log = options.log ?? silentLog;
  const parent = path.resolve(options.dir ?? datasetsDir(options.cacheDir));
  const target = path.join(parent, FLOWERS_FOLDER);
  if (await isDirectory(target)) {
    log({ event: 'data-fetch-skipped', level: 'info', dir: target });
    return { dir: target, fetched: false, bytes: 0 };
  }
  await mkdir(parent, { recursive: true });
  const started = performance.now();
  const archive = path.join(parent, `${FLOWERS_FOLDER}.tgz`);
  // An archive already here was renamed into place whole by an earlier run whose extraction stopped.
  const bytes = (await isFile(archive))
    ? (await stat(archive)).size
    : await download(options.url ?? FLOWERS_URL, archive, options.idleTimeoutMs ?? 60_000, log);
  try {
    await extract(archive, parent, target);
  } finally {
    // Extracted, or not extractable: either way a rerun is better served by a fresh download.
    await rm(archive, { force: true });
  }
  log({ event: 'data-fetched', level: 'info', dir: target, bytes, seconds: (performance.now() - started) / 1000 });
  return { dir: target, fetched: true, bytes };
}

/** Downloads `url` to `file` through a temporary name; returns the byte count. */
export async function download(url: string, file: string, idleTimeoutMs: number, log: DataLog): Promise<number> {
  const temp = `${file}.${process.pid}.partial`;
  const abort = new AbortController();
  let idle: NodeJS.Timeout | undefined;
  const stillAlive = (): void => {
    clearTimeout(idle);
    idle = setTimeout(() => abort.abort(new Error(`no data for ${idleTimeoutMs / 1000} s`)), idleTimeoutMs);
  };
  const failed = (why: string): GanDistError =>
    new GanDistError(
      'GAN_DIST_E_NETWORK',
      `download of ${url} failed: ${why}`,
      `check the connection and run the command again, or download the file by hand and extract it into ${path.dirname(file)}`,
    );
  try {
    stillAlive();
    const response = await fetch(url, { redirect: 'follow', signal: abort.signal }).catch((err: unknown) => {
      throw failed(describe(err));
    });
    if (!response.ok || !response.body) {
      await response.body?.cancel().catch(() => {});
      throw failed(`HTTP ${response.status} ${response.statusText}`.trim());
    }
    const expected = Number(response.headers.get('content-length') ?? 0);
    const progress = new ProgressTracker(log, 'download', 'bytes', expected);
    let received = 0;
    const counter = new Transform({
      transform(chunk: Buffer, _encoding, done) {
        received += chunk.length;
        stillAlive();
        progress.update(received);
        done(null, chunk);
      },
    });
    try {
      await pipeline(
        Readable.fromWeb(response.body as import('node:stream/web').ReadableStream),
        counter,
        createWriteStream(temp),
      );
    } catch (err) {
      throw failed(`${describe(err)} after ${received} bytes`);
    }
    if (expected > 0 && received !== expected) throw failed(`got ${received} of ${expected} bytes`);
    progress.update(received, received);
    await rename(temp, file);
    return received;
  } catch (err) {
    await rm(temp, { force: true });
    throw err;
  } finally {
    clearTimeout(idle);
  }
}

/** Extracts `archive` beside `target` and moves its flower_photos/ into place. */
async function extract(archive: string, parent: string, target: string): Promise<void> {
  const staging = await mkdtemp(path.join(parent, `.${FLOWERS_FOLDER}.extract-`));
  try {
    try {
      await tar.x({ file: archive, cwd: staging, strict: true });
    } catch (err) {
      throw new GanDistError(
        'GAN_DIST_E_NETWORK',
        `the downloaded archive ${archive} cannot be extracted: ${describe(err)}`,
        'run the command again to download it afresh',
      );
    }
    const extracted = path.join(staging, FLOWERS_FOLDER);
    if (!(await isDirectory(extracted))) {
      throw new GanDistError(
        'GAN_DIST_E_DATA',
        `the archive ${archive} holds no ${FLOWERS_FOLDER}/ folder`,
        'check the --url; the archive must hold flower_photos/<class>/<image>',
      );
    }
    await rename(extracted, target);
  } finally {
    await rm(staging, { recursive: true, force: true });
  }
}

async function isDirectory(p: string): Promise<boolean> {
  return (await stat(p).catch(() => undefined))?.isDirectory() ?? false;
}

async function isFile(p: string): Promise<boolean> {
  return (await stat(p).catch(() => undefined))?.isFile() ?? false;
}

function describe(err: unknown): string {
  if (!(err instanceof Error)) return String(err);
  const cause = (err as { cause?: unknown }).cause;
  return cause instanceof Error ? `${err.message} (${cause.message})` : err.message;
}
