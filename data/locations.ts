// Where the data pipeline keeps things on disk: the cache root (decoded images, fetched datasets)
// and the folder `data fetch flowers` writes to by default.

import { existsSync } from 'node:fs';
import { homedir } from 'node:os';
import path from 'node:path';
import { GanDistError } from '../protocol/errors.ts';

/**
 * The cache root: the `cacheDir` option, else $GAN_DIST_CACHE, else $XDG_CACHE_HOME/gan-dist,
 * else ~/.cache/gan-dist. Kept outside the data folder, which may be read-only or shared.
 */
export function cacheRoot(cacheDir?: string, env: NodeJS.ProcessEnv = process.env): string {
  if (cacheDir) return path.resolve(cacheDir);
  if (env.GAN_DIST_CACHE) return path.resolve(env.GAN_DIST_CACHE);
  const xdg = env.XDG_CACHE_HOME;
  return path.join(xdg && path.isAbsolute(xdg) ? xdg : path.join(homedir(), '.cache'), 'gan-dist');
}

/** Decoded-image caches, one file per (folder, file list, decode options). */
export function decodedCacheDir(cacheDir?: string): string {
  return path.join(cacheRoot(cacheDir), 'decoded');
}

/** Where `gan-dist data fetch` puts datasets when no --dir is given. */
export function datasetsDir(cacheDir?: string): string {
  return path.join(cacheRoot(cacheDir), 'datasets');
}

/** The folder the flower_photos archive extracts to, inside a datasets folder. */
export const FLOWERS_FOLDER = 'flower_photos';

export function flowersDir(cacheDir?: string): string {
  return path.join(datasetsDir(cacheDir), FLOWERS_FOLDER);
}

/** `--data` as a folder: 'flowers' is the fetched flower_photos folder; anything else a path. */
export function resolveDataFolder(data: string, cacheDir?: string): string {
  if (data !== 'flowers') return path.resolve(data);
  const dir = flowersDir(cacheDir);
  if (!existsSync(dir)) {
    throw new GanDistError(
      'GAN_DIST_E_DATA',
      `the flowers dataset is not at ${dir}`,
      'run `gan-dist data fetch flowers` to download it (218 MB), pass --data with a folder of images, or use --data synthetic',
    );
  }
  return dir;
}
