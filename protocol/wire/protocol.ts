// The gan-dist wire protocol, imported by the coordinator, workers and monitors: its version, the
// one union of messages they exchange, and the validation every received frame goes through.
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
// In memory a message is `{type, ...fields}` and, for the types that carry tensors, `tensors`
// (name -> flat typed array) and `shapes` (name -> shape). The fields of `hello` and `reject` are
// frozen across protocol versions: a peer of another version can still say hello and be told why
// it is turned away, with both versions named.

import { createHash } from 'node:crypto';
import { GanDistError } from '../errors.ts';
import { workerModelConfigProblem, type WorkerModelConfig } from '../config.ts';
import {
  PREAMBLE_BYTES,
  describe,
  type FrameChunks,
  firstNonFinite,
  isPlainObject,
  protocolError,
  tableFor,
  type Dtype,
  type FrameLimits,
  type OutgoingTensor,
  type TypedArray,
} from './framing.ts';
import { encodeFrame, frameChunks } from './frame-encoder.ts';
import { parseFrame, tensorData } from './frame-decoder.ts';
import { WIRE_DTYPES, isHalfDtype, type WireDtype } from './wire-dtype.ts';

export {
  allFinite,
  firstNonFinite,
  type Dtype,
  type FrameChunks,
  type FrameLimits,
  type TypedArray,
} from './framing.ts';
export type { WireDtype } from './wire-dtype.ts';

/** 2: bfloat16 and float16 tensors, welcome.wireDtype. */
export const PROTOCOL_VERSION = 2;

export type Role = 'worker' | 'monitor';
export type Shape = readonly number[];

// --- handshake -------------------------------------------------------------------------------

export interface HelloMessage {
  type: 'hello';
  protocolVersion: number;
  ganDistVersion: string;
  backend: string;
  device: string;
  /** 32 random bytes, hex. */
  nonce: string;
  role: Role;
  /**
   * A worker's rank as its launcher numbered it (SLURM_PROCID, a Kubernetes completion index,
   * GAN_DIST_RANK), for logs and events only; absent when nothing numbered it.
   */
  rank?: number;
}
export interface ChallengeMessage {
  type: 'challenge';
  nonce: string;
  proof: string;
}
export interface ProofMessage {
  type: 'proof';
  proof: string;
}
export interface WelcomeMessage {
  type: 'welcome';
  runId: string;
  workerId: number;
  modelConfig: WorkerModelConfig;
  seed: number;
  /** The dtype of the weights this worker is sent and the gradients it sends; absent: float32. */
  wireDtype?: WireDtype;
}
export interface ReadyMessage {
  type: 'ready';
  paramTableHash: string;
}
export interface RejectMessage {
  type: 'reject';
  reason: string;
  code: string;
}

// --- training --------------------------------------------------------------------------------

export interface WeightsMessage {
  type: 'weights';
  version: number;
  iteration: number;
  /** G and D parameters and BatchNorm running statistics, by name. */
  tensors: Record<string, Float32Array>;
  shapes: Record<string, Shape>;
}
export interface ShardMessage {
  type: 'shard';
  iteration: number;
  weightsVersion: number;
  shardId: number;
  rowStart: number;
  rowCount: number;
  /** images uint8 [n,H,W,3]; z float32 [n,latent]; flip uint8 [n] of 0/1; n = rowCount. */
  tensors: { images: Uint8Array; z: Float32Array; flip: Uint8Array };
  shapes: { images: Shape; z: Shape; flip: Shape };
}
export interface Timings {
  computeMs: number;
  [phase: string]: number;
}
export interface GradientsMessage {
  type: 'gradients';
  iteration: number;
  shardId: number;
  weightsVersion: number;
  n: number;
  scoreG: number;
  scoreD: number;
  lossG: number;
  lossD: number;
  timings: Timings;
  /** One gradient per parameter, plus each BatchNorm layer's per-channel sum and sum of squares. */
  tensors: Record<string, Float32Array>;
  shapes: Record<string, Shape>;
}
/**
 * What a worker sends instead of `gradients` when its shard gave NaN or Infinity: `gradients`
 * must be finite (a non-finite one costs the sender its connection), yet the coordinator needs
 * to hear of it to recompute the shard elsewhere or conclude the run diverged.
 */
export interface GradientsNonFiniteMessage {
  type: 'gradientsNonFinite';
  iteration: number;
  shardId: number;
  weightsVersion: number;
  n: number;
  /** The tensors that held a non-finite value (at most 4096 names). */
  tensorNames: string[];
}
export interface SampleRequestMessage {
  type: 'sampleRequest';
  iteration: number;
  tensors: { z: Float32Array };
  shapes: { z: Shape };
}
export interface SampleMessage {
  type: 'sample';
  iteration: number;
  /** G(z) in inference mode, float32 [k,H,W,3] in [-1,1]; not checked for finiteness. */
  tensors: { images: Float32Array };
  shapes: { images: Shape };
}
// --- shared-memory transport (protocol/wire/shm.ts): control messages only ----------------------

/** Worker -> coordinator: it was launched with this region and can read and write it. */
export interface ShmAttachMessage {
  type: 'shmAttach';
  region: string;
}
/** Coordinator -> worker: from now on weights and gradients travel through these files. */
export interface ShmReadyMessage {
  type: 'shmReady';
  weightsFile: string;
  gradientsFile: string;
}
/** Coordinator -> worker: weights `version` is committed in the weights file as frame `seq`. */
export interface WeightsRefMessage {
  type: 'weightsRef';
  version: number;
  iteration: number;
  seq: number;
  byteLength: number;
}
/** Worker -> coordinator: the gradients of a shard are committed in its own file as frame `seq`. */
export interface GradientsRefMessage {
  type: 'gradientsRef';
  iteration: number;
  shardId: number;
  weightsVersion: number;
  n: number;
  seq: number;
  byteLength: number;
}
export interface HeartbeatMessage {
  type: 'heartbeat';
  t: number;
}
export interface StopMessage {
  type: 'stop';
  reason: string;
}
/** A worker leaving on purpose (SIGTERM, SIGINT): whatever shard it holds is reassigned at once. */
export interface LeaveMessage {
  type: 'leave';
  reason: string;
}
export interface ErrorMessage {
  type: 'error';
  code: string;
  message: string;
}
export interface LogMessage {
  type: 'log';
  line: Record<string, unknown>;
}

export type Message =
  | HelloMessage
  | ChallengeMessage
  | ProofMessage
  | WelcomeMessage
  | ReadyMessage
  | RejectMessage
  | WeightsMessage
  | ShardMessage
  | GradientsMessage
  | GradientsNonFiniteMessage
  | SampleRequestMessage
  | SampleMessage
  | ShmAttachMessage
  | ShmReadyMessage
  | WeightsRefMessage
  | GradientsRefMessage
  | HeartbeatMessage
  | StopMessage
  | LeaveMessage
  | ErrorMessage
  | LogMessage;
export type MessageType = Message['type'];
export type MessageOf<T extends MessageType> = Extract<Message, { type: T }>;

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

// --- validation ------------------------------------------------------------------------------

type Check = (v: unknown, path: string) => void;

interface TableRow {
  name: string;
  dtype: Dtype;
  shape: Shape;
}

interface MessageSpec {
  fields: Record<string, Check>;
  /** Fields a message may leave out. */
  optional?: Record<string, Check>;
  /** Checks the tensor table (names, dtypes, shapes) against the already checked fields. */
  tensors: (rows: readonly TableRow[], fields: Record<string, unknown>) => void;
  /** Float tensors whose values must all be finite: every one, or these names. */
  finite: 'all' | readonly string[];
  /** Checks over tensor values beyond finiteness. */
  values?: (tensors: Record<string, TypedArray>) => void;
}

function fail(reason: string): never {
  throw protocolError(reason);
}

const int =
  (min: number, max = Number.MAX_SAFE_INTEGER): Check =>
  (v, path) => {
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < min || v > max) {
      fail(`${path} must be an integer from ${min} to ${max}, got ${describe(v)}`);
    }
  };

const finite =
  (min = -Number.MAX_VALUE, max = Number.MAX_VALUE): Check =>
  (v, path) => {
    if (typeof v !== 'number' || !Number.isFinite(v)) fail(`${path} must be a finite number, got ${describe(v)}`);
    if (v < min || v > max) fail(`${path} must be from ${min} to ${max}, got ${v}`);
  };

const text =
  (maxLength: number, minLength = 0): Check =>
  (v, path) => {
    if (typeof v !== 'string') fail(`${path} must be a string, got ${describe(v)}`);
    if (v.length < minLength || v.length > maxLength) {
      fail(`${path} must be ${minLength}-${maxLength} characters, got ${v.length}`);
    }
  };

const HEX64 = /^[0-9a-f]{64}$/;
const hex64: Check = (v, path) => {
  if (typeof v !== 'string' || !HEX64.test(v)) fail(`${path} must be 64 lowercase hex digits, got ${describe(v)}`);
};

const oneOf =
  (...values: string[]): Check =>
  (v, path) => {
    if (typeof v !== 'string' || !values.includes(v))
      fail(`${path} must be one of ${values.join(', ')}, got ${describe(v)}`);
  };

const object =
  (maxKeys: number): Check =>
  (v, path) => {
    if (!isPlainObject(v)) fail(`${path} must be an object, got ${describe(v)}`);
    const n = Object.keys(v).length;
    if (n > maxKeys) fail(`${path} has ${n} keys; at most ${maxKeys} are allowed`);
  };

const workerModel: Check = (v, path) => {
  object(8)(v, path);
  const problem = workerModelConfigProblem(v as Record<string, unknown>);
  if (problem) fail(`${path}${problem}`);
};

const ERROR_CODE = /^GAN_DIST_E_[A-Z_]{1,40}$/;
const errorCode: Check = (v, path) => {
  if (typeof v !== 'string' || !ERROR_CODE.test(v)) fail(`${path} must be a GAN_DIST_E_... code, got ${describe(v)}`);
};

const TIMING_NAME = /^[A-Za-z][A-Za-z0-9_]{0,63}$/;
const timings: Check = (v, path) => {
  object(32)(v, path);
  const t = v as Record<string, unknown>;
  if (!Object.hasOwn(t, 'computeMs')) fail(`${path}.computeMs is missing`);
  for (const [k, ms] of Object.entries(t)) {
    if (!TIMING_NAME.test(k)) fail(`${path} key ${describe(k)} must be an identifier`);
    finite(0)(ms, `${path}.${k}`);
  }
};

const nameList =
  (max: number): Check =>
  (v, path) => {
    if (!Array.isArray(v)) fail(`${path} must be an array, got ${describe(v)}`);
    if (v.length > max) fail(`${path} has ${v.length} entries; at most ${max} are allowed`);
    for (const [i, s] of v.entries()) text(200, 1)(s, `${path}[${i}]`);
  };

const uint = int(0);

/** An absolute path of plain characters (a shared-memory region or one of its files). */
const SHM_PATH = /^\/[A-Za-z0-9_./-]{1,255}$/;
const shmPath: Check = (v, path) => {
  if (typeof v !== 'string' || !SHM_PATH.test(v) || v.split('/').includes('..'))
    fail(`${path} must be an absolute path without '..', got ${describe(v)}`);
};

function noTensors(rows: readonly TableRow[]): void {
  if (rows.length > 0) fail(`this message carries no tensors, got ${rows.length}`);
}

/** Weights and gradients: float32, or the lighter wire's bfloat16 and float16. */
function namedFloats(rows: readonly TableRow[]): void {
  if (rows.length === 0) fail('needs at least one tensor, got none');
  for (const r of rows) {
    if (r.dtype !== 'float32' && !isHalfDtype(r.dtype))
      fail(`tensor '${r.name}' must be float32, bfloat16 or float16, got ${r.dtype}`);
  }
}

/** Exactly these tensors, each of the dtype and rank given; returns them by name. */
function exactTensors(rows: readonly TableRow[], want: Record<string, [Dtype, number]>): Record<string, Shape> {
  const names = Object.keys(want);
  const got = new Map(rows.map((r) => [r.name, r]));
  for (const r of rows)
    if (!Object.hasOwn(want, r.name)) fail(`unexpected tensor '${r.name}'; expected ${names.join(', ')}`);
  const shapes: Record<string, Shape> = {};
  for (const name of names) {
    const r = got.get(name);
    if (r === undefined) fail(`tensor '${name}' is missing`);
    const [dtype, rank] = want[name];
    if (r.dtype !== dtype) fail(`tensor '${name}' must be ${dtype}, got ${r.dtype}`);
    if (r.shape.length !== rank) fail(`tensor '${name}' must have rank ${rank}, got shape [${r.shape.join(',')}]`);
    shapes[name] = r.shape;
  }
  return shapes;
}

function shape(name: string, s: Shape, ok: boolean, want: string): void {
  if (!ok) fail(`tensor '${name}' must have shape ${want}, got [${s.join(',')}]`);
}

function shardTensors(rows: readonly TableRow[], fields: Record<string, unknown>): void {
  const s = exactTensors(rows, { images: ['uint8', 4], z: ['float32', 2], flip: ['uint8', 1] });
  const n = fields.rowCount as number;
  const [ni, h, w, c] = s.images;
  shape('images', s.images, ni === n && h >= 1 && w >= 1 && c === 3, `[rowCount=${n}, H, W, 3]`);
  shape('z', s.z, s.z[0] === n && s.z[1] >= 1, `[rowCount=${n}, latent]`);
  shape('flip', s.flip, s.flip[0] === n, `[rowCount=${n}]`);
}

function sampleRequestTensors(rows: readonly TableRow[]): void {
  const s = exactTensors(rows, { z: ['float32', 2] });
  shape('z', s.z, s.z[0] >= 1 && s.z[1] >= 1, '[k>=1, latent>=1]');
}

function sampleTensors(rows: readonly TableRow[]): void {
  const s = exactTensors(rows, { images: ['float32', 4] });
  const [k, h, w, c] = s.images;
  shape('images', s.images, k >= 1 && h >= 1 && w >= 1 && c === 3, '[k>=1, H, W, 3]');
}

function flipIsBinary(tensors: Record<string, TypedArray>): void {
  const flip = tensors.flip;
  for (let i = 0; i < flip.length; i++) {
    if (flip[i] > 1) fail(`tensor 'flip' must hold 0 or 1, got ${flip[i]} at row ${i}`);
  }
}

const SPECS = new Map<string, MessageSpec>([
  [
    'hello',
    {
      fields: {
        protocolVersion: int(1, 0xffff),
        ganDistVersion: text(64, 1),
        backend: text(64, 1),
        device: text(256),
        nonce: hex64,
        role: oneOf('worker', 'monitor'),
      },
      optional: { rank: int(0, 9_999_999) },
      tensors: noTensors,
      finite: [],
    },
  ],
  ['challenge', { fields: { nonce: hex64, proof: hex64 }, tensors: noTensors, finite: [] }],
  ['proof', { fields: { proof: hex64 }, tensors: noTensors, finite: [] }],
  [
    'welcome',
    {
      fields: { runId: text(128, 1), workerId: uint, modelConfig: workerModel, seed: uint },
      optional: { wireDtype: oneOf(...WIRE_DTYPES) },
      tensors: noTensors,
      finite: [],
    },
  ],
  ['ready', { fields: { paramTableHash: hex64 }, tensors: noTensors, finite: [] }],
  ['reject', { fields: { reason: text(2048, 1), code: errorCode }, tensors: noTensors, finite: [] }],
  ['weights', { fields: { version: uint, iteration: uint }, tensors: namedFloats, finite: 'all' }],
  [
    'shard',
    {
      fields: { iteration: uint, weightsVersion: uint, shardId: uint, rowStart: uint, rowCount: int(1) },
      tensors: shardTensors,
      finite: ['z'],
      values: flipIsBinary,
    },
  ],
  [
    'gradients',
    {
      fields: {
        iteration: uint,
        shardId: uint,
        weightsVersion: uint,
        n: int(1),
        scoreG: finite(0, 1),
        scoreD: finite(0, 1),
        lossG: finite(0),
        lossD: finite(0),
        timings,
      },
      tensors: namedFloats,
      finite: 'all',
    },
  ],
  [
    'gradientsNonFinite',
    {
      fields: { iteration: uint, shardId: uint, weightsVersion: uint, n: int(1), tensorNames: nameList(4096) },
      tensors: noTensors,
      finite: [],
    },
  ],
  ['sampleRequest', { fields: { iteration: uint }, tensors: sampleRequestTensors, finite: ['z'] }],
  ['sample', { fields: { iteration: uint }, tensors: sampleTensors, finite: [] }],
  ['shmAttach', { fields: { region: shmPath }, tensors: noTensors, finite: [] }],
  ['shmReady', { fields: { weightsFile: shmPath, gradientsFile: shmPath }, tensors: noTensors, finite: [] }],
  [
    'weightsRef',
    { fields: { version: uint, iteration: uint, seq: int(1), byteLength: int(1) }, tensors: noTensors, finite: [] },
  ],
  [
    'gradientsRef',
    {
      fields: { iteration: uint, shardId: uint, weightsVersion: uint, n: int(1), seq: int(1), byteLength: int(1) },
      tensors: noTensors,
      finite: [],
    },
  ],
  ['heartbeat', { fields: { t: finite(0) }, tensors: noTensors, finite: [] }],
  ['stop', { fields: { reason: text(2048) }, tensors: noTensors, finite: [] }],
  ['leave', { fields: { reason: text(2048) }, tensors: noTensors, finite: [] }],
  ['error', { fields: { code: errorCode, message: text(4096) }, tensors: noTensors, finite: [] }],
  ['log', { fields: { line: object(256) }, tensors: noTensors, finite: [] }],
]);

export const MESSAGE_TYPES: readonly MessageType[] = [...SPECS.keys()] as MessageType[];

/** Message types whose fields never change, so peers of different versions can still talk. */
const VERSION_FROZEN = new Set(['hello', 'reject']);

function specOf(type: unknown): MessageSpec {
  const spec = typeof type === 'string' ? SPECS.get(type) : undefined;
  if (spec === undefined) fail(`unknown message type ${describe(type)}`);
  return spec;
}

/** Wraps a protocol error so it names the message it came from. */
function within<T>(type: string, run: () => T): T {
  try {
    return run();
  } catch (err) {
    if (err instanceof GanDistError && !err.message.startsWith(type)) err.message = `${type}: ${err.message}`;
    throw err;
  }
}

function checkFields(type: string, spec: MessageSpec, fields: Record<string, unknown>, allowUnknown: boolean): void {
  for (const [name, check] of Object.entries(spec.fields)) {
    if (!Object.hasOwn(fields, name)) fail(`${type}.${name} is missing`);
    check(fields[name], `${type}.${name}`);
  }
  for (const [name, check] of Object.entries(spec.optional ?? {})) {
    if (Object.hasOwn(fields, name)) check(fields[name], `${type}.${name}`);
  }
  if (allowUnknown) return;
  for (const name of Object.keys(fields)) {
    if (!Object.hasOwn(spec.fields, name) && !Object.hasOwn(spec.optional ?? {}, name))
      fail(`${type} has unknown field ${describe(name)}`);
  }
}

/** `decoded`: tensors that arrived in a 16-bit form, whose decoding already refused non-finite values. */
function checkValues(spec: MessageSpec, tensors: Record<string, TypedArray>, decoded?: ReadonlySet<string>): void {
  const names = spec.finite === 'all' ? Object.keys(tensors) : spec.finite;
  for (const name of names) {
    const t = tensors[name];
    if (!(t instanceof Float32Array) || decoded?.has(name)) continue;
    const i = firstNonFinite(t);
    if (i >= 0) fail(`tensor '${name}' holds a non-finite value (${t[i]}) at index ${i}`);
  }
  spec.values?.(tensors);
}

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
