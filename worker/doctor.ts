// What this machine offers gan-dist: Node, cores, which backends load, the WebGPU adapters Dawn
// finds (with the limits that bound this model), and for tfjs-node-gpu whether the CUDA 11.2 /
// cuDNN 8.1 libraries it needs are found and which GPUs nvidia-smi lists.

import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { GPU_PACKAGE, NODE_PACKAGE, installedVersion } from '../protocol/backends.ts';
import { adapterLabel, listAdapters, NO_ADAPTER_FIX, webgpuUnavailable, type AdapterDescription } from './webgpu.ts';

const run = promisify(execFile);

export interface Check {
  name: string;
  ok: boolean;
  detail: string;
  /** What to do when it is not ok. */
  fix?: string;
}

export interface DoctorReport {
  node: string;
  platform: string;
  cores: number;
  memoryGiB: number;
  checks: Check[];
  /** Every WebGPU adapter Dawn offers, hardware first. */
  adapters: AdapterDescription[];
}

const MiB = (n: number) => `${Math.round(n / 2 ** 20)} MiB`;

async function probeWebgpu(): Promise<{ check: Check; adapters: AdapterDescription[] }> {
  const name = 'WebGPU adapters (--backend webgpu, --gpus)';
  const why = webgpuUnavailable();
  if (why)
    return {
      check: { name, ok: false, detail: why, fix: `npm install webgpu @tensorflow/tfjs-backend-webgpu` },
      adapters: [],
    };
  const { adapters, reason } = await listAdapters();
  if (adapters.length === 0)
    return { check: { name, ok: false, detail: reason ?? 'none', fix: NO_ADAPTER_FIX }, adapters };
  const hardware = adapters.filter((a) => !a.isFallbackAdapter);
  const detail = adapters
    .map(
      (a) =>
        `${adapterLabel(a)}: maxBufferSize ${MiB(a.maxBufferSize)}, maxStorageBufferBindingSize ${MiB(a.maxStorageBufferBindingSize)}`,
    )
    .join('; ');
  return {
    check: {
      name,
      ok: hardware.length > 0,
      detail,
      fix:
        hardware.length > 0
          ? undefined
          : `only a software adapter: fine for checks, not for speed; for a GPU, ${NO_ADAPTER_FIX}`,
    },
    adapters,
  };
}

const CUDA_LIBS = [
  { lib: 'libcudart.so.11.0', what: 'CUDA 11 runtime' },
  { lib: 'libcublas.so.11', what: 'cuBLAS 11' },
  { lib: 'libcudnn.so.8', what: 'cuDNN 8' },
];

async function findLibrary(lib: string): Promise<string | undefined> {
  const dirs = [
    ...(process.env.LD_LIBRARY_PATH ?? '').split(':').filter(Boolean),
    '/usr/local/cuda/lib64',
    '/usr/local/cuda-11.2/lib64',
    '/usr/lib/x86_64-linux-gnu',
    '/usr/lib64',
  ];
  for (const d of dirs) if (existsSync(path.join(d, lib))) return path.join(d, lib);
  try {
    const { stdout } = await run('ldconfig', ['-p'], { timeout: 5000 });
    const line = stdout.split('\n').find((l) => l.trim().startsWith(`${lib} `));
    if (line) return line.split('=>')[1]?.trim();
  } catch {
    // no ldconfig: the directories above were all we could look at
  }
  return undefined;
}

async function nvidiaSmi(): Promise<Check> {
  try {
    const { stdout } = await run('nvidia-smi', ['-L'], { timeout: 10_000 });
    const gpus = stdout.trim().split('\n').filter(Boolean);
    return { name: 'GPUs (nvidia-smi)', ok: gpus.length > 0, detail: gpus.join('; ') || 'none listed' };
  } catch {
    return {
      name: 'GPUs (nvidia-smi)',
      ok: false,
      detail: 'nvidia-smi not found or failed',
      fix: 'install the NVIDIA driver; without a GPU train with --workers N on the embedded wasm backend',
    };
  }
}

async function probeWasm(): Promise<Check> {
  try {
    const { loadBackend } = await import('./backend.ts');
    const { info } = await loadBackend('wasm');
    return {
      name: 'wasm backend (embedded default)',
      ok: true,
      detail: `${info.package} ${info.version}: ${info.device}, SIMD ${info.simd ? 'yes' : 'no'}`,
      fix: info.simd ? undefined : 'use Node >= 20 for wasm SIMD; without it training is several times slower',
    };
  } catch (err) {
    return {
      name: 'wasm backend (embedded default)',
      ok: false,
      detail: (err as Error).message,
      fix: 'run `npm ci` again',
    };
  }
}

function probePackage(pkg: string, role: string): Check {
  const v = installedVersion(pkg);
  return v
    ? { name: `${pkg}`, ok: true, detail: `${v} installed (${role})` }
    : {
        name: `${pkg}`,
        ok: false,
        detail: `not installed (${role})`,
        fix: `npm install ${pkg} (downloads libtensorflow: needs the internet)${pkg === GPU_PACKAGE ? ', plus CUDA 11.2 and cuDNN 8.1' : ''}`,
      };
}

export async function doctor(): Promise<DoctorReport> {
  const checks: Check[] = [];
  const major = Number(process.versions.node.split('.')[0]);
  checks.push({
    name: 'Node.js',
    ok: major >= 20,
    detail: process.version,
    fix: major >= 20 ? undefined : 'install Node.js 20.19 or newer',
  });
  checks.push(await probeWasm());
  const webgpu = await probeWebgpu();
  checks.push(webgpu.check);
  checks.push(probePackage(NODE_PACKAGE, 'native CPU backend, optional'));
  checks.push(probePackage(GPU_PACKAGE, 'CUDA GPU backend, optional: --gpus uses WebGPU without it'));
  for (const { lib, what } of CUDA_LIBS) {
    const found = await findLibrary(lib);
    checks.push({
      name: `${what} (${lib})`,
      ok: !!found,
      detail: found ?? 'not found',
      fix: found
        ? undefined
        : `install ${what} and add its lib directory to LD_LIBRARY_PATH (tfjs-node-gpu 4.x needs CUDA 11.2 / cuDNN 8.1)`,
    });
  }
  checks.push(await nvidiaSmi());
  return {
    node: process.version,
    platform: `${process.platform} ${process.arch}`,
    cores: os.availableParallelism(),
    memoryGiB: Math.round(os.totalmem() / 2 ** 30),
    checks,
    adapters: webgpu.adapters,
  };
}

export function formatDoctor(r: DoctorReport): string {
  const lines = [`gan-dist doctor: Node ${r.node}, ${r.platform}, ${r.cores} cores, ${r.memoryGiB} GiB`];
  for (const c of r.checks) {
    lines.push(`  ${c.ok ? 'ok ' : 'no '} ${c.name}: ${c.detail}`);
    if (!c.ok && c.fix) lines.push(`       fix: ${c.fix}`);
  }
  return lines.join('\n');
}
