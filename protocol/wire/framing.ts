// The binary frame under the wire protocol: preamble, JSON header, 8-byte-aligned tensor bytes.
// It knows no message types; protocol.ts puts the message union and its validation on top.
// This file holds the format (constants, types) and the checks both directions share;
// frame-encoder.ts writes frames and frame-decoder.ts reads them.
//
// The byte layout is documented at the top of protocol.ts.

import { endianness } from 'node:os';
import { GanDistError } from '../errors.ts';
import { existingArena } from '../arena/simd.ts';
import type { HalfDtype } from './wire-dtype.ts';

export const MAGIC = Buffer.from('GDST', 'latin1');
export const PREAMBLE_BYTES = 12;
/** Alignment of every tensor relative to the frame start: enough for any dtype we carry. */
export const TENSOR_ALIGN = 8;
export const MAX_RANK = 8;
/** Deepest nesting of objects and arrays a header may have (a log line's objects included). */
export const MAX_HEADER_DEPTH = 32;
/** Tensor names: what tfjs and the coordinator use ('G/tconv1/kernel', 'D.bn2:sum'). */
const TENSOR_NAME = /^[A-Za-z0-9_.:/-]{1,200}$/;

export const DTYPES = {
  float32: Float32Array,
  int32: Int32Array,
  uint8: Uint8Array,
  uint16: Uint16Array,
  // The lighter wire (wire-dtype.ts): raw uint16 words on the wire, float32 once decoded.
  bfloat16: Uint16Array,
  float16: Uint16Array,
} as const;
export type Dtype = keyof typeof DTYPES;
export type TypedArray = Float32Array | Int32Array | Uint8Array | Uint16Array;

export interface FrameLimits {
  /** Largest whole frame accepted, in bytes. */
  maxFrameBytes: number;
  /** Largest JSON header accepted, in bytes. */
  maxHeaderBytes: number;
  /** Most tensors one frame may carry. */
  maxTensors: number;
}

export interface TensorEntry {
  name: string;
  dtype: Dtype;
  shape: number[];
  byteOffset: number;
  byteLength: number;
  /** float16 only: the power of two each value was divided by before rounding (float16Scale). */
  scale?: number;
}

export interface OutgoingTensor {
  name: string;
  data: TypedArray;
  shape: readonly number[];
  /** Send this float32 tensor in a 16-bit form; the receiver gets float32 back. */
  wire?: HalfDtype;
}

export interface ParsedFrame {
  version: number;
  type: string;
  fields: Record<string, unknown>;
  table: TensorEntry[];
  /** The whole frame; tensor byte offsets are relative to its start. */
  bytes: Uint8Array;
}

/** A frame as consecutive pieces whose concatenation is the encoded frame. */
export interface FrameChunks {
  chunks: Uint8Array[];
  byteLength: number;
}

// Typed-array views read host byte order; every platform Node ships on today is little-endian.
const HOST_IS_LE = endianness() === 'LE';

export function protocolError(reason: string): GanDistError {
  return new GanDistError('GAN_DIST_E_PROTOCOL', reason);
}

/** Throws protocolError(reason): each check reads as a condition and its failure. */
export function fail(reason: string): never {
  throw protocolError(reason);
}

export function assertLittleEndianHost(): void {
  if (!HOST_IS_LE) fail('this host is big-endian; the gan-dist wire protocol needs a little-endian host');
}

export function align8(n: number): number {
  return Math.ceil(n / TENSOR_ALIGN) * TENSOR_ALIGN;
}

export function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** A short rendering of a received value for error messages (never the whole thing). */
export function describe(v: unknown): string {
  if (typeof v === 'string') return JSON.stringify(v.length > 40 ? `${v.slice(0, 40)}...` : v);
  if (typeof v === 'number' || typeof v === 'boolean') return String(v);
  if (v === null) return 'null';
  if (v === undefined) return 'nothing';
  if (Array.isArray(v)) return `an array of ${v.length}`;
  return `a ${typeof v}`;
}

export function dtypeOf(data: unknown): Dtype {
  if (data instanceof Float32Array) return 'float32';
  if (data instanceof Int32Array) return 'int32';
  if (data instanceof Uint8Array) return 'uint8';
  if (data instanceof Uint16Array) return 'uint16';
  const name = (data as { constructor?: { name?: unknown } } | null)?.constructor?.name;
  return fail(
    `tensor data must be a Float32Array, Int32Array, Uint8Array or Uint16Array, got ${typeof name === 'string' ? name : describe(data)}`,
  );
}

/** Arrays outside the arena shorter than this keep the JavaScript loop (a chunk copy would not pay). */
const SIMD_CHECK_MIN = 4096;

/**
 * Index of the first NaN or +-Infinity in a float32 array, or -1. First a pass that sums `x * 0`
 * into four independent accumulators (0 for a finite x, NaN otherwise; four chains keep the adds
 * from waiting on each other): 4.2 GB/s on a 2-core CI machine, against 2.4-3.4 GB/s for testing
 * the exponent bits through an integer view and 0.8-1.5 GB/s for one accumulator. Only when it
 * finds something does the bit test look for the index.
 */
export function firstNonFinite(a: Float32Array): number {
  // Where this thread has a SIMD arena (the coordinator; a worker on shared memory): the wasm
  // check, on large arrays outside the arena a chunk at a time; then the index only when it found
  // something.
  const arena = existingArena();
  if (arena && (a.length >= SIMD_CHECK_MIN || arena.address(a) >= 0))
    return arena.nonFinite(a) ? firstNonFiniteBits(a) : -1;
  const n4 = a.length - (a.length % 4);
  let s0 = 0;
  let s1 = 0;
  let s2 = 0;
  let s3 = 0;
  for (let i = 0; i < n4; i += 4) {
    s0 += a[i] * 0;
    s1 += a[i + 1] * 0;
    s2 += a[i + 2] * 0;
    s3 += a[i + 3] * 0;
  }
  for (let i = n4; i < a.length; i++) s0 += a[i] * 0;
  if (s0 + s1 + s2 + s3 === 0) return -1;
  return firstNonFiniteBits(a);
}

/** The exponent-bits scan for the index, once a non-finite value is known to be there. */
function firstNonFiniteBits(a: Float32Array): number {
  const u = new Int32Array(a.buffer, a.byteOffset, a.length);
  const n = u.length;
  for (let i = 0; i < n; i++) {
    if ((u[i] & 0x7f800000) === 0x7f800000) return i;
  }
  return -1;
}

export function allFinite(a: Float32Array): boolean {
  return firstNonFinite(a) < 0;
}

/** Elements a shape holds; fails when the shape is malformed or cannot fit in `maxElements`. */
export function elementCount(name: string, shape: unknown, maxElements: number): number {
  if (!Array.isArray(shape)) fail(`tensor '${name}' shape must be an array, got ${describe(shape)}`);
  if (shape.length > MAX_RANK) fail(`tensor '${name}' has rank ${shape.length}; at most ${MAX_RANK} is allowed`);
  let count = 1;
  for (let i = 0; i < shape.length; i++) {
    const d: unknown = shape[i];
    if (typeof d !== 'number' || !Number.isSafeInteger(d) || d < 0) {
      fail(`tensor '${name}' shape[${i}] must be a non-negative integer, got ${describe(d)}`);
    }
    count *= d;
    // Checked at every step so the product can never leave the exactly representable range.
    if (count > maxElements) fail(`tensor '${name}' shape [${shape.join(',')}] is larger than the frame can hold`);
  }
  return count;
}

export function checkName(name: unknown, seen: Set<string>): string {
  if (typeof name !== 'string' || !TENSOR_NAME.test(name)) {
    fail(`tensor name ${describe(name)} must be 1-200 characters of A-Z a-z 0-9 _ . : / -`);
  }
  if (name === '__proto__') fail("tensor name '__proto__' is not allowed");
  if (seen.has(name)) fail(`tensor '${name}' appears twice in the tensor table`);
  seen.add(name);
  return name;
}

/** Checks outgoing tensors (names, dtypes, shape against length) and returns their table rows. */
export function tableFor(tensors: readonly OutgoingTensor[]): TensorEntry[] {
  const seen = new Set<string>();
  return tensors.map((t) => {
    const name = checkName(t.name, seen);
    const dtype = dtypeOf(t.data);
    const count = elementCount(name, t.shape, Number.MAX_SAFE_INTEGER);
    if (count !== t.data.length) {
      fail(`tensor '${name}' has ${t.data.length} elements but shape [${t.shape.join(',')}] needs ${count}`);
    }
    if (t.wire === undefined) return { name, dtype, shape: [...t.shape], byteOffset: 0, byteLength: t.data.byteLength };
    if (!(t.data instanceof Float32Array))
      fail(`tensor '${name}' is ${dtype}; only float32 tensors can travel as ${t.wire}`);
    return { name, dtype: t.wire, shape: [...t.shape], byteOffset: 0, byteLength: 2 * count };
  });
}
