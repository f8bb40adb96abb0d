// Decoding frames: a received frame's preamble, JSON header and tensor table checked against the
// limits before any tensor is looked at, then each tensor's data as a view or a copy.

import { GanDistError } from '../errors.ts';
import { decodeBfloat16, decodeFloat16, isValidFloat16Scale } from './wire-dtype.ts';
import {
  align8,
  assertLittleEndianHost,
  checkName,
  describe,
  DTYPES,
  elementCount,
  fail,
  isPlainObject,
  MAGIC,
  MAX_HEADER_DEPTH,
  PREAMBLE_BYTES,
  TENSOR_ALIGN,
  type Dtype,
  type FrameLimits,
  type ParsedFrame,
  type TensorEntry,
  type TypedArray,
} from './framing.ts';

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
