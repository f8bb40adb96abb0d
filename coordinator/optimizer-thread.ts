// The piscina worker of the optimizer: runs one task on its slice of the flat shared state with
// the same kernels as the main thread, so a slice's floats come out bitwise as they would there.

import { meanAdamStep } from './adam.ts';
import type { OptimizerTask } from './optimizer.ts';
import { addScaled } from './reduce.ts';

export default function runOptimizerTask(task: OptimizerTask): void {
  if (task.kind === 'add') {
    addScaled(new Float32Array(task.sum), new Float32Array(task.g), task.n, task.first, task.from, task.to);
  } else {
    meanAdamStep(new Float32Array(task.w), new Float32Array(task.sum), task.inv, new Float32Array(task.m), new Float32Array(task.v), task.t, task.hyper, task.from, task.to);
  }
}
