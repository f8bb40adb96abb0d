// Carried as node_modules/@tensorflow/tfjs-backend-webgpu/index.mjs beside the bundled check:
// the module the bundle's entry (entry.mjs) imported, under the name worker/backend.ts imports.
const loaded = globalThis[Symbol.for('gan-dist.tfjs-backend-webgpu')];
if (!loaded) throw new Error('the gpu-check stub of @tensorflow/tfjs-backend-webgpu was imported outside the bundle');
export const { WebGPUBackend } = loaded;
