// Memory maps of the shared-memory transport's files (shm-file.ts), where the optional native
// @riaskov/mmap-io built at install: a frame then moves with one memcpy into or out of the map
// instead of a pread or pwrite, which on tmpfs runs at half memcpy's speed here (37.8 MB: 9.5 ms
// against 4.1 ms). Without the addon (no compiler at `npm ci`, or GAN_DIST_SHM_MMAP=0), the files
// are read and written with positioned fs calls, as before; the bytes and the protocol are the same.
//
// A map only ever covers bytes the file has (its writer grows a file, never shrinks it), so no
// access faults past its end. The one process that could shrink a file under a reader is a local
// worker of the same user, who could as well kill the coordinator: the region is the user's own
// (mode 0700), and a worker from elsewhere uses the socket.

import { createRequire } from 'node:module';

interface MmapIo {
  map(size: number, protection: number, flags: number, fd: number, offset?: number): Buffer;
  readonly PROT_READ: number;
  readonly PROT_WRITE: number;
  readonly MAP_SHARED: number;
}

/** The environment variable that turns the maps off (0): the files are then read and written with fs calls. */
export const SHM_MMAP_ENV = 'GAN_DIST_SHM_MMAP';

let loaded: { mmap?: MmapIo; reason?: string } | undefined;

function addon(): { mmap?: MmapIo; reason?: string } {
  if (loaded) return loaded;
  try {
    const mod = createRequire(import.meta.url)('@riaskov/mmap-io') as MmapIo | { default: MmapIo };
    loaded = { mmap: 'default' in mod ? mod.default : mod };
  } catch (err) {
    loaded = {
      reason: `@riaskov/mmap-io is not installed or did not build (${(err as Error).message.split('\n')[0]}); npm ci builds it where g++, make and python3 are present`,
    };
  }
  return loaded;
}

/** How a file opened now is moved: by memory map, or (with the reason) by fs calls. */
export function shmAccess(): { mode: 'mmap' } | { mode: 'fs'; reason: string } {
  if (process.env[SHM_MMAP_ENV] === '0') return { mode: 'fs', reason: `${SHM_MMAP_ENV}=0` };
  const a = addon();
  return a.mmap ? { mode: 'mmap' } : { mode: 'fs', reason: a.reason ?? 'unknown' };
}

/** Maps the first `bytes` of the open file `fd`, shared and writable; undefined without the addon. */
export function mapFile(fd: number, bytes: number): Buffer | undefined {
  const m = addon().mmap;
  if (!m || bytes <= 0) return undefined;
  return m.map(bytes, m.PROT_READ | m.PROT_WRITE, m.MAP_SHARED, fd, 0);
}
