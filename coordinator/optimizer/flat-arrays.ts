// Named tensors laid out in one flat Float32 buffer (a SharedArrayBuffer when threads must see
// it): the rest of the coordinator keeps NamedArrays, the reduction and Adam see one flat range.

import { sizeOf, type NamedArrays } from '../../protocol/model/architecture.ts';
import { simdArena, type ArenaBlock } from '../../protocol/arena/simd.ts';

/** Where each named tensor lives in the flat vector, in elements. */
export interface FlatLayout {
  names: string[];
  offsets: number[];
  lengths: number[];
  /** Elements in all. */
  total: number;
}

/** Tensors back to back in the order given. */
export function flatLayout(specs: readonly { name: string; shape: number[] }[]): FlatLayout {
  const names: string[] = [];
  const offsets: number[] = [];
  const lengths: number[] = [];
  let total = 0;
  for (const s of specs) {
    names.push(s.name);
    offsets.push(total);
    lengths.push(sizeOf(s.shape));
    total += sizeOf(s.shape);
  }
  return { names, offsets, lengths, total };
}

/**
 * Where a flat buffer lives: a plain ArrayBuffer; a SharedArrayBuffer that threads can see; or
 * the SIMD arena (simd.ts, itself shared memory), where the wasm kernels work on it. The arena
 * falls back to a SharedArrayBuffer when it cannot grow.
 */
export type FlatStorage = 'local' | 'shared' | 'arena';

/** One flat buffer and a named view of each tensor in it. */
export class FlatArrays {
  readonly flat: Float32Array;
  /** Views into `flat`: writing one writes the flat vector. Keys in `keyOrder` (default: layout order). */
  readonly views: NamedArrays = {};
  private block?: ArenaBlock;

  constructor(
    readonly layout: FlatLayout,
    storage: FlatStorage,
    keyOrder: readonly string[] = layout.names,
  ) {
    const bytes = layout.total * Float32Array.BYTES_PER_ELEMENT;
    const arena = storage === 'arena' ? simdArena() : undefined;
    this.block = arena?.alloc(bytes);
    if (arena && this.block) this.flat = arena.f32(this.block, layout.total).fill(0);
    else this.flat = new Float32Array(storage === 'local' ? new ArrayBuffer(bytes) : new SharedArrayBuffer(bytes));
    const at = new Map(layout.names.map((n, i) => [n, i]));
    for (const name of keyOrder) {
      const i = at.get(name);
      if (i === undefined) throw new Error(`flat layout has no tensor ${name}`);
      this.views[name] = this.flat.subarray(layout.offsets[i], layout.offsets[i] + layout.lengths[i]);
    }
  }

  /** Hands an arena block back for reuse; the views must not be used afterwards. */
  release(): void {
    if (this.block) simdArena().free(this.block);
    this.block = undefined;
  }

  get shared(): boolean {
    return this.flat.buffer instanceof SharedArrayBuffer;
  }

  /** Copies every tensor of `from` (all of the layout's names, of the right sizes) into place. */
  load(from: NamedArrays, what: string): this {
    this.layout.names.forEach((name, i) => {
      const a = from[name];
      if (!a) throw new Error(`${what}: missing tensor ${name}`);
      if (a.length !== this.layout.lengths[i])
        throw new Error(`${what}: tensor ${name} has ${a.length} values, expected ${this.layout.lengths[i]}`);
      this.flat.set(a, this.layout.offsets[i]);
    });
    return this;
  }
}
