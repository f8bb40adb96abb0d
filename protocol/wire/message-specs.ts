// What each message may hold, checked on every frame received and every message sent: the fields
// and their ranges, the tensors and their dtypes and shapes, and which values must be finite.

import { workerModelConfigProblem } from '../config.ts';
import { GanDistError } from '../errors.ts';
import { describe, firstNonFinite, isPlainObject, protocolError, type Dtype, type TypedArray } from './framing.ts';
import type { MessageType, Shape } from './messages.ts';
import { isHalfDtype, WIRE_DTYPES } from './wire-dtype.ts';
import { MAX_PARTS } from './parts.ts';

// --- validation ------------------------------------------------------------------------------

type Check = (v: unknown, path: string) => void;

export interface TableRow {
  name: string;
  dtype: Dtype;
  shape: Shape;
}

export interface MessageSpec {
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

export function fail(reason: string): never {
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

/** The most local workers one node may say it has (hello.capacity). */
export const MAX_NODE_CAPACITY = 1024;

/** A node's list of its local workers: at most MAX_NODE_CAPACITY, each a small object. */
const localWorkers: Check = (v, path) => {
  if (!Array.isArray(v)) fail(`${path} must be an array, got ${describe(v)}`);
  if (v.length > MAX_NODE_CAPACITY) fail(`${path} lists ${v.length} workers; at most ${MAX_NODE_CAPACITY} are allowed`);
  v.forEach((w, i) => {
    const at = `${path}[${i}]`;
    if (!isPlainObject(w)) fail(`${at} must be an object, got ${describe(w)}`);
    const checks: Record<string, Check> = {
      rank: int(0, MAX_NODE_CAPACITY),
      device: text(256),
      backend: text(64),
      state: oneOf('starting', 'joined', 'left'),
    };
    for (const [name, check] of Object.entries(checks)) check(w[name], `${at}.${name}`);
    if (w.imagesPerSec !== undefined) finite(0)(w.imagesPerSec, `${at}.imagesPerSec`);
    for (const name of Object.keys(w))
      if (!Object.hasOwn(checks, name) && name !== 'imagesPerSec') fail(`${at} has unknown field ${describe(name)}`);
  });
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

export function noTensors(rows: readonly TableRow[]): void {
  if (rows.length > 0) fail(`this message carries no tensors, got ${rows.length}`);
}

/** Weights and gradients over a socket may come in parts (parts.ts). */
const inParts = { part: int(0, MAX_PARTS - 1), parts: int(2, MAX_PARTS) };

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

/** The widest BatchNorm layer a barrier message may carry (8nf channels at the largest --filters). */
export const MAX_BN_CHANNELS = 8 * 1024;

/** A barrier's two per-channel float32 vectors, of one length. */
function bnBarrierTensors(rows: readonly TableRow[]): void {
  const s = exactTensors(rows, { a: ['float32', 1], b: ['float32', 1] });
  const c = s.a[0];
  shape('a', s.a, c >= 1 && c <= MAX_BN_CHANNELS, `[1..${MAX_BN_CHANNELS}]`);
  shape('b', s.b, s.b[0] === c, `[${c}] (as a)`);
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
      optional: { rank: int(0, 9_999_999), capacity: int(1, MAX_NODE_CAPACITY) },
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
      optional: { wireDtype: oneOf(...WIRE_DTYPES), batchnorm: oneOf('sync') },
      tensors: noTensors,
      finite: [],
    },
  ],
  ['ready', { fields: { paramTableHash: hex64 }, tensors: noTensors, finite: [] }],
  ['reject', { fields: { reason: text(2048, 1), code: errorCode }, tensors: noTensors, finite: [] }],
  ['weights', { fields: { version: uint, iteration: uint }, optional: inParts, tensors: namedFloats, finite: 'all' }],
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
      optional: inParts,
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
  [
    'bnPart',
    {
      fields: {
        iteration: uint,
        shardId: uint,
        barrier: int(0, 255),
        key: text(64, 1),
        kind: oneOf('moments', 'gradSums'),
        count: int(1),
      },
      tensors: bnBarrierTensors,
      finite: 'all',
    },
  ],
  [
    'bnResult',
    {
      fields: { iteration: uint, shardId: uint, barrier: int(0, 255), count: int(1) },
      tensors: bnBarrierTensors,
      finite: 'all',
    },
  ],
  ['bnAbort', { fields: { iteration: uint, shardId: uint }, tensors: noTensors, finite: [] }],
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
  ['nodeWorkers', { fields: { workers: localWorkers }, tensors: noTensors, finite: [] }],
  ['heartbeat', { fields: { t: finite(0) }, tensors: noTensors, finite: [] }],
  ['stop', { fields: { reason: text(2048) }, tensors: noTensors, finite: [] }],
  ['leave', { fields: { reason: text(2048) }, tensors: noTensors, finite: [] }],
  ['error', { fields: { code: errorCode, message: text(4096) }, tensors: noTensors, finite: [] }],
  ['log', { fields: { line: object(256) }, tensors: noTensors, finite: [] }],
]);

export const MESSAGE_TYPES: readonly MessageType[] = [...SPECS.keys()] as MessageType[];

/** Message types whose fields never change, so peers of different versions can still talk. */
export const VERSION_FROZEN = new Set(['hello', 'reject']);

export function specOf(type: unknown): MessageSpec {
  const spec = typeof type === 'string' ? SPECS.get(type) : undefined;
  if (spec === undefined) fail(`unknown message type ${describe(type)}`);
  return spec;
}

/** Wraps a protocol error so it names the message it came from. */
export function within<T>(type: string, run: () => T): T {
  try {
    return run();
  } catch (err) {
    if (err instanceof GanDistError && !err.message.startsWith(type)) err.message = `${type}: ${err.message}`;
    throw err;
  }
}

export function checkFields(
  type: string,
  spec: MessageSpec,
  fields: Record<string, unknown>,
  allowUnknown: boolean,
): void {
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
export function checkValues(
  spec: MessageSpec,
  tensors: Record<string, TypedArray>,
  decoded?: ReadonlySet<string>,
): void {
  const names = spec.finite === 'all' ? Object.keys(tensors) : spec.finite;
  for (const name of names) {
    const t = tensors[name];
    if (!(t instanceof Float32Array) || decoded?.has(name)) continue;
    const i = firstNonFinite(t);
    if (i >= 0) fail(`tensor '${name}' holds a non-finite value (${t[i]}) at index ${i}`);
  }
  spec.values?.(tensors);
}
