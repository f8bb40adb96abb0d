// The one place that chooses and loads a tfjs backend. Everything else receives `tf` from here.

import { GanDistError } from '../protocol/errors.ts';
import {
  GPU_PACKAGE,
  NODE_PACKAGE,
  installedVersion,
  resolveBackendName,
  type BackendInfo,
  type BackendName,
} from '../protocol/backends.ts';

export type TF = typeof import('@tensorflow/tfjs');

export interface LoadedBackend {
  tf: TF;
  info: BackendInfo;
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
  return { tf, info: { requested, name, package: pkg, version, device, threads: 0 } };
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
  };
}

export interface LoadBackendOptions {
  /** GPUs were asked for (--gpus): auto then means tensorflow-gpu. */
  wantsGpu?: boolean;
  /** wasm threads; tfjs runs wasm single-threaded under Node whatever this says. */
  threads?: number;
}

/** Loads the backend once per process and reports what it is. */
export async function loadBackend(requested: BackendName, opts: LoadBackendOptions = {}): Promise<LoadedBackend> {
  const name = resolveBackendName(requested, opts.wantsGpu ?? false);
  switch (name) {
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
