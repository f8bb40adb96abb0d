// The lighter wire for remote workers: float32 tensors sent as bfloat16, or as float16 with a
// per-tensor power-of-two scale, and turned back into float32 on receipt.
//
// The loops read and write float32 bits through Uint32Array views with integer arithmetic and
// allocate nothing per element: they run over 9.45 M values per weights or gradients message.

import { GanDistError } from '../errors.ts';

export const WIRE_DTYPES = ['float32', 'bfloat16', 'float16'] as const;
export type WireDtype = (typeof WIRE_DTYPES)[number];
/** The 16-bit forms: two bytes an element, raw uint16 words on the wire. */
export type HalfDtype = Exclude<WireDtype, 'float32'>;

export function isHalfDtype(v: unknown): v is HalfDtype {
  return v === 'bfloat16' || v === 'float16';
}

/** Checks a --wire-dtype value (flag or config.json), naming the flag and the choices. */
export function parseWireDtype(raw: unknown, source = '--wire-dtype'): WireDtype {
  if (typeof raw === 'string' && (WIRE_DTYPES as readonly string[]).includes(raw)) return raw as WireDtype;
  throw new GanDistError(
    'GAN_DIST_E_CONFIG',
    `${source}: ${JSON.stringify(raw)} is not a wire dtype`,
    `use one of ${WIRE_DTYPES.join(', ')} (float32 is exact; the 16-bit ones halve the bytes remote workers move)`,
  );
}

// Int32Array, not Uint32Array, views: V8 keeps int32 values in registers, while a uint32 of 2^31
// or more (every negative float) becomes a double and the loop runs several times slower.
const i32 = (a: Float32Array) => new Int32Array(a.buffer, a.byteOffset, a.length);

// --- bfloat16: the top 16 bits of a float32 ---------------------------------------------------

/**
 * float32 -> bfloat16, rounding to nearest even. Returns the index of the first value that is
 * not finite or rounds beyond bfloat16's largest finite value (about 3.39e38), else -1.
 */
export function encodeBfloat16(src: Float32Array, dst: Uint16Array): number {
  const bits = i32(src);
  const n = bits.length;
  for (let i = 0; i < n; i++) {
    const f = bits[i];
    const a = f & 0x7fffffff;
    // From 0x7f7f8000 up a value rounds to infinity (or is one, or NaN).
    if (a >= 0x7f7f8000) return i;
    // Adding 0x7fff plus the lowest kept bit rounds ties to even; a carry moves into the exponent.
    dst[i] = ((f >> 16) & 0x8000) | ((a + 0x7fff + ((a >> 16) & 1)) >> 16);
  }
  return -1;
}

/** bfloat16 -> float32 (exact). Returns the index of the first NaN or infinity, else -1. */
export function decodeBfloat16(src: Uint16Array, dst: Float32Array): number {
  const out = i32(dst);
  const n = src.length;
  for (let i = 0; i < n; i++) {
    const h = src[i];
    if ((h & 0x7f80) === 0x7f80) return i;
    out[i] = h << 16;
  }
  return -1;
}

// --- float16 with a scale ---------------------------------------------------------------------

/** Largest and smallest power-of-two exponents a float16 scale may have (see float16Scale). */
export const FLOAT16_SCALE_EXP_MAX = 113;
export const FLOAT16_SCALE_EXP_MIN = -163;

/**
 * The scale for a tensor: a power of two that maps its largest |x| into [2^14, 2^15), within a
 * factor of 2-4 of float16's top (65504), so the tensor uses float16's whole precision and small
 * gradients stay above its denormals. All zeros get 1. NaN when the tensor holds a non-finite value.
 */
export function float16Scale(src: Float32Array): number {
  const bits = i32(src);
  let max = 0;
  for (let i = 0; i < bits.length; i++) {
    const a = bits[i] & 0x7fffffff;
    if (a > max) max = a;
  }
  if (max >= 0x7f800000) return NaN;
  if (max === 0) return 1;
  // floor(log2 max|x|): from the exponent field, or from the leading bit of a denormal's mantissa.
  const exp = max >>> 23;
  const e = exp > 0 ? exp - 127 : 31 - Math.clz32(max) - 149;
  return 2 ** (e - 14);
}

/** True for a scale float16Scale can produce: a power of two from 2^-163 to 2^113. */
export function isValidFloat16Scale(s: unknown): s is number {
  if (typeof s !== 'number' || !Number.isFinite(s) || s <= 0) return false;
  const e = Math.round(Math.log2(s));
  return e >= FLOAT16_SCALE_EXP_MIN && e <= FLOAT16_SCALE_EXP_MAX && 2 ** e === s;
}

const CHUNK = 4096;
const scaled = new Float32Array(CHUNK);
const scaledBits = new Int32Array(scaled.buffer);
const one = new Float32Array(1);
const oneBits = new Int32Array(one.buffer);

/**
 * float32 -> float16 of x / scale, rounding to nearest even. `scale` must come from float16Scale
 * over the same values (they are then finite and |x / scale| < 2^15, far from float16's overflow).
 */
export function encodeFloat16(src: Float32Array, scale: number, dst: Uint16Array): void {
  const e = Math.round(Math.log2(scale));
  // Dividing by 2^e subtracts e from a float32's exponent field. That holds for every x whose
  // quotient is a normal float16 (|x| >= 2^(e-14)) when that bound is itself a normal float32:
  // any tensor whose largest |x| is above about 1e-29.
  const threshold = 0x38800000 + e * 0x800000;
  if (threshold < 0x00800000) {
    encodeFloat16Scaled(src, scale, dst);
    return;
  }
  const shift = e * 0x800000;
  const inv = 1 / scale;
  const bits = i32(src);
  const n = bits.length;
  for (let i = 0; i < n; i++) {
    const f = bits[i];
    const a = f & 0x7fffffff;
    let h = 0;
    if (a >= threshold) {
      // A normal float16: rebias the exponent (127 - e -> 15) and round the 23-bit mantissa to 10.
      const y = a - shift;
      h = (y - 0x38000000 + 0xfff + ((y >> 13) & 1)) >> 13;
    } else if (a !== 0) {
      // A float16 denormal: adding 0.5 makes the float32 store round at float16's denormal step
      // (2^-24); what is left above 0.5 is the float16 mantissa. (x / scale is exact in a double.)
      one[0] = Math.abs(src[i]) * inv + 0.5;
      h = oneBits[0] - 0x3f000000;
    }
    dst[i] = ((f >> 16) & 0x8000) | h;
  }
}

/** encodeFloat16 for tensors so small that x / scale may start from a float32 denormal. */
function encodeFloat16Scaled(src: Float32Array, scale: number, dst: Uint16Array): void {
  const inv = 1 / scale;
  const n = src.length;
  for (let base = 0; base < n; base += CHUNK) {
    const m = Math.min(CHUNK, n - base);
    for (let j = 0; j < m; j++) scaled[j] = src[base + j] * inv;
    for (let j = 0; j < m; j++) {
      const f = scaledBits[j];
      const a = f & 0x7fffffff;
      let h: number;
      if (a >= 0x38800000) {
        h = (a - 0x38000000 + 0xfff + ((a >> 13) & 1)) >> 13;
      } else {
        one[0] = Math.abs(scaled[j]) + 0.5;
        h = oneBits[0] - 0x3f000000;
      }
      dst[base + j] = ((f >> 16) & 0x8000) | h;
    }
  }
}

let halfTable: Float32Array | undefined;

/** float16 bits -> float32 value, for all 65536 patterns (NaN for infinities and NaNs). */
function halfToFloat(): Float32Array {
  if (halfTable) return halfTable;
  const t = new Float32Array(65536);
  for (let h = 0; h < 65536; h++) {
    const exp = (h >>> 10) & 0x1f;
    const mant = h & 0x3ff;
    const v = exp === 0x1f ? NaN : exp === 0 ? mant * 2 ** -24 : (1024 + mant) * 2 ** (exp - 25);
    t[h] = h & 0x8000 ? -v : v;
  }
  halfTable = t;
  return t;
}

/** float16 -> float32 times `scale`. Returns the index of the first NaN or infinity, else -1. */
export function decodeFloat16(src: Uint16Array, scale: number, dst: Float32Array): number {
  const t = halfToFloat();
  const n = src.length;
  const e = Math.round(Math.log2(scale));
  if (e < -111 || e > 111) {
    // Products may leave float32's normal range: multiply (and check what comes out).
    for (let i = 0; i < n; i++) {
      const h = src[i];
      if ((h & 0x7c00) === 0x7c00) return i;
      dst[i] = t[h] * scale;
    }
    return firstInfinite(dst);
  }
  // A normal float16 times 2^e is a normal float32: shift its bits into place and add e to the
  // rebiased exponent (15 -> 127). Denormals, rarer, go through the table.
  const bias = (112 + e) * 0x800000;
  const out = i32(dst);
  for (let i = 0; i < n; i++) {
    const h = src[i];
    const m = h & 0x7fff;
    if (m >= 0x0400) {
      if (m >= 0x7c00) return i;
      out[i] = ((h & 0x8000) << 16) | ((m << 13) + bias);
    } else {
      dst[i] = t[h] * scale;
    }
  }
  return -1;
}

function firstInfinite(a: Float32Array): number {
  for (let i = 0; i < a.length; i++) if (a[i] === Infinity || a[i] === -Infinity) return i;
  return -1;
}
