// A shared WebAssembly memory (the arena) for the coordinator's optimizer state (weights, Adam's
// moments, gradient sums) and shared-memory receive buffers, and the SIMD kernels of simd.wat
// over it: the finiteness check of every received gradient, the weighted add into the sums, and
// Adam. On arrays in the arena they run at memory speed; on any other array the callers
// (framing.ts firstNonFinite, reduce.ts addScaled, adam.ts meanAdamStep) run their JavaScript
// loops, which compute the same floats.
//
// Measured on 9.45 M floats (the full model) on this 2-core machine, medians of 5-7: the add
// 5-6 ms against 10-11 ms in JavaScript, the check 3.3-3.6 ms against 8.4-10 ms, Adam 11-15 ms
// against 83-119 ms. The add is float64 per lane, as the JavaScript loop it replaced, so its
// floats did not change; a float64x2 Adam was no faster than JavaScript, so Adam is float32.
// `gan-dist bench adam` and `gan-dist bench scaling` measure them in place.
//
// Optimizer threads (optimizer-thread.ts) adopt the main thread's arena: the memory is shared,
// so their kernels work on the same state.

import { SIMD_WASM_BASE64 } from './simd-wasm.ts';

/** Adam's per-step constants, rounded to float32 as the kernels take them. */
export interface AdamConstants {
  /** 1 / rows: the mean of the summed gradients. */
  inv: number;
  b1: number;
  b2: number;
  /** 1 - b1 and 1 - b2. */
  a1: number;
  a2: number;
  /** The step's learning rate with the bias correction folded in: lr sqrt(1 - b2^t) / (1 - b1^t). */
  lrt: number;
  eps: number;
}

const PAGE_BYTES = 65536;
/** 4 GiB, all a 32-bit memory can address; pages are committed only as the arena grows. */
const MAX_PAGES = 65536;
/** Blocks start on a cache line, so every dtype's view is aligned. */
const ALIGN = 64;
/** The scratch block that arrays outside the arena are checked through, a chunk at a time. */
const SCRATCH_FLOATS = 16384;

interface Kernels {
  nonFinite(p: number, n16: number): number;
  addScaled(sum: number, g: number, n: number, n4: number, first: number): void;
  addScaled2(sum: number, g0: number, n0: number, g1: number, n1: number, n4: number, first: number): void;
  addScaled4(
    sum: number,
    g0: number,
    n0: number,
    g1: number,
    n1: number,
    g2: number,
    n2: number,
    g3: number,
    n3: number,
    n4: number,
    first: number,
  ): void;
  weightedMean(out: number, table: number, k: number, total: number, n4: number): void;
  adam(
    w: number,
    s: number,
    m: number,
    v: number,
    n4: number,
    inv: number,
    b1: number,
    b2: number,
    a1: number,
    a2: number,
    lrt: number,
    eps: number,
  ): void;
}

let compiled: WebAssembly.Module | undefined;

/** A block of the arena: byte address and size. */
export interface ArenaBlock {
  readonly ptr: number;
  readonly bytes: number;
}

export class SimdArena {
  readonly memory: WebAssembly.Memory;
  private readonly kernels: Kernels;
  /** Every buffer object the memory has had: views over any of them address the arena. */
  private readonly buffers = new WeakSet<ArrayBufferLike>();
  /** Address 0 stays unused. */
  private top = ALIGN;
  /** Freed blocks by size: the coordinator frees and allocates the same few sizes over and over. */
  private readonly freed = new Map<number, number[]>();

  /** A new arena, or with `adopt` another thread's (this thread then only reads and writes it, never allocates). */
  constructor(adopt?: WebAssembly.Memory) {
    this.memory = adopt ?? new WebAssembly.Memory({ initial: 1, maximum: MAX_PAGES, shared: true });
    this.adopted = adopt !== undefined;
    compiled ??= new WebAssembly.Module(Buffer.from(SIMD_WASM_BASE64, 'base64'));
    this.kernels = new WebAssembly.Instance(compiled, { env: { memory: this.memory } }).exports as unknown as Kernels;
    this.buffers.add(this.memory.buffer);
  }

  private readonly adopted: boolean;

  /** Bytes of memory the arena holds (committed pages, used or free). */
  get size(): number {
    return this.memory.buffer.byteLength;
  }

  /** A block of `bytes`, or undefined when the arena cannot grow that far (callers fall back to plain memory). */
  alloc(bytes: number): ArenaBlock | undefined {
    if (this.adopted) throw new Error('an adopted arena belongs to the thread that made it: allocate there');
    const size = Math.max(ALIGN, Math.ceil(bytes / ALIGN) * ALIGN);
    const reuse = this.freed.get(size)?.pop();
    if (reuse !== undefined) return { ptr: reuse, bytes: size };
    const end = this.top + size;
    const have = this.memory.buffer.byteLength;
    if (end > have) {
      const pages = Math.ceil((end - have) / PAGE_BYTES);
      try {
        this.memory.grow(pages);
      } catch {
        return undefined;
      }
      // A shared memory's old buffer objects stay valid after a grow; the new one is also ours.
      this.buffers.add(this.memory.buffer);
    }
    const ptr = this.top;
    this.top = end;
    return { ptr, bytes: size };
  }

  /** Returns a block for reuse; nothing may use its views afterwards. */
  free(block: ArenaBlock): void {
    const list = this.freed.get(block.bytes) ?? [];
    list.push(block.ptr);
    this.freed.set(block.bytes, list);
  }

  /** A Buffer over `bytes` bytes of the block. */
  buffer(block: ArenaBlock, bytes = block.bytes): Buffer {
    return Buffer.from(this.memory.buffer, block.ptr, bytes);
  }

  /** A Float32Array over `length` floats of the block. */
  f32(block: ArenaBlock, length = block.bytes >> 2): Float32Array {
    return new Float32Array(this.memory.buffer, block.ptr, length);
  }

  /** A Float32Array over the arena at a byte address (a thread's view of state a task names). */
  f32At(byteOffset: number, length: number): Float32Array {
    const buffer = this.memory.buffer;
    this.buffers.add(buffer);
    return new Float32Array(buffer, byteOffset, length);
  }

  /** The byte address of a view into the arena, or -1 for any other memory. */
  address(a: ArrayBufferView): number {
    return this.buffers.has(a.buffer) ? a.byteOffset : -1;
  }

  /**
   * Whether `a` holds a NaN or an infinity. An array outside the arena is checked through a
   * 64 KB scratch block that stays in cache (copy a chunk, check it): 6.2-8.6 ms per 9.45 M
   * floats against 8.4-10.9 ms for the JavaScript loop; in the arena, 3.3-3.6 ms.
   */
  nonFinite(a: Float32Array): boolean {
    const p = this.address(a);
    if (p >= 0) return this.nonFiniteAt(p, a);
    this.scratch ??= this.alloc(SCRATCH_FLOATS * 4);
    if (!this.scratch) return a.some((x) => !Number.isFinite(x));
    const chunk = this.f32(this.scratch, SCRATCH_FLOATS);
    for (let from = 0; from < a.length; from += SCRATCH_FLOATS) {
      const part = a.subarray(from, Math.min(a.length, from + SCRATCH_FLOATS));
      chunk.set(part);
      if (this.nonFiniteAt(this.scratch.ptr, chunk.subarray(0, part.length))) return true;
    }
    return false;
  }

  private scratch?: ArenaBlock;

  private nonFiniteAt(p: number, a: Float32Array): boolean {
    const n16 = a.length >> 4;
    if (this.kernels.nonFinite(p, n16) !== 0) return true;
    for (let i = n16 << 4; i < a.length; i++) if (!Number.isFinite(a[i])) return true;
    return false;
  }

  /**
   * addScaled of several shards in order, fused four or two at a time into one pass over the
   * sums (the same operations and roundings as one call per shard, with less memory traffic).
   * Returns the first index it did not do, for the caller to finish shard by shard.
   */
  addScaledMany(
    sum: Float32Array,
    gs: readonly Float32Array[],
    ns: readonly number[],
    first: boolean,
    from: number,
    to: number,
  ): number {
    const ps = this.address(sum);
    const pg = gs.map((g) => this.address(g));
    if (ps < 0 || pg.some((p) => p < 0)) return from;
    const n4 = (to - from) >> 2;
    const o = 4 * from;
    const at = ps + o;
    for (let k = 0; k < gs.length; ) {
      const f = first && k === 0 ? 1 : 0;
      const left = gs.length - k;
      if (left >= 4) {
        this.kernels.addScaled4(
          at,
          pg[k] + o,
          ns[k],
          pg[k + 1] + o,
          ns[k + 1],
          pg[k + 2] + o,
          ns[k + 2],
          pg[k + 3] + o,
          ns[k + 3],
          n4,
          f,
        );
        k += 4;
      } else if (left >= 2) {
        this.kernels.addScaled2(at, pg[k] + o, ns[k], pg[k + 1] + o, ns[k + 1], n4, f);
        k += 2;
      } else {
        this.kernels.addScaled(at, pg[k] + o, ns[k], n4, f);
        k += 1;
      }
    }
    return from + 4 * n4;
  }

  /**
   * node/combine.ts weightedMean over the whole vectors of `out` when it and every `gs` are in the
   * arena (sum of n_k g_k in float64 in order, divided by `total`, rounded once); returns the
   * first index it did not do (0 when it did none), for the caller to finish.
   */
  weightedMean(out: Float32Array, gs: readonly Float32Array[], ns: readonly number[], total: number): number {
    const po = this.address(out);
    const pg = gs.map((g) => this.address(g));
    if (gs.length === 0 || po < 0 || pg.some((p) => p < 0)) return 0;
    const bytes = 16 * gs.length;
    if (!this.table || this.table.bytes < bytes) {
      if (this.table) this.free(this.table);
      this.table = this.alloc(bytes);
      if (!this.table) return 0;
    }
    const view = new DataView(this.memory.buffer, this.table.ptr, bytes);
    for (const [j, p] of pg.entries()) {
      view.setUint32(16 * j, p, true);
      view.setFloat64(16 * j + 8, ns[j], true);
    }
    const n4 = out.length >> 2;
    this.kernels.weightedMean(po, this.table.ptr, gs.length, total, n4);
    return 4 * n4;
  }

  private table?: ArenaBlock;

  /**
   * adam.ts meanAdamStep's float32 operations over the whole vectors of [from, to) when all four
   * arrays are in the arena; returns the first index it did not do, for the caller to finish.
   */
  adam(
    w: Float32Array,
    sum: Float32Array,
    m: Float32Array,
    v: Float32Array,
    k: AdamConstants,
    from: number,
    to: number,
  ): number {
    const pw = this.address(w);
    const ps = this.address(sum);
    const pm = this.address(m);
    const pv = this.address(v);
    if (pw < 0 || ps < 0 || pm < 0 || pv < 0) return from;
    const n4 = (to - from) >> 2;
    const o = 4 * from;
    this.kernels.adam(pw + o, ps + o, pm + o, pv + o, n4, k.inv, k.b1, k.b2, k.a1, k.a2, k.lrt, k.eps);
    return from + 4 * n4;
  }
}

let arena: SimdArena | undefined;

/** This thread's arena, made on first use. */
export function simdArena(): SimdArena {
  arena ??= new SimdArena();
  return arena;
}

/** Makes `memory` (the main thread's arena, handed to a worker thread) this thread's arena. */
export function adoptArena(memory: WebAssembly.Memory): SimdArena {
  if (arena?.memory !== memory) arena = new SimdArena(memory);
  return arena;
}

/** This thread's arena if something has made it: the kernels' callers never create one. */
export function existingArena(): SimdArena | undefined {
  return arena;
}
