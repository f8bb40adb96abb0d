// Which GPU a WebGPU worker gets. CUDA_VISIBLE_DEVICES does not reach Vulkan, and Dawn's
// `adapter=` option matches a name, so it cannot tell identical GPUs apart. What can: Mesa's
// device-select layer (an implicit Vulkan layer, in Debian's mesa-vulkan-drivers), which works
// over any driver, NVIDIA's included. Given DRI_PRIME=pci-DDDD_BB_DD_F and
// MESA_VK_DEVICE_SELECT_FORCE_DEFAULT_DEVICE=1 it shows the process that one device only. The PCI
// address comes from nvidia-smi, by CUDA index or UUID. Set before Dawn creates its instance.

import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';

export interface NvidiaGpu {
  index: string;
  uuid: string;
  /** nvidia-smi's form: "00000000:C6:00.0". */
  pciBusId: string;
  name: string;
}

/** nvidia-smi's GPUs, or [] where it is missing or fails. */
export function nvidiaGpus(run: () => string = queryNvidiaSmi): NvidiaGpu[] {
  let text: string;
  try {
    text = run();
  } catch {
    return [];
  }
  return text
    .split('\n')
    .map((l) => l.split(',').map((f) => f.trim()))
    .filter((f) => f.length >= 4 && /^\d+$/.test(f[0]))
    .map(([index, uuid, pciBusId, ...name]) => ({ index, uuid, pciBusId, name: name.join(', ') }));
}

function queryNvidiaSmi(): string {
  return execFileSync('nvidia-smi', ['--query-gpu=index,uuid,pci.bus_id,name', '--format=csv,noheader'], {
    encoding: 'utf8',
    timeout: 10_000,
    stdio: ['ignore', 'pipe', 'ignore'],
  });
}

/** "00000000:C6:00.0" -> "pci-0000_c6_00_0", the form DRI_PRIME takes. */
export function driPrimeOf(pciBusId: string): string | undefined {
  const m = /^([0-9a-f]{4,8}):([0-9a-f]{2}):([0-9a-f]{2})\.([0-7])$/i.exec(pciBusId.trim());
  if (!m) return undefined;
  return `pci-${m[1].slice(-4)}_${m[2]}_${m[3]}_${m[4]}`.toLowerCase();
}

const LAYER_FILE = 'VkLayer_MESA_device_select.json';

/** Where the Vulkan loader looks for implicit layers on Linux. */
function layerDirs(env: NodeJS.ProcessEnv): string[] {
  const dataDirs = (env.XDG_DATA_DIRS || '/usr/local/share:/usr/share').split(':');
  const home = env.XDG_DATA_HOME || (env.HOME ? path.join(env.HOME, '.local/share') : undefined);
  return [
    ...(env.VK_ADD_IMPLICIT_LAYER_PATH ?? '').split(':').filter(Boolean),
    '/etc/vulkan/implicit_layer.d',
    ...dataDirs.map((d) => path.join(d, 'vulkan/implicit_layer.d')),
    ...(home ? [path.join(home, 'vulkan/implicit_layer.d')] : []),
  ];
}

export function deviceSelectLayer(env: NodeJS.ProcessEnv = process.env): string | undefined {
  for (const dir of layerDirs(env)) {
    const f = path.join(dir, LAYER_FILE);
    if (existsSync(f)) return f;
  }
  return undefined;
}

export interface GpuPin {
  /** The variables to set before Dawn loads; empty when nothing could be pinned. */
  env: Record<string, string>;
  /** The GPU pinned, for the worker's log and its device string. */
  gpu?: NvidiaGpu;
  /** Why nothing was pinned. */
  reason?: string;
}

/**
 * The environment that shows Vulkan only GPU `id` (a CUDA index as nvidia-smi numbers GPUs, or a
 * UUID as CUDA_VISIBLE_DEVICES may hold), or why it cannot be done here. A DRI_PRIME already set
 * is the user's choice and is left alone.
 */
export function pinGpu(id: string, opts: { env?: NodeJS.ProcessEnv; gpus?: NvidiaGpu[] } = {}): GpuPin {
  const env = opts.env ?? process.env;
  if (env.DRI_PRIME) return { env: {}, reason: `DRI_PRIME is already set (${env.DRI_PRIME}): left as it is` };
  const gpus = opts.gpus ?? nvidiaGpus();
  if (gpus.length === 0) return { env: {}, reason: 'nvidia-smi lists no GPU' };
  const gpu = gpus.find((g) => g.index === id || g.uuid === id);
  if (!gpu) return { env: {}, reason: `nvidia-smi lists no GPU ${id} (it has ${gpus.map((g) => g.index).join(', ')})` };
  const prime = driPrimeOf(gpu.pciBusId);
  if (!prime) return { env: {}, gpu, reason: `nvidia-smi gave an unreadable PCI address "${gpu.pciBusId}"` };
  if (!deviceSelectLayer(env)) {
    return {
      env: {},
      gpu,
      reason: `Mesa's Vulkan device-select layer (${LAYER_FILE}) is not installed, so every worker sees every GPU; install mesa-vulkan-drivers`,
    };
  }
  return { env: { DRI_PRIME: prime, MESA_VK_DEVICE_SELECT_FORCE_DEFAULT_DEVICE: '1' }, gpu };
}
