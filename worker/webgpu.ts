// WebGPU through Dawn's Node bindings (the `webgpu` package, whose dawn.node ships inside it):
// finding an adapter, describing it, and opening a device for tfjs-backend-webgpu. On NVIDIA,
// Dawn drives the GPU through the driver's own Vulkan; on a machine without a GPU, a software
// Vulkan (Mesa's lavapipe) gives a fallback adapter that is always labelled as one.

import { GanDistError } from '../protocol/errors.ts';
import { installedVersion, TFJS_WEBGPU_PACKAGE, WEBGPU_PACKAGE } from '../protocol/backends.ts';
import { pinGpu } from './gpu-select.ts';

/** What a worker logs and `gan-dist doctor` prints about an adapter. */
export interface AdapterDescription {
  vendor: string;
  architecture: string;
  device: string;
  description: string;
  /** A software (CPU) implementation: its figures are never GPU figures. */
  isFallbackAdapter: boolean;
  /** The limits that bound this model's buffers. */
  maxBufferSize: number;
  maxStorageBufferBindingSize: number;
  /** The GPU this process was pinned to (gpu-select.ts), or why it was not. */
  pinned?: { gpu: string; pciBusId: string } | { reason: string };
}

export interface OpenedDevice {
  device: GPUDevice;
  adapter: GPUAdapter;
  description: AdapterDescription;
  /** A device lost, or the first error it raised that nothing caught; undefined while healthy. */
  health(): string | undefined;
  /** Drops the process's reference to Dawn, without which Node would not exit. */
  close(): void;
}

interface DawnModule {
  create(options: string[]): GPU;
  globals: Record<string, unknown>;
}

/** The fix for "no adapter", for error messages and `gan-dist doctor`. */
export const NO_ADAPTER_FIX =
  'install the Vulkan loader and a driver: `apt-get install libvulkan1` plus, on NVIDIA, the driver (its Vulkan ICD ships ' +
  'with it); without a GPU, Mesa 25 from bookworm-backports gives a software adapter (scripts/install-vulkan.sh)';

function missingPackages(): string[] {
  return [WEBGPU_PACKAGE, TFJS_WEBGPU_PACKAGE].filter((p) => !installedVersion(p));
}

/** Why the webgpu backend cannot load here, or undefined. */
export function webgpuUnavailable(): string | undefined {
  const missing = missingPackages();
  if (missing.length > 0)
    return `${missing.join(' and ')} not installed (optional dependencies: \`npm install ${missing.join(' ')}\`)`;
  if (process.platform !== 'linux' && process.platform !== 'darwin' && process.platform !== 'win32')
    return `no dawn.node for ${process.platform}`;
  return undefined;
}

async function dawn(): Promise<DawnModule> {
  const why = webgpuUnavailable();
  if (why) throw new GanDistError('GAN_DIST_E_BACKEND', `the webgpu backend needs ${why}`, 'or use --backend wasm');
  const name = WEBGPU_PACKAGE; // a variable keeps type-checkers from requiring the optional package
  return (await import(name)) as DawnModule;
}

export function describeAdapter(adapter: GPUAdapter): AdapterDescription {
  const info = adapter.info as GPUAdapterInfo & { isFallbackAdapter?: boolean };
  const legacy = (adapter as GPUAdapter & { isFallbackAdapter?: boolean }).isFallbackAdapter;
  return {
    vendor: info.vendor || 'unknown',
    architecture: info.architecture || 'unknown',
    device: info.device || '',
    description: info.description || '',
    isFallbackAdapter: info.isFallbackAdapter ?? legacy ?? false,
    maxBufferSize: adapter.limits.maxBufferSize,
    maxStorageBufferBindingSize: adapter.limits.maxStorageBufferBindingSize,
  };
}

/** One line for logs: "llvmpipe (mesa, software fallback)". */
export function adapterLabel(d: AdapterDescription): string {
  const name = d.description || d.device || d.architecture;
  const arch = d.architecture && d.architecture !== name ? ` ${d.architecture}` : '';
  const pin = d.pinned && 'pciBusId' in d.pinned ? `, GPU ${d.pinned.gpu} at PCI ${d.pinned.pciBusId}` : '';
  return `${name} (${d.vendor}${arch}${d.isFallbackAdapter ? ', software fallback' : ''}${pin})`;
}

/**
 * The adapter Dawn picks (high-performance), or undefined with the reason. Dawn prints its
 * Vulkan warnings to stderr; they are not errors.
 */
export async function findAdapter(): Promise<{ adapter?: GPUAdapter; gpu?: GPU; reason?: string }> {
  let mod: DawnModule;
  try {
    mod = await dawn();
  } catch (err) {
    return { reason: (err as Error).message };
  }
  const gpu = mod.create([]);
  const adapter = (await gpu.requestAdapter({ powerPreference: 'high-performance' })) ?? undefined;
  if (!adapter) return { gpu, reason: 'Dawn found no WebGPU adapter (no Vulkan driver that offers one)' };
  return { adapter, gpu };
}

/**
 * Every adapter Dawn offers for the three ways WebGPU asks for one (high-performance, low-power,
 * the fallback), without duplicates, hardware first.
 */
export async function listAdapters(): Promise<{ adapters: AdapterDescription[]; reason?: string }> {
  let mod: DawnModule;
  try {
    mod = await dawn();
  } catch (err) {
    return { adapters: [], reason: (err as Error).message };
  }
  const gpu = mod.create([]);
  const seen = new Map<string, AdapterDescription>();
  const asks: GPURequestAdapterOptions[] = [
    { powerPreference: 'high-performance' },
    { powerPreference: 'low-power' },
    { forceFallbackAdapter: true },
  ];
  for (const ask of asks) {
    const a = await gpu.requestAdapter(ask);
    if (!a) continue;
    const d = describeAdapter(a);
    seen.set(`${d.vendor}|${d.architecture}|${d.device}|${d.description}|${d.isFallbackAdapter}`, d);
  }
  const adapters = [...seen.values()].sort((x, y) => Number(x.isFallbackAdapter) - Number(y.isFallbackAdapter));
  return adapters.length > 0
    ? { adapters }
    : { adapters, reason: 'Dawn found no WebGPU adapter (no Vulkan driver that offers one)' };
}

/**
 * Opens a device on the adapter with the limits raised to the adapter's own (tfjs's defaults are
 * the web's, far below a GPU's), and makes `navigator.gpu` and the GPU* constants global, as
 * tfjs-backend-webgpu expects. `requireHardware`: a fallback adapter is an error.
 */
export async function openWebgpuDevice(opts: { requireHardware?: boolean; gpu?: string } = {}): Promise<OpenedDevice> {
  // Before Dawn's instance exists: the Vulkan loader reads the device-select variables once.
  const pin = opts.gpu === undefined ? undefined : pinGpu(opts.gpu);
  if (pin) Object.assign(process.env, pin.env);
  const mod = await dawn();
  const found = await findAdapter();
  if (!found.adapter || !found.gpu)
    throw new GanDistError('GAN_DIST_E_BACKEND', `the webgpu backend: ${found.reason}`, NO_ADAPTER_FIX);
  const { adapter, gpu } = found;
  const description = describeAdapter(adapter);
  if (pin) {
    description.pinned =
      pin.gpu && Object.keys(pin.env).length > 0
        ? { gpu: pin.gpu.index, pciBusId: pin.gpu.pciBusId }
        : { reason: pin.reason ?? 'unknown' };
  }
  if (opts.requireHardware && description.isFallbackAdapter) {
    throw new GanDistError(
      'GAN_DIST_E_BACKEND',
      `GPUs were asked for, but the only WebGPU adapter is a software fallback (${adapterLabel(description)})`,
      `check the GPU driver's Vulkan ICD (\`gan-dist doctor\`), or use --backend webgpu to train on it anyway`,
    );
  }
  const l = adapter.limits;
  const device = await adapter.requestDevice({
    requiredFeatures: adapter.features.has('timestamp-query') ? ['timestamp-query'] : [],
    requiredLimits: {
      maxBufferSize: l.maxBufferSize,
      maxStorageBufferBindingSize: l.maxStorageBufferBindingSize,
      maxComputeWorkgroupStorageSize: l.maxComputeWorkgroupStorageSize,
      maxComputeWorkgroupsPerDimension: l.maxComputeWorkgroupsPerDimension,
      maxComputeWorkgroupSizeX: l.maxComputeWorkgroupSizeX,
      maxComputeInvocationsPerWorkgroup: l.maxComputeInvocationsPerWorkgroup,
    },
  });
  let failure: string | undefined;
  let closing = false;
  void device.lost.then((info) => {
    if (!closing) failure ??= `device lost (${info.reason}): ${info.message}`;
  });
  device.addEventListener('uncapturederror', (e) => {
    failure ??= (e as GPUUncapturedErrorEvent).error.message;
  });
  for (const [k, v] of Object.entries(mod.globals))
    if (!(k in globalThis)) (globalThis as Record<string, unknown>)[k] = v;
  // tfjs-backend-webgpu checks navigator.gpu; on Node 21+ navigator is a built-in: add to it.
  const g = globalThis as { navigator?: { gpu?: GPU } };
  if (g.navigator) Object.defineProperty(g.navigator, 'gpu', { value: gpu, configurable: true, writable: true });
  else g.navigator = { gpu };
  return {
    device,
    adapter,
    description,
    health: () => failure,
    close: () => {
      closing = true;
      device.destroy();
      if (g.navigator?.gpu === gpu) delete g.navigator.gpu;
    },
  };
}
