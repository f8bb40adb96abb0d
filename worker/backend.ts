// The one place that chooses and loads a tfjs backend. Everything else receives `tf` from here.

import { GanDistError } from '../protocol/errors.ts';
import { adapterLabel, NO_ADAPTER_FIX, openWebgpuDevice, type AdapterDescription } from './webgpu.ts';
import {
  GPU_PACKAGE,
  NODE_PACKAGE,
  TFJS_WEBGPU_PACKAGE,
  installedVersion,
  resolveBackendName,
  type BackendInfo,
  type BackendName,
} from '../protocol/backends.ts';

export type TF = typeof import('@tensorflow/tfjs');

export interface LoadedBackend {
  tf: TF;
  info: BackendInfo;
  /** WebGPU: the adapter the device is on, and the device's health (a Trainer's `device` option). */
  adapter?: AdapterDescription;
  device?: { maxStorageBufferBindingSize: number; health(): string | undefined };
  /** Releases what keeps the process alive (Dawn's instance); the backend is unusable after. */
  close(): void;
}

function missing(pkg: string, what: string): GanDistError {
  const gpu = pkg === GPU_PACKAGE;
  return new GanDistError(
    'GAN_DIST_E_BACKEND',
    `${what} needs ${pkg}, which is not installed` +
      (gpu ? ' (it requires an NVIDIA GPU with CUDA 11.2 and cuDNN 8.1 libraries on the library path)' : ''),
    `install it with \`npm install ${pkg}\` (its install downloads libtensorflow, so it needs the internet), ` +
      `or fall back to the embedded CPU backend with \`--backend wasm\`` +
      (gpu ? ' and without --gpus' : ''),
  );
}

async function loadNative(
  pkg: string,
  name: 'tensorflow' | 'tensorflow-gpu',
  requested: BackendName,
): Promise<LoadedBackend> {
  const version = installedVersion(pkg);
  if (!version) throw missing(pkg, name === 'tensorflow-gpu' ? 'GPU training' : 'the tensorflow backend');
  let tf: TF;
  try {
    // A variable name keeps bundlers and type-checkers from requiring the optional package.
    const mod = (await import(pkg)) as TF & { default?: TF };
    tf = (mod.default ?? mod) as TF;
  } catch (err) {
    throw new GanDistError(
      'GAN_DIST_E_BACKEND',
      `${pkg} is installed but failed to load: ${(err as Error).message}`,
      name === 'tensorflow-gpu'
        ? 'check that the CUDA 11.2 and cuDNN 8.1 libraries are on LD_LIBRARY_PATH (`gan-dist doctor` shows what is found), or use --backend wasm'
        : 'reinstall it (`npm rebuild @tensorflow/tfjs-node`) or use --backend wasm',
    );
  }
  await tf.setBackend('tensorflow');
  await tf.ready();
  const gpus = process.env.CUDA_VISIBLE_DEVICES;
  const device = name === 'tensorflow-gpu' ? `GPU ${gpus ?? 'all visible'} (CUDA)` : 'CPU (libtensorflow)';
  return { tf, info: { requested, name, package: pkg, version, device, threads: 0 }, close: () => {} };
}

async function loadWasm(requested: BackendName, threads: number | undefined): Promise<LoadedBackend> {
  const tf = (await import('@tensorflow/tfjs')) as TF;
  const wasm = await import('@tensorflow/tfjs-backend-wasm');
  if (threads !== undefined) wasm.setThreadsCount(threads);
  const { registerWasmGradientKernels } = await import('./kernels/wasm-kernels.ts');
  registerWasmGradientKernels();
  if (!(await tf.setBackend('wasm'))) {
    throw new GanDistError('GAN_DIST_E_BACKEND', 'the wasm backend failed to initialise', 'try --backend cpu');
  }
  await tf.ready();
  const simd = tf.env().getBool('WASM_HAS_SIMD_SUPPORT') as boolean;
  const used = wasm.getThreadsCount();
  // The convolutions' GEMM (gemm.ts): with fused multiply-adds where the engine has relaxed SIMD.
  const { gemmBuild, gemmKernels } = await import('./kernels/gemm.ts');
  const fma = gemmKernels(tf.backend() as never) !== undefined && gemmBuild() === 'fma';
  return {
    tf,
    info: {
      requested,
      name: 'wasm',
      package: '@tensorflow/tfjs-backend-wasm',
      version: installedVersion('@tensorflow/tfjs-backend-wasm') ?? 'unknown',
      device: `CPU (wasm${simd ? ', SIMD' : ''}${fma ? ', relaxed FMA' : ''}, ${used} thread${used === 1 ? '' : 's'})`,
      threads: used,
      simd,
    },
    close: () => {},
  };
}

async function loadWebgpu(requested: BackendName, requireHardware: boolean, gpu?: string): Promise<LoadedBackend> {
  const opened = await openWebgpuDevice({ requireHardware, gpu });
  const tf = (await import('@tensorflow/tfjs')) as TF;
  const pkg = TFJS_WEBGPU_PACKAGE; // optional: a variable keeps type-checkers from requiring it
  const { WebGPUBackend } = (await import(pkg)) as {
    WebGPUBackend: new (device: GPUDevice, info?: GPUAdapterInfo) => unknown;
  };
  // The package registers a backend of its own (on an adapter it picks) when navigator.gpu
  // exists at import: ours, on the device opened above, replaces it.
  if (tf.findBackendFactory('webgpu')) tf.removeBackend('webgpu');
  tf.registerBackend('webgpu', () => new WebGPUBackend(opened.device, opened.adapter.info) as never);
  if (!(await tf.setBackend('webgpu'))) {
    opened.close();
    throw new GanDistError('GAN_DIST_E_BACKEND', 'the webgpu backend failed to initialise', 'try --backend wasm');
  }
  await tf.ready();
  const d = opened.description;
  return {
    tf,
    adapter: d,
    device: { maxStorageBufferBindingSize: d.maxStorageBufferBindingSize, health: opened.health },
    info: {
      requested,
      name: 'webgpu',
      package: TFJS_WEBGPU_PACKAGE,
      version: installedVersion(TFJS_WEBGPU_PACKAGE) ?? 'unknown',
      device: `${d.isFallbackAdapter ? 'software' : 'GPU'} ${adapterLabel(d)} (WebGPU, Dawn)`,
      threads: 0,
    },
    close: () => {
      tf.removeBackend('webgpu');
      opened.close();
    },
  };
}

async function loadCpu(requested: BackendName): Promise<LoadedBackend> {
  const tf = (await import('@tensorflow/tfjs')) as TF;
  await tf.setBackend('cpu');
  await tf.ready();
  return {
    tf,
    info: {
      requested,
      name: 'cpu',
      package: '@tensorflow/tfjs-backend-cpu',
      version: installedVersion('@tensorflow/tfjs-backend-cpu') ?? 'unknown',
      device: 'CPU (plain JavaScript, slow: for checks only)',
      threads: 1,
    },
    close: () => {},
  };
}

export interface LoadBackendOptions {
  /** GPUs were asked for (--gpus): auto then means tensorflow-gpu. */
  wantsGpu?: boolean;
  /**
   * The GPU that is this worker's (a CUDA index or UUID, placement.ts): WebGPU pins Vulkan to it
   * (gpu-select.ts); tfjs-node-gpu gets it through CUDA_VISIBLE_DEVICES instead.
   */
  gpu?: string;
  /** wasm threads; tfjs runs wasm single-threaded under Node whatever this says. */
  threads?: number;
}

/**
 * GPUs asked for with --backend auto: tfjs-node-gpu where it is installed and loads, else WebGPU on
 * a hardware adapter, else an error naming both.
 */
async function loadAnyGpu(requested: BackendName, gpu?: string): Promise<LoadedBackend> {
  let native: string;
  if (installedVersion(GPU_PACKAGE)) {
    try {
      return await loadNative(GPU_PACKAGE, 'tensorflow-gpu', requested);
    } catch (err) {
      native = (err as Error).message;
    }
  } else native = `${GPU_PACKAGE} is not installed`;
  try {
    return await loadWebgpu(requested, true, gpu);
  } catch (err) {
    throw new GanDistError(
      'GAN_DIST_E_BACKEND',
      `no GPU backend loads here: ${native}; and ${(err as Error).message}`,
      `${NO_ADAPTER_FIX}; \`gan-dist doctor\` shows what is found; or train on CPUs with --workers N`,
    );
  }
}

/** Loads the backend once per process and reports what it is. */
export async function loadBackend(requested: BackendName, opts: LoadBackendOptions = {}): Promise<LoadedBackend> {
  if (requested === 'auto' && opts.wantsGpu) return loadAnyGpu(requested, opts.gpu);
  const name = resolveBackendName(requested, opts.wantsGpu ?? false);
  switch (name) {
    case 'webgpu':
      return loadWebgpu(requested, false, opts.gpu);
    case 'tensorflow-gpu':
      return loadNative(GPU_PACKAGE, name, requested);
    case 'tensorflow':
      return loadNative(NODE_PACKAGE, name, requested);
    case 'wasm':
      return loadWasm(requested, opts.threads);
    case 'cpu':
      return loadCpu(requested);
  }
}
