// `gan-dist data fetch flowers`: downloads the flower_photos archive of the seed example over
// https, checks its size and SHA-256, and only then extracts it. The download resumes where an
// interrupted one stopped; the archive gets its name only once checked, and the folder only once
// fully extracted, so any interruption is mended by running the command again.

import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, mkdtemp, rename, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import * as tar from 'tar';
import { GanDistError } from '../protocol/errors.ts';
import { downloadTo } from './download.ts';
import { silentLog, type DataLog } from './events.ts';
import { datasetsDir, FLOWERS_FOLDER } from './locations.ts';

/** The archive the MATLAB example downloads, from the host that serves it over https. */
export const FLOWERS_URL = 'https://storage.googleapis.com/download.tensorflow.org/example_images/flower_photos.tgz';

/** flower_photos.tgz as TensorFlow Datasets pins it. */
export const FLOWERS_SHA256 = '4c54ace7911aaffe13a365c34f650e71dd5bf1be0a58b464e5a7183e3e595d9c';
export const FLOWERS_BYTES = 228_813_984;

/** The cap on an archive of unknown size (another --sha256): 1 GiB, over 4x flower_photos.tgz. */
export const MAX_ARCHIVE_BYTES = 1024 ** 3;

export interface FetchFlowersOptions {
  /** Folder to put flower_photos/ in; <cache root>/datasets by default. */
  dir?: string;
  cacheDir?: string;
  /** An https mirror; FLOWERS_URL by default. */
  url?: string;
  /** The SHA-256 the archive must have (64 hex digits); FLOWERS_SHA256 by default. */
  sha256?: string;
  /** Its exact size: FLOWERS_BYTES when `sha256` is FLOWERS_SHA256, else unknown unless given. */
  bytes?: number;
  /** The most a download of unknown size may bring; MAX_ARCHIVE_BYTES by default. */
  maxBytes?: number;
  /** Certificates to trust instead of Node's bundled CAs (a mirror behind its own CA; tests). */
  ca?: string | Buffer;
  /** A stalled download fails after this long without a byte (60 s by default). */
  idleTimeoutMs?: number;
  log?: DataLog;
}

export interface FetchResult {
  /** The extracted folder: pass it to --data. */
  dir: string;
  fetched: boolean;
  /** Size of the archive; 0 when nothing was fetched. */
  bytes: number;
}

interface Expected {
  sha256: string;
  bytes?: number;
}

export async function fetchFlowers(options: FetchFlowersOptions = {}): Promise<FetchResult> {
  const log = options.log ?? silentLog;
  const url = checkUrl(options.url ?? FLOWERS_URL);
  const expected = expectedArchive(options);
  const parent = path.resolve(options.dir ?? datasetsDir(options.cacheDir));
  const target = path.join(parent, FLOWERS_FOLDER);
  if (await isDirectory(target)) {
    log({ event: 'data-fetch-skipped', level: 'info', dir: target });
    return { dir: target, fetched: false, bytes: 0 };
  }
  await mkdir(parent, { recursive: true });
  const started = performance.now();
  const archive = path.join(parent, `${FLOWERS_FOLDER}.tgz`);
  // An archive already here was checked and renamed into place by a run whose extraction stopped;
  // it is checked again, as anything on disk may have changed since.
  const checked = await isFile(archive);
  const file = checked ? archive : `${archive}.partial`;
  if (!checked) {
    await downloadTo(url, file, {
      maxBytes: options.maxBytes ?? MAX_ARCHIVE_BYTES,
      expectedBytes: expected.bytes,
      idleTimeoutMs: options.idleTimeoutMs ?? 60_000,
      ca: options.ca,
      log,
    });
  }
  const bytes = await verify(file, path.basename(archive), expected, url, log);
  if (!checked) await rename(file, archive);
  try {
    await extract(archive, parent, target);
  } finally {
    // Extracted, or not extractable: either way a rerun is better served by a fresh download.
    await rm(archive, { force: true });
  }
  log({ event: 'data-fetched', level: 'info', dir: target, bytes, seconds: (performance.now() - started) / 1000 });
  return { dir: target, fetched: true, bytes };
}

function checkUrl(url: string): string {
  let protocol: string | undefined;
  try {
    protocol = new URL(url).protocol;
  } catch {}
  if (protocol !== 'https:') {
    throw new GanDistError(
      'GAN_DIST_E_CONFIG',
      `--url ${url}: must be an https:// address`,
      `the archive is fetched over https only; the seed's is at ${FLOWERS_URL}`,
    );
  }
  return url;
}

function expectedArchive(options: FetchFlowersOptions): Expected {
  const sha256 = (options.sha256 ?? FLOWERS_SHA256).toLowerCase();
  if (!/^[0-9a-f]{64}$/.test(sha256)) {
    throw new GanDistError(
      'GAN_DIST_E_CONFIG',
      `--sha256 ${options.sha256}: must be 64 hex digits (a SHA-256)`,
      `\`sha256sum flower_photos.tgz\` prints it; the seed's archive has ${FLOWERS_SHA256}`,
    );
  }
  return { sha256, bytes: options.bytes ?? (sha256 === FLOWERS_SHA256 ? FLOWERS_BYTES : undefined) };
}

/**
 * Checks `file` has the expected size and SHA-256; on a mismatch deletes it (resuming a wrong
 * file could never succeed) and throws, naming both. Returns the size.
 */
async function verify(file: string, name: string, expected: Expected, url: string, log: DataLog): Promise<number> {
  const started = performance.now();
  const { size } = await stat(file);
  const refuse = async (what: string): Promise<never> => {
    await rm(file, { force: true });
    throw new GanDistError(
      'GAN_DIST_E_NETWORK',
      `the archive downloaded from ${url} ${what}: refused and deleted; nothing was extracted`,
      'run the command again to download it afresh; if the mirror serves another version of the archive on purpose, pass its SHA-256 with --sha256',
    );
  };
  if (expected.bytes !== undefined && size !== expected.bytes) {
    await refuse(`is ${size} bytes, expected ${expected.bytes}`);
  }
  const hash = createHash('sha256');
  await pipeline(createReadStream(file), hash);
  const sha256 = hash.digest('hex');
  if (sha256 !== expected.sha256) await refuse(`has SHA-256 ${sha256}, expected ${expected.sha256}`);
  log({
    event: 'data-verified',
    level: 'info',
    file: name,
    bytes: size,
    sha256,
    seconds: (performance.now() - started) / 1000,
  });
  return size;
}

/** Extracts `archive` beside `target` and moves its flower_photos/ into place. */
async function extract(archive: string, parent: string, target: string): Promise<void> {
  const staging = await mkdtemp(path.join(parent, `.${FLOWERS_FOLDER}.extract-`));
  try {
    try {
      await tar.x({ file: archive, cwd: staging, strict: true });
    } catch (err) {
      throw new GanDistError(
        'GAN_DIST_E_DATA',
        `the archive ${archive} matches its SHA-256 but cannot be extracted: ${describe(err)}`,
        'check the --sha256: it must be that of flower_photos.tgz or of a mirror of it',
      );
    }
    const extracted = path.join(staging, FLOWERS_FOLDER);
    if (!(await isDirectory(extracted))) {
      throw new GanDistError(
        'GAN_DIST_E_DATA',
        `the archive ${archive} holds no ${FLOWERS_FOLDER}/ folder`,
        'check the --url and --sha256; the archive must hold flower_photos/<class>/<image>',
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
  return err instanceof Error ? err.message : String(err);
}
