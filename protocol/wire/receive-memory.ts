// Where frames read from shared memory land: plain buffers of their own, or the coordinator's
// SIMD arena, so the gradients read there are checked and summed in place.

import { simdArena, type ArenaBlock } from '../arena/simd.ts';

/** Where read frames land. Each buffer starts 8-byte aligned, so decoded tensors are views. */
export interface ReceiveMemory {
  alloc(bytes: number): Buffer;
  /** `buf` is a buffer alloc returned; nothing uses it any more. */
  free(buf: Buffer): void;
}

/** Plain memory: each buffer its own ArrayBuffer at offset 0, never Node's shared pool. */
export const PLAIN_MEMORY: ReceiveMemory = {
  alloc: (bytes) => Buffer.from(new ArrayBuffer(bytes)),
  free: () => undefined,
};

/**
 * The coordinator's SIMD arena (simd.ts): gradients read there are checked and added by the wasm
 * kernels in place, without another copy. Plain memory when the arena cannot grow.
 */
export function arenaMemory(): ReceiveMemory {
  const blocks = new WeakMap<Buffer, ArenaBlock>();
  return {
    alloc(bytes) {
      const arena = simdArena();
      const block = arena.alloc(bytes);
      if (!block) return PLAIN_MEMORY.alloc(bytes);
      const buf = arena.buffer(block, bytes);
      blocks.set(buf, block);
      return buf;
    },
    free(buf) {
      const block = blocks.get(buf);
      if (block) simdArena().free(block);
      blocks.delete(buf);
    },
  };
}
