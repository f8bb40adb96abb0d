// Where the data pipeline keeps things on disk: the cache root (decoded images, fetched datasets)
// and the folder `data fetch flowers` writes to by default.

import { homedir } from 'node:os';
import path from 'node:path';

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
