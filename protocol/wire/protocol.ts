// The gan-dist wire protocol, imported by the coordinator, workers and monitors: its version, the
// one union of messages they exchange (declared in messages.ts), and the validation every frame
// goes through (message-specs.ts): both sides import all of it from here.
//
// One binary frame per message (integers little-endian, offsets from the frame's first byte):
//
//   0  4 bytes  magic 'GDST'
//   4  u16      protocol version (PROTOCOL_VERSION)
//   6  u16      flags, reserved: 0
//   8  u32      header length H
//  12  H bytes  UTF-8 JSON header:
//               {"type": "shard", "fields": {"iteration": 7, ...},
//                "tensors": [{"name": "z", "dtype": "float32", "shape": [32, 100],
//                             "byteOffset": 1024, "byteLength": 12800}, ...]}
//   .. zero padding to a multiple of 8
//   .. raw little-endian tensor bytes, each at its byteOffset: a multiple of 8 at or after the
//      header's end, ranges not overlapping; the frame ends where the last tensor ends.
//
// dtypes: float32, int32, uint8, uint16, and the lighter wire's bfloat16 and float16 (two bytes
// an element; wire-dtype.ts). A float16 entry carries "scale": a power of two from 2^-163 to
// 2^113 that each value was divided by (chosen from the tensor's largest |x|, so small gradients
// stay above float16's denormals); the receiver multiplies it back. Both decode to float32, so
// messages in memory hold Float32Arrays whatever the wire carried. Only `weights` and
// `gradients` may carry them; `welcome.wireDtype` (absent: float32) tells a worker which to use.
//
// Over a socket, `weights` and `gradients` of more than PART_BYTES (16 MiB) of tensors travel as
// `parts` frames, `part` 0..parts-1, each with all the message's fields and a disjoint run of its
// tensors in order; the receiver's PartsAssembler (parts.ts) merges them back, counting their
// bytes against the one-frame limit, and drops the sender on a part out of order. Shared memory
// carries them whole.
//
// In memory a message is `{type, ...fields}` and, for the types that carry tensors, `tensors`
// (name -> flat typed array) and `shapes` (name -> shape). The fields of `hello` and `reject` are
// frozen across protocol versions: a peer of another version can still say hello and be told why
// it is turned away, with both versions named.

import { createHash } from 'node:crypto';
import { GanDistError } from '../errors.ts';
import {
  PREAMBLE_BYTES,
  describe,
  type FrameChunks,
  firstNonFinite,
  isPlainObject,
  protocolError,
  tableFor,
  type FrameLimits,
  type OutgoingTensor,
  type TypedArray,
} from './framing.ts';
import { encodeFrame, frameChunks } from './frame-encoder.ts';
import { parseFrame, tensorData } from './frame-decoder.ts';
import { isHalfDtype, type WireDtype } from './wire-dtype.ts';

export {
  allFinite,
  firstNonFinite,
  type Dtype,
  type FrameChunks,
  type FrameLimits,
  type TypedArray,
} from './framing.ts';
export type { WireDtype } from './wire-dtype.ts';
// The messages are declared in messages.ts and checked by message-specs.ts; this module is the
// protocol's one entry point, so both sides import every message from here.
export * from './messages.ts';
export { MESSAGE_TYPES } from './message-specs.ts';
import { PROTOCOL_VERSION, type Message, type MessageType, type Shape } from './messages.ts';
import {
  checkFields,
  checkValues,
  fail,
  noTensors,
  specOf,
  VERSION_FROZEN,
  within,
  type MessageSpec,
  type TableRow,
} from './message-specs.ts';

// --- limits ----------------------------------------------------------------------------------

/** Before authentication a peer is a stranger: every handshake message fits in 4 KB. */
/** A monitor's frames after authentication: log lines are small; are small; 256 KB holds the largest a coordinator writes many times over. */
export const MONITOR_LIMITS: Readonly<FrameLimits> = Object.freeze({
  maxFrameBytes: 256 * 1024,
  maxHeaderBytes: 256 * 1024 - 12,
  maxTensors: 0,
});

export const PRE_AUTH_LIMITS: Readonly<FrameLimits> = Object.freeze({
  maxFrameBytes: 4096,
  maxHeaderBytes: 4096 - PREAMBLE_BYTES,
  maxTensors: 0,
});

const POST_AUTH_HEADER_BYTES = 256 * 1024;
const POST_AUTH_TENSORS = 4096;

function positiveInt(v: unknown, what: string): number {
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 1) {
    throw protocolError(`frameLimitFor: ${what} must be a positive integer, got ${describe(v)}`);
  }
  return v;
}

/**
 * Limits for an authenticated peer, fitted to the model: the largest frame is a `weights` or
 * `gradients` message (4 bytes a parameter, plus BatchNorm statistics, which stay far below 1/8
 * of the parameters in every DCGAN this project builds), a shard, or a sample.
 */
export function frameLimitFor(
  totalParams: number,
  batch: number,
  imageSize: number,
  opts: { latent?: number; sampleCount?: number } = {},
): FrameLimits {
  positiveInt(totalParams, 'totalParams');
  positiveInt(batch, 'batch');
  positiveInt(imageSize, 'imageSize');
  const latent = positiveInt(opts.latent ?? 100, 'latent');
  const sampleCount = positiveInt(opts.sampleCount ?? 64, 'sampleCount');
  const paramBytes = totalParams * 4;
  const modelBytes = paramBytes + Math.ceil(paramBytes / 8);
  const pixels = imageSize * imageSize * 3;
  const shardBytes = batch * (pixels + latent * 4 + 1);
  const sampleBytes = Math.max(sampleCount, batch) * (pixels + latent) * 4;
  const payload = Math.max(modelBytes, shardBytes, sampleBytes);
  const maxFrameBytes = PREAMBLE_BYTES + POST_AUTH_HEADER_BYTES + payload + 8 * POST_AUTH_TENSORS;
  if (maxFrameBytes > WS_MAX_PAYLOAD) {
    // A larger limit would not reach ws intact (below): refuse the config, naming what to lower.
    const [flag, what] =
      payload === modelBytes
        ? ['--filters', 'weights or gradients message']
        : payload === shardBytes || batch >= sampleCount
          ? ['--batch-size', payload === shardBytes ? 'shard' : 'sample']
          : ['--eval-count', 'sample'];
    throw new GanDistError(
      'GAN_DIST_E_CONFIG',
      `${flag}: this run's largest frame (a ${what}) would be ${maxFrameBytes} bytes, more than the ${WS_MAX_PAYLOAD} a WebSocket frame limit can hold`,
      `lower ${flag}`,
    );
  }
  return { maxFrameBytes, maxHeaderBytes: POST_AUTH_HEADER_BYTES, maxTensors: POST_AUTH_TENSORS };
}

/** The largest frame limit ws can enforce: it stores maxPayload | 0 and checks it only when positive. */
export const WS_MAX_PAYLOAD = 2 ** 31 - 1;

interface Split {
  type: MessageType;
  spec: MessageSpec;
  fields: Record<string, unknown>;
  outgoing: OutgoingTensor[];
}

/** Separates a message into header fields and tensors, checking everything but tensor values. */
function split(msg: unknown): Split {
  if (!isPlainObject(msg)) fail(`a message must be an object, got ${describe(msg)}`);
  const spec = specOf(msg.type);
  const type = msg.type as MessageType;
  return within(type, () => {
    const fields: Record<string, unknown> = {};
    for (const key of Object.keys(msg)) {
      if (key === 'type' || (spec.tensors !== noTensors && (key === 'tensors' || key === 'shapes'))) continue;
      if (key === '__proto__') fail("field '__proto__' is not allowed");
      fields[key] = msg[key];
    }
    checkFields(type, spec, fields, false);
    const outgoing: OutgoingTensor[] = [];
    if (spec.tensors !== noTensors) {
      const { tensors, shapes } = msg;
      if (!isPlainObject(tensors)) fail(`${type}.tensors must be an object of typed arrays, got ${describe(tensors)}`);
      if (!isPlainObject(shapes)) fail(`${type}.shapes must be an object of shapes, got ${describe(shapes)}`);
      for (const name of Object.keys(shapes)) {
        if (!Object.hasOwn(tensors, name)) fail(`${type}.shapes names tensor '${name}', which is not in tensors`);
      }
      for (const [name, data] of Object.entries(tensors)) {
        const s = shapes[name];
        if (!Array.isArray(s)) fail(`${type}.shapes['${name}'] is missing`);
        outgoing.push({ name, data: data as TypedArray, shape: s });
      }
    }
    return { type, spec, fields, outgoing };
  });
}

function rowsOf(outgoing: readonly OutgoingTensor[]): TableRow[] {
  return tableFor(outgoing).map(({ name, dtype, shape }) => ({ name, dtype, shape }));
}

function byName(outgoing: readonly OutgoingTensor[]): Record<string, TypedArray> {
  return Object.fromEntries(outgoing.map((t) => [t.name, t.data]));
}

/** Message types whose float32 tensors may travel in a 16-bit wire dtype. */
const HALF_TYPES = new Set<string>(['weights', 'gradients']);

export interface EncodeOptions {
  /** Check tensor values as a receiver would (finite); the receiver always does. */
  checkValues?: boolean;
  /** `weights` and `gradients` only: send the float32 tensors in this dtype (default float32, exact). */
  wireDtype?: WireDtype;
  /** With a 16-bit wireDtype: the tensors that stay float32 anyway. */
  exact?: (name: string) => boolean;
  /** Encode into this buffer when it is large enough (the frame is a view of it): no 38 MB allocation per frame. */
  into?: Buffer;
}

/**
 * The message as one binary frame (one allocation; each tensor copied into it once, or converted
 * into it once for a 16-bit wireDtype). Checks fields, dtypes and shapes, so a sender's bug fails
 * at the sender; tensor values are checked only with `checkValues` (the receiver always checks
 * them), except that a 16-bit encoding refuses non-finite values.
 */
export function encodeMessage(msg: Message, opts: EncodeOptions = {}): Buffer {
  const { type, spec, fields, outgoing } = split(msg);
  return within(type, () => {
    const wire = opts.wireDtype ?? 'float32';
    if (isHalfDtype(wire)) {
      if (!HALF_TYPES.has(type))
        fail(`a ${type} message travels exactly; wireDtype ${wire} applies to weights and gradients only`);
      for (const t of outgoing) if (t.data instanceof Float32Array && opts.exact?.(t.name) !== true) t.wire = wire;
    }
    spec.tensors(rowsOf(outgoing), fields);
    if (opts.checkValues === true) checkValues(spec, byName(outgoing));
    // A hello's frame carries the version it claims, so a peer of another version is named.
    const version = type === 'hello' ? (fields.protocolVersion as number) : PROTOCOL_VERSION;
    return encodeFrame(version, type, fields, outgoing, opts.into);
  });
}

/**
 * The frame encodeMessage would give, in pieces that point at the tensors' own memory (for a
 * vectored write into a shared-memory file, skipping the copy into one buffer). Exact float32
 * only; the same checks as encodeMessage.
 */
export function encodeMessageChunks(msg: Message, opts: Pick<EncodeOptions, 'checkValues'> = {}): FrameChunks {
  const { type, spec, fields, outgoing } = split(msg);
  return within(type, () => {
    spec.tensors(rowsOf(outgoing), fields);
    if (opts.checkValues === true) checkValues(spec, byName(outgoing));
    return frameChunks(PROTOCOL_VERSION, type, fields, outgoing);
  });
}

/** Checks an in-memory message as a receiver would, tensor values included. */
export function validateMessage(msg: Message): void {
  const { type, spec, fields, outgoing } = split(msg);
  within(type, () => {
    spec.tensors(rowsOf(outgoing), fields);
    checkValues(spec, byName(outgoing));
  });
}

/**
 * Decodes and validates one received frame. Returns a message that matches its type in every
 * field, dtype, shape and (where the type requires) finite value, or throws
 * GanDistError('GAN_DIST_E_PROTOCOL') naming what is wrong. Tensors are views into `input` when
 * it is aligned for their dtype, else copies; keep `input` unmodified while they are in use.
 */
export interface DecodeOptions {
  /**
   * A `gradients` frame whose tensors hold a NaN or an infinity decodes as the
   * `gradientsNonFinite` message its sender would have sent, instead of failing. For frames the
   * coordinator checks on its workers' behalf (shared memory: one check instead of two).
   */
  reportNonFinite?: boolean;
  /**
   * Skip the finiteness check of tensor values (structure, shapes and field values are still
   * checked): for the coordinator's own weights read from its shared memory by a local worker,
   * whose non-finite weights would show as non-finite gradients anyway.
   */
  skipFiniteCheck?: boolean;
}

export function decodeMessage(
  input: Buffer | ArrayBuffer | Uint8Array,
  limits: FrameLimits,
  opts: DecodeOptions = {},
): Message {
  const frame = parseFrame(input, limits);
  const { type, fields, table } = frame;
  const crossVersion = frame.version !== PROTOCOL_VERSION;
  if (crossVersion && !VERSION_FROZEN.has(type)) {
    fail(
      `peer speaks protocol version ${frame.version}; this gan-dist speaks version ${PROTOCOL_VERSION} (message type ${describe(type)})`,
    );
  }
  const spec = specOf(type);
  return within(type, () => {
    checkFields(type, spec, fields, crossVersion);
    if (type === 'hello' && fields.protocolVersion !== frame.version) {
      fail(
        `hello.protocolVersion ${describe(fields.protocolVersion)} disagrees with its frame's version ${frame.version}`,
      );
    }
    if (spec.tensors === noTensors) {
      noTensors(table);
      const msg: Record<string, unknown> = { type };
      for (const name of Object.keys(spec.fields)) msg[name] = fields[name];
      for (const name of Object.keys(spec.optional ?? {})) if (Object.hasOwn(fields, name)) msg[name] = fields[name];
      return msg as unknown as Message;
    }
    spec.tensors(table, fields);
    const tensors: Record<string, TypedArray> = {};
    const shapes: Record<string, Shape> = {};
    const decoded = new Set<string>();
    for (const e of table) {
      tensors[e.name] = tensorData(frame.bytes, e);
      shapes[e.name] = e.shape;
      if (isHalfDtype(e.dtype)) decoded.add(e.name);
    }
    let finiteChecked = opts.skipFiniteCheck === true;
    if (opts.reportNonFinite && type === 'gradients') {
      const bad = Object.entries(tensors).filter(
        ([name, t]) => t instanceof Float32Array && !decoded.has(name) && firstNonFinite(t) >= 0,
      );
      if (bad.length > 0) {
        const { iteration, shardId, weightsVersion, n } = fields as {
          iteration: number;
          shardId: number;
          weightsVersion: number;
          n: number;
        };
        return {
          type: 'gradientsNonFinite',
          iteration,
          shardId,
          weightsVersion,
          n,
          tensorNames: bad.map(([name]) => name).slice(0, 4096),
        };
      }
      // Every float tensor was just scanned: checkValues need not scan them again.
      finiteChecked = true;
    }
    checkValues(finiteChecked ? { ...spec, finite: [] } : spec, tensors, decoded);
    return { type, ...fields, tensors, shapes } as unknown as Message;
  });
}

/** SHA-256 (hex) over the parameter table's names, shapes and order, as `ready` carries it. */
export function paramTableHash(entries: readonly { name: string; shape: readonly number[] }[]): string {
  const canonical = entries.map((e, i) => {
    if (typeof e.name !== 'string' || e.name.length === 0) fail(`paramTableHash: entry ${i} has no name`);
    if (!Array.isArray(e.shape) || !e.shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
      fail(`paramTableHash: '${e.name}' shape must be an array of non-negative integers`);
    }
    return [e.name, [...e.shape]];
  });
  return createHash('sha256').update(JSON.stringify(canonical)).digest('hex');
}
