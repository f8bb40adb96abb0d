// The piscina worker of the optimizer: runs one task on its slice of the flat shared state with
// the same kernels as the main thread, so a slice's floats come out bitwise as they would there.

import { workerData } from 'piscina';
import { meanAdamStep } from './adam.ts';
import type { OptimizerTask, SharedF32 } from './optimizer.ts';
import { addScaledMany } from './reduce.ts';
import { adoptArena } from '../../protocol/arena/simd.ts';

// The optimizer's arena, shared with the main thread: views made through it take the wasm kernels.
const arena = (workerData as { arena?: WebAssembly.Memory } | undefined)?.arena;
const adopted = arena ? adoptArena(arena) : undefined;

const view = (a: SharedF32) =>
  a.inArena && adopted ? adopted.f32At(a.byteOffset, a.length) : new Float32Array(a.buffer, a.byteOffset, a.length);

export default function runOptimizerTask(task: OptimizerTask): void {
  if (task.kind === 'add') {
    // Part by part where it overlaps this thread's slice [from, to) of the sums; every shard's
    // parts are laid out alike (one per tensor, or one for a flat copy), so part i of each shard
    // covers the same range and the shards' adds fuse.
    const sum = view(task.sum);
    const ns = task.shards.map((s) => s.n);
    task.shards[0].parts.forEach(({ at, g }, i) => {
      const lo = Math.max(task.from, at);
      const hi = Math.min(task.to, at + g.length);
      if (lo >= hi) return;
      const gs = task.shards.map((s) => view(s.parts[i].g).subarray(lo - at, hi - at));
      addScaledMany(sum.subarray(lo, hi), gs, ns, task.first);
    });
  } else {
    meanAdamStep(
      view(task.w),
      view(task.sum),
      task.inv,
      view(task.m),
      view(task.v),
      task.t,
      task.hyper,
      task.from,
      task.to,
    );
  }
}
