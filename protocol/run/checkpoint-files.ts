// A checkpoint's binary files: float32 arrays in table order, each written and fsynced with its
// size and SHA-256 taken on the way, and read back only when both match the manifest.

import { createHash } from 'node:crypto';
import { open, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { sizeOf, type NamedArrays } from '../model/architecture.ts';
import { checkpointError, type CheckpointSpec, type FileEntry } from './checkpoint-manifest.ts';

/** fsync of a directory makes a rename inside it durable; Windows cannot open directories for it. */
export async function syncDir(dir: string): Promise<void> {
  if (process.platform === 'win32') return;
  const fh = await open(dir, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/** Writes `chunks` to a new file, fsyncs it, and returns its size and SHA-256. */
export async function writeChunks(path: string, chunks: Iterable<Uint8Array>): Promise<FileEntry> {
  const hash = createHash('sha256');
  let bytes = 0;
  const fh = await open(path, 'wx');
  try {
    for (const c of chunks) {
      hash.update(c);
      let off = 0;
      while (off < c.byteLength) off += (await fh.write(c, off, c.byteLength - off)).bytesWritten;
      bytes += c.byteLength;
    }
    await fh.sync();
  } finally {
    await fh.close();
  }
  return { bytes, sha256: hash.digest('hex') };
}

export const bytesOf = (a: Float32Array) => new Uint8Array(a.buffer, a.byteOffset, a.byteLength);

/** The arrays of `named` in table order, each checked against its shape. */
export function* inTableOrder(named: NamedArrays, specs: CheckpointSpec[], what: string): Generator<Uint8Array> {
  for (const s of specs) {
    const a = named[s.name];
    if (!a) throw checkpointError(`cannot save a checkpoint: ${what} has no "${s.name}"`);
    if (a.length !== sizeOf(s.shape)) {
      throw checkpointError(
        `cannot save a checkpoint: ${what} "${s.name}" has ${a.length} values, its shape [${s.shape}] needs ${sizeOf(s.shape)}`,
      );
    }
    yield bytesOf(a);
  }
}

/** Reads one binary file, checking its size against the manifest and the table, then its SHA-256. */
export async function readVerified(
  dir: string,
  file: string,
  entry: FileEntry,
  expectedBytes: number | undefined,
): Promise<Float32Array> {
  const path = join(dir, file);
  let buf: Buffer;
  try {
    buf = await readFile(path);
  } catch (err) {
    throw checkpointError(
      `checkpoint ${dir}: cannot read ${file} (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`,
    );
  }
  if (buf.byteLength !== entry.bytes) {
    throw checkpointError(
      `checkpoint ${dir}: ${file} has ${buf.byteLength} bytes, the manifest says ${entry.bytes} (truncated or overwritten)`,
    );
  }
  if (expectedBytes !== undefined && entry.bytes !== expectedBytes) {
    throw checkpointError(
      `checkpoint ${dir}: ${file} has ${entry.bytes} bytes, the parameter table needs ${expectedBytes}`,
    );
  }
  if (entry.bytes % 4 !== 0)
    throw checkpointError(`checkpoint ${dir}: ${file} has ${entry.bytes} bytes, not a whole number of float32 values`);
  const sum = createHash('sha256').update(buf).digest('hex');
  if (sum !== entry.sha256) {
    throw checkpointError(`checkpoint ${dir}: ${file} is corrupt (sha256 ${sum}, the manifest says ${entry.sha256})`);
  }
  // A fresh, aligned copy: a Buffer from readFile may sit at any offset of a shared pool.
  const out = new Float32Array(buf.byteLength / 4);
  new Uint8Array(out.buffer).set(buf);
  return out;
}

export function split(flat: Float32Array, specs: CheckpointSpec[]): NamedArrays {
  const out: NamedArrays = {};
  let o = 0;
  for (const s of specs) {
    const n = sizeOf(s.shape);
    out[s.name] = flat.slice(o, o + n);
    o += n;
  }
  return out;
}
