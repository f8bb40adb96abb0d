// Lists the images under a folder and its subfolders in a deterministic order, each with its
// folder name as label, following symlinks without looping or counting a file twice.

import { open, readdir, realpath, stat } from 'node:fs/promises';
import path from 'node:path';
import { GanDistError } from '../protocol/errors.ts';
import { isImageExtension, SNIFF_BYTES, sniffFormat, unsupportedFormatOf } from './decode/formats.ts';
import type { Skip, SkippedFile } from './skips.ts';

export interface ListedFile {
  /** Absolute path as reached from the root (symlinks not resolved). */
  path: string;
  /** Path relative to the root, '/'-separated: the order key and the name shown to users. */
  rel: string;
  /** The name of the folder holding the file (MATLAB's LabelSource 'foldernames'). */
  label: string;
  size: number;
  mtimeMs: number;
}

export interface Listing {
  root: string;
  files: ListedFile[];
  /** Files that looked like images (by extension) but cannot be used. */
  skipped: SkippedFile[];
  /** Files that are plainly not images (LICENSE.txt, .DS_Store): left out silently. */
  ignored: number;
}

/** Folders never entered: version control, our own cache, macOS archive debris. */
function isSkippedFolder(name: string): boolean {
  return name.startsWith('.') || name === '__MACOSX';
}

/** Code-point order, not localeCompare: the same on every machine whatever its locale. */
export const byCodePoint = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0);

/**
 * Walks `root` depth first, entries sorted by name. Folders are identified by their real path
 * and files by (device, inode), so a symlink to a parent folder, or a second link to a file,
 * adds nothing.
 */
export async function listImages(root: string): Promise<Listing> {
  const absRoot = path.resolve(root);
  const rootStat = await stat(absRoot).catch(() => undefined);
  if (!rootStat?.isDirectory()) {
    throw new GanDistError(
      'GAN_DIST_E_DATA',
      `data folder ${absRoot} ${rootStat ? 'is not a folder' : 'does not exist'}`,
      'pass --data with a folder of images (subfolders allowed), or --data synthetic',
    );
  }
  const listing: Listing = { root: absRoot, files: [], skipped: [], ignored: 0 };
  const seenFolders = new Set<string>();
  const seenFiles = new Set<string>();

  const walk = async (dir: string, rel: string): Promise<void> => {
    const real = await realpath(dir);
    if (seenFolders.has(real)) return;
    seenFolders.add(real);
    const names = (await readdir(dir)).sort(byCodePoint);
    for (const name of names) {
      const full = path.join(dir, name);
      const relName = rel ? `${rel}/${name}` : name;
      // stat follows symlinks; a dangling link is reported, not fatal.
      const st = await stat(full).catch((err: NodeJS.ErrnoException) => err);
      if (st instanceof Error) {
        listing.skipped.push({ rel: relName, kind: 'unreadable', reason: `cannot be read (${st.code ?? st.message})` });
        continue;
      }
      if (st.isDirectory()) {
        if (!isSkippedFolder(name)) await walk(full, relName);
        continue;
      }
      if (!st.isFile()) continue;
      const id = `${st.dev}:${st.ino}`;
      if (seenFiles.has(id)) continue;
      seenFiles.add(id);
      const skip = await exclusion(full, name, st.size);
      if (skip === 'ignore') listing.ignored++;
      else if (skip) listing.skipped.push({ rel: relName, ...skip });
      else {
        listing.files.push({
          path: full,
          rel: relName,
          label: path.basename(dir),
          size: st.size,
          mtimeMs: st.mtimeMs,
        });
      }
    }
  };
  await walk(absRoot, '');
  return listing;
}

/**
 * Why a file is not a decode candidate: a skip to report, 'ignore' for plain non-images, or
 * undefined for a candidate. Files with an image extension are taken without reading them (the
 * decoder checks their content); others are read for a signature, so an extensionless image counts.
 */
async function exclusion(full: string, name: string, size: number): Promise<Skip | 'ignore' | undefined> {
  if (name.startsWith('._')) {
    return { kind: 'junk', reason: 'macOS AppleDouble metadata file (._ prefix), not an image' };
  }
  const unsupported = unsupportedFormatOf(name);
  if (unsupported) {
    return {
      kind: 'unsupported',
      reason: `${unsupported} images are not decodable by sharp; convert them to PNG or JPEG`,
    };
  }
  if (isImageExtension(name)) return size === 0 ? { kind: 'empty', reason: 'empty file (0 bytes)' } : undefined;
  if (size === 0) return 'ignore';
  const head = await readHead(full);
  return sniffFormat(head) ? undefined : 'ignore';
}

export async function readHead(file: string): Promise<Uint8Array> {
  const handle = await open(file, 'r');
  try {
    const buf = new Uint8Array(SNIFF_BYTES);
    const { bytesRead } = await handle.read(buf, 0, SNIFF_BYTES, 0);
    return buf.subarray(0, bytesRead);
  } finally {
    await handle.close();
  }
}
