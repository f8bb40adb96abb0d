// The piscina worker of the optimizer: runs one task on its slice of the flat shared state with
// the same kernels as the main thread, so a slice's floats come out bitwise as they would there.

import { workerData } from 'piscina';
import { meanAdamStep } from './adam.ts';
import type { OptimizerTask, SharedF32 } from './optimizer.ts';
import { addScaled } from './reduce.ts';
import { adoptArena } from './simd.ts';

// The optimizer's arena, shared with the main thread: views made through it take the wasm kernels.
const arena = (workerData as { arena?: WebAssembly.Memory } | undefined)?.arena;
const adopted = arena ? adoptArena(arena) : undefined;

const view = (a: SharedF32) => (a.inArena && adopted ? adopted.f32At(a.byteOffset, a.length) : new Float32Array(a.buffer, a.byteOffset, a.length));

export default function runOptimizerTask(task: OptimizerTask): void {
  if (task.kind === 'add') {
    addScaled(view(task.sum), view(task.g), task.n, task.first, task.from, task.to);
  } else {
    meanAdamStep(view(task.w), view(task.sum), task.inv, view(task.m), view(task.v), task.t, task.hyper, task.from, task.to);
  }
}
