// The entry point scripts/gpu-check.sh bundles into one file. worker/backend.ts imports
// @tensorflow/tfjs-backend-webgpu by a variable name, at run time, so the bundle cannot inline it:
// this entry imports it here (sharing the bundle's one tfjs-core, so one engine and one kernel
// registry) and hands it to the stub package the bundle carries (webgpu-stub.mjs), then runs the check.
import * as tfjsWebgpu from '@tensorflow/tfjs-backend-webgpu';

globalThis[Symbol.for('gan-dist.tfjs-backend-webgpu')] = tfjsWebgpu;
await import('./check.ts');
