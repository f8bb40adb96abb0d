// The binary frame under the wire protocol: preamble, JSON header, 8-byte-aligned tensor bytes.
// It knows no message types; protocol.ts puts the message union and its validation on top.
//
// The byte layout is documented at the top of protocol.ts.

import { endianness } from 'node:os';
import { GanDistError } from '../errors.ts';
import { existingArena } from '../arena/simd.ts';
import {
  decodeBfloat16,
  decodeFloat16,
  encodeBfloat16,
  encodeFloat16,
  float16Scale,
  isValidFloat16Scale,
  type HalfDtype,
} from './wire-dtype.ts';

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

// Typed-array views read host byte order; every platform Node ships on today is little-endian.
const HOST_IS_LE = endianness() === 'LE';

export function protocolError(reason: string): GanDistError {
  return new GanDistError('GAN_DIST_E_PROTOCOL', reason);
}

function fail(reason: string): never {
  throw protocolError(reason);
}

function assertLittleEndianHost(): void {
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
function elementCount(name: string, shape: unknown, maxElements: number): number {
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

function checkName(name: unknown, seen: Set<string>): string {
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

/** A frame as consecutive pieces whose concatenation is the encoded frame. */
export interface FrameChunks {
  chunks: Uint8Array[];
  byteLength: number;
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

const utf8 = new TextDecoder('utf-8', { fatal: true });

// `__proto__` keys would become prototypes the moment anyone Object.assign()s a header object.
function rejectProtoKeys(key: string, value: unknown): unknown {
  if (key === '__proto__') fail("header contains a '__proto__' key");
  return value;
}

/** Deepest nesting of objects and arrays in JSON text, strings skipped. */
function nestingDepth(text: string): number {
  let depth = 0;
  let max = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 0x5c)
        i++; // backslash: skip the escaped character
      else if (c === 0x22) inString = false;
    } else if (c === 0x22) inString = true;
    else if (c === 0x7b || c === 0x5b) max = Math.max(max, ++depth);
    else if (c === 0x7d || c === 0x5d) depth--;
  }
  return max;
}

function parseHeaderJson(bytes: Uint8Array): unknown {
  let text: string;
  try {
    text = utf8.decode(bytes);
  } catch {
    return fail('header is not valid UTF-8');
  }
  // Checked before parsing: whoever later walks the value (a reviver, a logger) recurses.
  const depth = nestingDepth(text);
  if (depth > MAX_HEADER_DEPTH) fail(`header nests ${depth} levels deep; at most ${MAX_HEADER_DEPTH} are allowed`);
  try {
    return JSON.parse(text, rejectProtoKeys);
  } catch (err) {
    if (err instanceof GanDistError) throw err;
    // A SyntaxError: the peer sent no JSON.
    return fail(`header is not valid JSON (${(err as Error).message.slice(0, 120)})`);
  }
}

function toBytes(input: unknown): Uint8Array {
  if (input instanceof Uint8Array) return input;
  if (input instanceof ArrayBuffer) return new Uint8Array(input);
  return fail(`a frame must be binary (Buffer, ArrayBuffer or Uint8Array), got ${describe(input)}`);
}

function checkEntry(
  raw: unknown,
  index: number,
  seen: Set<string>,
  dataStart: number,
  frameBytes: number,
): TensorEntry {
  if (!isPlainObject(raw)) fail(`tensor table entry ${index} must be an object, got ${describe(raw)}`);
  for (const k of Object.keys(raw)) {
    if (k !== 'name' && k !== 'dtype' && k !== 'shape' && k !== 'byteOffset' && k !== 'byteLength' && k !== 'scale') {
      fail(`tensor table entry ${index} has unknown key ${describe(k)}`);
    }
  }
  const name = checkName(raw.name, seen);
  const dtype = raw.dtype;
  if (typeof dtype !== 'string' || !Object.hasOwn(DTYPES, dtype)) {
    fail(`tensor '${name}' dtype must be one of ${Object.keys(DTYPES).join(', ')}, got ${describe(dtype)}`);
  }
  const size = DTYPES[dtype as Dtype].BYTES_PER_ELEMENT;
  const count = elementCount(name, raw.shape, Math.floor(frameBytes / size));
  const { byteOffset, byteLength } = raw;
  if (typeof byteLength !== 'number' || !Number.isSafeInteger(byteLength) || byteLength !== count * size) {
    fail(
      `tensor '${name}' byteLength is ${describe(byteLength)} but ${dtype} [${(raw.shape as number[]).join(',')}] needs ${count * size}`,
    );
  }
  if (typeof byteOffset !== 'number' || !Number.isSafeInteger(byteOffset) || byteOffset % TENSOR_ALIGN !== 0) {
    fail(`tensor '${name}' byteOffset must be a multiple of ${TENSOR_ALIGN}, got ${describe(byteOffset)}`);
  }
  if (byteOffset < dataStart)
    fail(`tensor '${name}' byteOffset ${byteOffset} lies inside the header (data starts at ${dataStart})`);
  if (byteOffset + byteLength > frameBytes) {
    fail(
      `tensor '${name}' bytes [${byteOffset}, ${byteOffset + byteLength}) run past the end of the ${frameBytes}-byte frame`,
    );
  }
  const entry: TensorEntry = { name, dtype: dtype as Dtype, shape: raw.shape as number[], byteOffset, byteLength };
  if (dtype === 'float16') {
    if (!isValidFloat16Scale(raw.scale)) {
      fail(
        `tensor '${name}' is float16, so its scale must be a power of two from 2^-163 to 2^113, got ${describe(raw.scale)}`,
      );
    }
    entry.scale = raw.scale;
  } else if (Object.hasOwn(raw, 'scale')) {
    fail(`tensor '${name}' is ${dtype}; only float16 tensors carry a scale`);
  }
  return entry;
}

/** Checks a frame's structure and returns its header and tensor table; makes no tensor views yet. */
export function parseFrame(input: unknown, limits: FrameLimits): ParsedFrame {
  assertLittleEndianHost();
  const bytes = toBytes(input);
  const len = bytes.byteLength;
  if (len > limits.maxFrameBytes) fail(`frame of ${len} bytes exceeds the limit of ${limits.maxFrameBytes}`);
  if (len < PREAMBLE_BYTES) fail(`frame of ${len} bytes is shorter than the ${PREAMBLE_BYTES}-byte preamble`);
  if (bytes[0] !== MAGIC[0] || bytes[1] !== MAGIC[1] || bytes[2] !== MAGIC[2] || bytes[3] !== MAGIC[3]) {
    fail('frame does not start with the magic "GDST": not a gan-dist peer');
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, len);
  const version = view.getUint16(4, true);
  const flags = view.getUint16(6, true);
  const headerBytes = view.getUint32(8, true);
  if (flags !== 0) fail(`frame flags are 0x${flags.toString(16)}; this version defines none (must be 0)`);
  if (headerBytes > limits.maxHeaderBytes)
    fail(`header of ${headerBytes} bytes exceeds the limit of ${limits.maxHeaderBytes}`);
  const headerEnd = PREAMBLE_BYTES + headerBytes;
  if (headerEnd > len) fail(`header length ${headerBytes} runs past the end of the ${len}-byte frame`);

  const header = parseHeaderJson(bytes.subarray(PREAMBLE_BYTES, headerEnd));
  if (!isPlainObject(header)) fail(`header must be a JSON object, got ${describe(header)}`);
  for (const k of Object.keys(header)) {
    if (k !== 'type' && k !== 'fields' && k !== 'tensors') fail(`header has unknown key ${describe(k)}`);
  }
  const { type, fields, tensors } = header;
  if (typeof type !== 'string') fail(`header.type must be a string, got ${describe(type)}`);
  if (!isPlainObject(fields)) fail(`header.fields must be an object, got ${describe(fields)}`);
  if (!Array.isArray(tensors)) fail(`header.tensors must be an array, got ${describe(tensors)}`);
  if (tensors.length > limits.maxTensors)
    fail(`frame carries ${tensors.length} tensors; the limit is ${limits.maxTensors}`);

  const dataStart = align8(headerEnd);
  const seen = new Set<string>();
  const table = tensors.map((raw, i) => checkEntry(raw, i, seen, dataStart, len));
  let end = headerEnd;
  const byOffset = [...table].sort((a, b) => a.byteOffset - b.byteOffset);
  for (let i = 0; i < byOffset.length; i++) {
    const e = byOffset[i];
    if (i > 0) {
      const prev = byOffset[i - 1];
      if (e.byteOffset < prev.byteOffset + prev.byteLength) {
        fail(`tensors '${prev.name}' and '${e.name}' overlap at byte ${e.byteOffset}`);
      }
    }
    end = Math.max(end, e.byteOffset + e.byteLength);
  }
  if (len > end) fail(`frame has ${len - end} bytes after its last tensor`);
  return { version, type, fields, table, bytes };
}

/**
 * The tensor's data: a view into the frame when the receive buffer is aligned for the dtype,
 * else a copy (ws hands over Buffers at any byteOffset). A view shares memory with the frame, so
 * the frame must not be reused while the tensor is alive.
 */
export function tensorData(bytes: Uint8Array, e: TensorEntry): TypedArray {
  if (e.dtype === 'bfloat16' || e.dtype === 'float16') return halfData(bytes, e);
  const Ctor = DTYPES[e.dtype];
  const size = Ctor.BYTES_PER_ELEMENT;
  const count = e.byteLength / size;
  const abs = bytes.byteOffset + e.byteOffset;
  if (abs % size === 0) return new Ctor(bytes.buffer as ArrayBuffer, abs, count);
  const out = new Ctor(count);
  new Uint8Array(out.buffer).set(bytes.subarray(e.byteOffset, e.byteOffset + e.byteLength));
  return out;
}

/**
 * A 16-bit tensor decoded into a new Float32Array; a NaN or infinity in it is a protocol error
 * (the sender's encoder never produces one). Finite by construction, so not checked again.
 */
function halfData(bytes: Uint8Array, e: TensorEntry): Float32Array {
  const raw = tensorData(bytes, { ...e, dtype: 'uint16' }) as Uint16Array;
  const out = new Float32Array(raw.length);
  const bad = e.dtype === 'float16' ? decodeFloat16(raw, e.scale!, out) : decodeBfloat16(raw, out);
  if (bad >= 0) fail(`tensor '${e.name}' holds a non-finite ${e.dtype} value at index ${bad}`);
  return out;
}
