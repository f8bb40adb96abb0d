// Encoding frames: the tensor table laid out behind the JSON header, each tensor copied once
// into one buffer (encodeFrame) or handed over as pieces for a vectored write (frameChunks).

import { encodeBfloat16, encodeFloat16, float16Scale } from './wire-dtype.ts';
import {
  align8,
  assertLittleEndianHost,
  fail,
  firstNonFinite,
  MAGIC,
  PREAMBLE_BYTES,
  tableFor,
  type FrameChunks,
  type OutgoingTensor,
  type TensorEntry,
} from './framing.ts';

function nonFinite(name: string, data: Float32Array): never {
  const i = firstNonFinite(data);
  return fail(`tensor '${name}' holds a non-finite value (${data[i]}) at index ${i}`);
}

/** Writes a float32 tensor's 16-bit form into the frame at its entry's offset. */
function writeHalf(buf: Buffer, e: TensorEntry, data: Float32Array): void {
  const abs = buf.byteOffset + e.byteOffset;
  // Buffers are 8-byte aligned in practice; a misaligned one converts through a copy.
  const out = abs % 2 === 0 ? new Uint16Array(buf.buffer, abs, data.length) : new Uint16Array(data.length);
  if (e.dtype === 'float16') encodeFloat16(data, e.scale!, out);
  else {
    const bad = encodeBfloat16(data, out);
    if (bad >= 0 && !Number.isFinite(data[bad])) nonFinite(e.name, data);
    if (bad >= 0)
      fail(`tensor '${e.name}' value ${data[bad]} at index ${bad} is beyond bfloat16's range (|x| < 3.39e38)`);
  }
  if (out.buffer !== buf.buffer) buf.set(new Uint8Array(out.buffer), e.byteOffset);
}

/** A frame laid out: its head (preamble and header), every tensor's place, and its length. */
interface FrameLayout {
  head: Buffer;
  table: TensorEntry[];
  total: number;
}

function layoutFrame(
  version: number,
  type: string,
  fields: Record<string, unknown>,
  tensors: readonly OutgoingTensor[],
): FrameLayout {
  assertLittleEndianHost();
  const table = tableFor(tensors);
  // Scales go in the header, so they are known before it is written: one pass over each tensor.
  table.forEach((e, i) => {
    if (e.dtype !== 'float16') return;
    const data = tensors[i].data as Float32Array;
    e.scale = float16Scale(data);
    if (Number.isNaN(e.scale)) nonFinite(e.name, data);
  });

  // Offsets depend on the header length and the header holds the offsets: lay out from a guess
  // of where data starts and move the start until the header fits in front of it (the offsets'
  // digits only grow, so this settles in a pass or two).
  let dataStart = align8(PREAMBLE_BYTES + 32);
  let json: string;
  let headerBytes: number;
  for (;;) {
    let off = dataStart;
    for (const e of table) {
      e.byteOffset = off;
      off = align8(off + e.byteLength);
    }
    try {
      json = JSON.stringify({ type, fields, tensors: table });
    } catch (err) {
      // A circular object or a BigInt in a free-form field such as a log line.
      return fail(`cannot encode the header as JSON (${(err as Error).message.slice(0, 120)})`);
    }
    headerBytes = Buffer.byteLength(json, 'utf8');
    if (PREAMBLE_BYTES + headerBytes <= dataStart || table.length === 0) break;
    dataStart = align8(PREAMBLE_BYTES + headerBytes);
  }
  let total = PREAMBLE_BYTES + headerBytes;
  for (const e of table) total = Math.max(total, e.byteOffset + e.byteLength);
  if (headerBytes > 0xffffffff) fail(`header of ${headerBytes} bytes does not fit a u32 length`);
  const head = Buffer.allocUnsafe(PREAMBLE_BYTES + headerBytes);
  MAGIC.copy(head, 0);
  head.writeUInt16LE(version, 4);
  head.writeUInt16LE(0, 6);
  head.writeUInt32LE(headerBytes, 8);
  head.write(json, PREAMBLE_BYTES, headerBytes, 'utf8');
  return { head, table, total };
}

/**
 * One frame in one allocation: every tensor is copied exactly once, straight into place. The
 * padding is zeroed so no stale process memory leaves the machine.
 */
export function encodeFrame(
  version: number,
  type: string,
  fields: Record<string, unknown>,
  tensors: readonly OutgoingTensor[],
  /** Encode into this buffer when it is large enough (a view of it is returned): no allocation. */
  into?: Buffer,
): Buffer {
  const { head, table, total } = layoutFrame(version, type, fields, tensors);
  // A fresh 38 MB buffer costs its page faults on every frame (as much again as the copy):
  // senders that encode the same size over and over hand one in.
  const buf = into !== undefined && into.byteLength >= total ? into.subarray(0, total) : Buffer.allocUnsafe(total);
  head.copy(buf, 0);
  let pos = head.byteLength;
  for (let i = 0; i < table.length; i++) {
    const e = table[i];
    const data = tensors[i].data;
    if (e.byteOffset > pos) buf.fill(0, pos, e.byteOffset);
    if (e.dtype === 'bfloat16' || e.dtype === 'float16') writeHalf(buf, e, data as Float32Array);
    else buf.set(new Uint8Array(data.buffer, data.byteOffset, data.byteLength), e.byteOffset);
    pos = e.byteOffset + e.byteLength;
  }
  return buf;
}

const ZEROS = new Uint8Array(8);

/**
 * The frame encodeFrame would build, as pieces for a vectored write: the head, then each
 * tensor's own memory (views, not copies) with zero padding between. For exact (unconverted)
 * tensors only: a 16-bit wire dtype needs the converting copy.
 */
export function frameChunks(
  version: number,
  type: string,
  fields: Record<string, unknown>,
  tensors: readonly OutgoingTensor[],
): FrameChunks {
  if (tensors.some((t) => t.wire !== undefined))
    fail('a frame sent in pieces carries its tensors exactly (float32); 16-bit tensors need encodeFrame');
  const { head, table, total } = layoutFrame(version, type, fields, tensors);
  const chunks: Uint8Array[] = [head];
  let pos = head.byteLength;
  for (let i = 0; i < table.length; i++) {
    const e = table[i];
    if (e.byteOffset > pos) chunks.push(ZEROS.subarray(0, e.byteOffset - pos));
    const data = tensors[i].data;
    if (data.byteLength > 0) chunks.push(new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
    pos = e.byteOffset + e.byteLength;
  }
  if (total > pos) chunks.push(ZEROS.subarray(0, total - pos));
  return { chunks, byteLength: total };
}
